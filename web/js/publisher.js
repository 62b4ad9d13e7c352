/**
 * The up peer connection (PROTOCOL.md §3): this page offers its microphone, camera and screen,
 * sends `publish {sdp, sources}` once ICE gathering is complete and applies the `answer`.
 *
 * Recovery: a failed (or long disconnected) connection gets one ICE restart; if that does not
 * bring it back, a fresh peer connection publishes again.
 */

import {
  applyCodecPreference, cameraEncodings, cameraLayerCount, sendEncoding,
} from './codecs.js';
import { lastNetworkCheck } from './netcheck.js';
import { iceGatheringComplete, peerConfig, watchConnection } from './rtc.js';

const ANSWER_TIMEOUT_MS = 20_000;
const SOURCES = ['mic', 'camera', 'screen'];

/** The `sources` map of a publish frame: mid -> source, for the sources that have a track. */
export function sourcesByMid(transceivers, tracks) {
  const sources = {};
  for (const [source, transceiver] of transceivers) {
    if (tracks.get(source) && transceiver.mid !== null) sources[transceiver.mid] = source;
  }
  return sources;
}

/**
 * The `active` flags a `layers` frame asks of a simulcast sender's encodings: a list of
 * booleans, one per encoding, or null when nothing should change (one encoding, a frame
 * naming none of its layers, or already so). `active` must be a list of RIDs.
 */
export function activeFlags(encodings, active) {
  if (!Array.isArray(encodings) || encodings.length < 2 || !Array.isArray(active)) return null;
  if (!encodings.some((e) => active.includes(e.rid))) return null;
  const flags = encodings.map((e) => active.includes(e.rid));
  return flags.some((on, i) => encodings[i].active !== on) ? flags : null;
}

/**
 * The `maxBitrate` a `layers` frame asks of each of a simulcast sender's encodings: the
 * relay's ceiling for its RID (`maxKbps`, kbit/s), never above what the page configured for it
 * (`configured`, RID -> bit/s), the configured one for a RID the frame does not name; or null
 * when nothing should change (one encoding, or already so).
 */
export function layerCeilings(encodings, maxKbps, configured) {
  if (!Array.isArray(encodings) || encodings.length < 2) return null;
  const asked = maxKbps && typeof maxKbps === 'object' ? maxKbps : {};
  const own = configured || {};
  const ceilings = encodings.map((e) => {
    const mine = own[e.rid];
    const kbps = asked[e.rid];
    const relay = typeof kbps === 'number' && Number.isFinite(kbps) && kbps > 0
      ? Math.round(kbps * 1000) : null;
    if (relay === null) return mine ?? e.maxBitrate;
    return mine ? Math.min(mine, relay) : relay;
  });
  return ceilings.some((bps, i) => encodings[i].maxBitrate !== bps) ? ceilings : null;
}

export class Publisher {
  constructor({ send, iceServers, mode = 'full', onState = () => {} }) {
    this.send = send;
    this.iceServers = iceServers;
    this.mode = mode;
    this.onState = onState;
    this.pc = null;
    this.transceivers = new Map();
    this.tracks = new Map();
    this.chain = Promise.resolve();
    this.pending = null;
    this.restartTried = false;
    this.stopWatching = null;
    this.closed = false;
    this.simulcastRids = null;
    this.wantedLayers = new Map();
    this.layerCeilings = new Map();
    this.configuredCeilings = new Map();
  }

  /** Sets (or clears, with null) the track of a source; call `publish()` afterwards. */
  setTrack(source, track) {
    if (!SOURCES.includes(source)) throw new Error(`unknown source ${source}`);
    this.tracks.set(source, track || null);
  }

  hasTracks() {
    return [...this.tracks.values()].some(Boolean);
  }

  /** (Re)negotiates with the current tracks; negotiations run one at a time. */
  publish({ iceRestart = false } = {}) {
    this.chain = this.chain
      .then(() => this.negotiate(iceRestart))
      .catch((err) => {
        if (this.closed) return;
        console.warn('publish failed', err);
        // A relay that cannot restart ICE answers with a new connection the old one cannot
        // take: go straight to a fresh peer connection.
        if (iceRestart) this.rebuild();
        else this.onState('failed');
      });
    return this.chain;
  }

  createPeer() {
    const pc = new RTCPeerConnection(peerConfig(this.iceServers));
    this.pc = pc;
    this.transceivers = new Map();
    this.stopWatching = watchConnection(pc, {
      onState: (state) => {
        if (pc !== this.pc) return;
        if (state === 'connected') this.restartTried = false;
        this.onState(state);
      },
      onTrouble: () => { if (pc === this.pc) this.recover(); },
    });
  }

  /** The camera's simulcast encodings (null: a single layer), from its capture height and
   * the join page's network check. */
  cameraSimulcast(track, layered) {
    const height = track.getSettings?.().height || 0;
    const count = cameraLayerCount(this.mode, height, lastNetworkCheck()?.downKbps ?? null);
    return count > 1 ? cameraEncodings(count, height, layered) : null;
  }

