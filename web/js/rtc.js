/** Small WebRTC building blocks shared by the up and down connections. */

const GATHER_TIMEOUT_MS = 8000;

/**
 * Resolves once `pc` has gathered its ICE candidates (the protocol sends no trickle), or after
 * a timeout with whatever was gathered (a dead STUN/TURN server must not block the call).
 */
export function iceGatheringComplete(pc, timeoutMs = GATHER_TIMEOUT_MS) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** The RTCPeerConnection configuration for the ICE servers of a `welcome` frame. */
export function peerConfig(iceServers) {
  return { iceServers: iceServers || [], bundlePolicy: 'max-bundle' };
}

/**
 * Watches a peer connection's state: calls `onTrouble(kind)` with 'failed' at once, or with
 * 'disconnected' when it stays disconnected for `graceMs`; `onState(state)` on every change.
 */
export function watchConnection(pc, { onState, onTrouble, graceMs = 4000 }) {
  let timer = null;
  pc.addEventListener('connectionstatechange', () => {
    const state = pc.connectionState;
    onState(state);
    clearTimeout(timer);
    if (state === 'failed') onTrouble('failed');
    if (state === 'disconnected') {
      timer = setTimeout(() => {
        if (pc.connectionState === 'disconnected') onTrouble('disconnected');
      }, graceMs);
    }
  });
  return () => clearTimeout(timer);
}
