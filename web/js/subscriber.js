/**
 * The down peer connection (PROTOCOL.md §3): the server offers what this page receives; the page
 * answers after ICE gathering, and maps each mid to the participant and source it carries
 * (`offer.tracks[mid] = {participant, source}`).
 *
 * Recovery: the server is the offerer here, so a failed connection is replaced by a fresh one
 * and the page sends `request_offer`.
 */

import { iceGatheringComplete, peerConfig, watchConnection } from './rtc.js';

/** The received tracks: [{mid, participant, source, kind, track}] for the mids in `tracks`. */
export function receivedTracks(transceivers, tracks) {
  const list = [];
  for (const transceiver of transceivers) {
    const described = transceiver.mid !== null ? tracks[transceiver.mid] : undefined;
    if (!described || transceiver.currentDirection === 'inactive') continue;
    const track = transceiver.receiver.track;
    list.push({
      mid: transceiver.mid,
      participant: described.participant,
      source: described.source,
      kind: track.kind,
      track,
    });
  }
  return list;
}

export class Subscriber {
  constructor({ send, iceServers, onTracks = () => {}, onState = () => {} }) {
    this.send = send;
    this.iceServers = iceServers;
    this.onTracks = onTracks;
    this.onState = onState;
    this.pc = null;
    this.tracks = {};
    this.connection = undefined;
    this.chain = Promise.resolve();
    this.stopWatching = null;
    this.closed = false;
  }

  createPeer() {
    const pc = new RTCPeerConnection(peerConfig(this.iceServers));
    this.pc = pc;
    this.stopWatching = watchConnection(pc, {
      onState: (state) => { if (pc === this.pc) this.onState(state); },
      onTrouble: () => { if (pc === this.pc) this.rebuild(); },
    });
  }

  /** Applies a server `offer` and answers it; offers are handled one at a time. */
  handleOffer(frame) {
    this.chain = this.chain
      .then(() => this.answer(frame))
      .catch((err) => {
        if (this.closed) return;
        console.warn('answering the offer failed', err);
        this.rebuild();
      });
    return this.chain;
  }

  async answer({ sdp, tracks, connection }) {
    if (this.closed) return;
    // A new connection number: the relay started a new peer connection for us.
    if (connection !== undefined && this.connection !== undefined
      && connection !== this.connection) {
      this.dropPeer();
    }
    if (connection !== undefined) this.connection = connection;
    if (!this.pc) this.createPeer();
    const pc = this.pc;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await iceGatheringComplete(pc);
    if (pc !== this.pc || this.closed) return;
    this.send({ type: 'answer', sdp: pc.localDescription.sdp });
    this.tracks = tracks || {};
    this.onTracks(receivedTracks(pc.getTransceivers(), this.tracks));
  }

  /** Drops the peer connection and asks the server for a fresh offer. */
  rebuild() {
    if (this.closed) return;
    this.dropPeer();
    this.onState('reconnecting');
    this.onTracks([]);
    this.send({ type: 'request_offer' });
  }

  dropPeer() {
    this.stopWatching?.();
    this.pc?.close();
    this.pc = null;
    this.tracks = {};
  }

  close() {
    this.closed = true;
    this.dropPeer();
  }
}