  addTransceiver(source, track) {
    const init = { direction: 'sendonly' };
    if (track.kind === 'video') {
      if ('contentHint' in track) track.contentHint = source === 'screen' ? 'detail' : 'motion';
      if (source === 'camera') {
        for (const layered of [true, false]) {
          const sendEncodings = this.cameraSimulcast(track, layered);
          if (!sendEncodings) break;
          try {
            const transceiver = this.pc.addTransceiver(track, { ...init, sendEncodings });
            this.simulcastRids = sendEncodings.map((e) => e.rid);
            this.configuredCeilings.set(source,
              Object.fromEntries(sendEncodings.map((e) => [e.rid, e.maxBitrate])));
            return transceiver;
          } catch {
            // No temporal layers (or no simulcast) here: try without, then a single layer.
          }
        }
      }
      try {
        return this.pc.addTransceiver(track, {
          ...init, sendEncodings: [sendEncoding(source, this.mode, true)],
        });
      } catch {
        // No temporal-layer support here: send a single layer.
        return this.pc.addTransceiver(track, {
          ...init, sendEncodings: [sendEncoding(source, this.mode, false)],
        });
      }
    }
    return this.pc.addTransceiver(track, init);
  }

  async negotiate(iceRestart) {
    if (this.closed) return;
    if (!this.pc) this.createPeer();
    const pc = this.pc;
    for (const source of SOURCES) {
      const track = this.tracks.get(source) || null;
      let transceiver = this.transceivers.get(source);
      if (track && !transceiver) {
        transceiver = this.addTransceiver(source, track);
        applyCodecPreference(transceiver, track.kind);
        this.transceivers.set(source, transceiver);
      } else if (transceiver) {
        if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
        transceiver.direction = track ? 'sendonly' : 'inactive';
      }
    }
    if (!this.hasTracks()) return;
    // Renegotiating a connected peer (screen share on/off) keeps it connected.
    if (iceRestart) this.onState('reconnecting');
    else if (pc.connectionState !== 'connected') this.onState('connecting');
    const offer = await pc.createOffer({ iceRestart });
    await pc.setLocalDescription(offer);
    await iceGatheringComplete(pc);
    if (pc !== this.pc || this.closed) return;
    const sources = sourcesByMid(this.transceivers, this.tracks);
    const answer = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer to publish')), ANSWER_TIMEOUT_MS);
      this.pending = {
        resolve: (sdp) => { clearTimeout(timer); resolve(sdp); },
        reject: (err) => { clearTimeout(timer); reject(err); },
      };
    });
    if (!this.send({ type: 'publish', sdp: pc.localDescription.sdp, sources })) {
      this.pending = null;
      throw new Error('signaling is not connected');
    }
    const sdp = await answer;
    if (pc !== this.pc || this.closed) return;
    await pc.setRemoteDescription({ type: 'answer', sdp });
    for (const source of this.wantedLayers.keys()) await this.setActiveLayers(source);
  }

  /** The server's `answer` to our last `publish`. */
  handleAnswer(sdp) {
    const pending = this.pending;
    this.pending = null;
    pending?.resolve(sdp);
  }

  /** The server refused our last `publish` (an `error` frame with ref "publish"). */
  handleRefusal(frame) {
    const pending = this.pending;
    this.pending = null;
    pending?.reject(Object.assign(new Error(frame.message), { code: frame.code }));
  }

  /**
   * The relay's `layers {source, active, max_kbps}` frame (dynacast): send only the simulcast
   * layers someone watches, each within the relay's ceiling for it. Each encoding whose `rid`
   * is listed is active, the others are paused; a frame naming no known layer, or for a
   * source without simulcast, changes nothing. Applied in order with negotiations, and again
   * after a new negotiation.
   */
  applyLayers(frame) {
    const source = typeof frame?.source === 'string' ? frame.source : null;
    const active = Array.isArray(frame?.active)
      ? frame.active.filter((rid) => typeof rid === 'string') : null;
    if (!source || !SOURCES.includes(source) || !active) return this.chain;
    this.wantedLayers.set(source, active);
    const ceilings = frame.max_kbps;
    this.layerCeilings.set(source, ceilings && typeof ceilings === 'object' ? ceilings : {});
    this.chain = this.chain.then(() => this.setActiveLayers(source)).catch((err) => {
      console.warn('layers not applied', err);
    });
    return this.chain;
  }

  async setActiveLayers(source) {
    const active = this.wantedLayers.get(source);
    const sender = this.transceivers.get(source)?.sender;
    if (!active || !sender || this.closed) return;
    const params = sender.getParameters();
    const flags = activeFlags(params.encodings, active);
    const ceilings = layerCeilings(params.encodings, this.layerCeilings.get(source),
      this.configuredCeilings.get(source));
    if (!flags && !ceilings) return;
    params.encodings.forEach((encoding, i) => {
      if (flags) encoding.active = flags[i];
      if (ceilings && ceilings[i]) encoding.maxBitrate = ceilings[i];
    });
    await sender.setParameters(params);
  }

  /** First an ICE restart; when that was already tried, a fresh peer connection. */
  recover() {
    if (this.closed) return;
    if (!this.restartTried && this.pc) {
      this.restartTried = true;
      this.onState('reconnecting');
      this.publish({ iceRestart: true });
      return;
    }
    this.rebuild();
  }

  /** Drops the peer connection and publishes on a new one. */
  rebuild() {
    if (this.closed) return;
    this.dropPeer();
    this.restartTried = false;
    this.onState('reconnecting');
    this.publish();
  }

  dropPeer() {
    this.stopWatching?.();
    this.pending?.reject(new Error('peer connection replaced'));
    this.pending = null;
    this.pc?.close();
    this.pc = null;
    this.transceivers = new Map();
    this.wantedLayers = new Map(); // a new connection's layers start all active
    this.layerCeilings = new Map(); // ... at the page's own ceilings
    this.configuredCeilings = new Map();
  }

  close() {
    this.closed = true;
    this.dropPeer();
  }
}
