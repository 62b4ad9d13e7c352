/**
 * Being in a media session: the signaling frames of the session, the up and down peer
 * connections, the tracks received per participant, link reports every few seconds, and the
 * recovery of media after a lost connection or a `reconnect` frame.
 *
 * Pages read `room.session`, `room.remote`, `room.links`, `room.data` and listen for 'change'
 * events (detail: what changed: session | tracks | link | data | media | ended | notice).
 */

import { linkReport, snapshot } from './linkstats.js';
import { Publisher } from './publisher.js';
import { Subscriber } from './subscriber.js';
import { sendsCamera } from './codecs.js';

const LINK_REPORT_MS = 3000;
const OFFER_WAIT_MS = 4000;

/** The overall media state from the two connections' states. */
export function combinedMediaState(upState, downState) {
  const states = [upState, downState].filter(Boolean);
  if (!states.length) return 'idle';
  if (states.some((s) => s === 'failed' || s === 'reconnecting' || s === 'disconnected')) {
    return 'reconnecting';
  }
  if (states.every((s) => s === 'connected')) return 'connected';
  return 'connecting';
}

export class Room extends EventTarget {
  constructor({ channel, local = null, mode = 'full', publish = true }) {
    super();
    this.channel = channel;
    this.local = local;
    this.mode = mode;
    this.canPublish = publish;
    this.session = null;
    this.remote = new Map();
    this.links = new Map();
    this.data = null;
    this.publisher = null;
    this.subscriber = null;
    this.upState = null;
    this.downState = null;
    this.screenTrack = null;
    this.lastSnapshot = null;
    this.linkTimer = null;
    this.offerTimer = null;
    this.ended = null;
    this.unsubscribe = [
      channel.on('session', (frame) => this.onSession(frame)),
      channel.on('offer', (frame) => this.onOffer(frame)),
      channel.on('answer', (frame) => this.publisher?.handleAnswer(frame.sdp)),
      channel.on('error', (frame) => {
        if (frame.ref === 'publish') this.publisher?.handleRefusal(frame);
      }),
      channel.on('layers', (frame) => this.publisher?.applyLayers(frame)),
      channel.on('link', (frame) => {
        this.links.set(frame.participant, frame);
        this.changed('link', frame);
      }),
      channel.on('data', (frame) => {
        this.data = frame;
        this.changed('data', frame);
      }),
      channel.on('reconnect', () => this.rebuildMedia()),
      // Another node now (redirect, or the node died): its relay knows nothing of our peer
      // connections; new ones start with its `session` frame.
      channel.on('moved', () => this.stopMedia()),
      channel.on('ended', (frame) => this.onEnded(frame)),
      channel.on('state', ({ state, detail }) => {
        // A reconnect that did not keep our seat: the server forgot our media, start again.
        if (state === 'online' && !detail?.resumed && this.publisher) this.rebuildMedia();
        this.changed('media');
      }),
    ];
    const known = channel.last('session');
    if (known) queueMicrotask(() => { if (!this.session) this.onSession(known); });
  }

  get me() {
    return this.channel.welcome?.participant?.id ?? null;
  }

  changed(what, detail) {
    this.dispatchEvent(new CustomEvent('change', { detail: { what, frame: detail } }));
  }

  get mediaState() {
    return combinedMediaState(this.upState, this.downState);
  }

  onSession(frame) {
    // A new session after an ended one (the doctor's next consult): start afresh.
    if (this.ended && frame.id !== this.ended.session) this.ended = null;
    if (this.ended) return;
    const previous = this.session;
    this.session = frame;
    if (frame.status === 'ended') {
      this.onEnded({ session: frame.id, outcome: frame.detail?.outcome ?? null });
      return;
    }
    if (previous && previous.id !== frame.id) this.stopMedia();
    if (!this.subscriber) this.startMedia();
    this.changed('session', frame);
  }

  onOffer(frame) {
    clearTimeout(this.offerTimer);
    if (!this.subscriber) this.startMedia();
    this.subscriber.handleOffer(frame);
  }

  onEnded(frame) {
    if (frame.session && this.session && frame.session !== this.session.id) return;
    if (this.ended) {
      // The `session` frame (status ended) may come before the `ended` frame with the outcome.
      if (!this.ended.outcome && frame.outcome) {
        this.ended = frame;
        this.changed('ended', frame);
      }
      return;
    }
    this.ended = frame;
    this.stopMedia();
    this.changed('ended', frame);
  }

  startMedia() {
    const send = (frame) => this.channel.send(frame);
    const iceServers = this.channel.welcome?.ice_servers;
    this.subscriber = new Subscriber({
      send, iceServers,
      onTracks: (list) => this.onTracks(list),
      onState: (state) => { this.downState = state; this.changed('media'); },
    });
    // Nothing to receive yet is not "connecting": the down state starts with the first offer.
    this.downState = null;
    if (this.canPublish && this.local) {
      this.publisher = new Publisher({
        send, iceServers, mode: this.mode,
        onState: (state) => { this.upState = state; this.changed('media'); },
      });
      this.publisher.setTrack('mic', this.local.mic);
      this.publisher.setTrack('camera', sendsCamera(this.mode) ? this.local.camera : null);
      this.publisher.setTrack('screen', this.screenTrack);
      this.publisher.publish();
    }
    this.offerTimer = setTimeout(() => {
      if (!this.subscriber?.pc) this.channel.send({ type: 'request_offer' });
    }, OFFER_WAIT_MS);
    clearInterval(this.linkTimer);
    this.linkTimer = setInterval(() => this.reportLink(), LINK_REPORT_MS);
    this.changed('media');
  }

  stopMedia() {
    clearInterval(this.linkTimer);
    clearTimeout(this.offerTimer);
    this.publisher?.close();
    this.subscriber?.close();
    this.publisher = null;
    this.subscriber = null;
    this.upState = null;
    this.downState = null;
    this.lastSnapshot = null;
    this.onTracks([]);
    this.changed('media');
  }

  /** New peer connections from scratch: publish again and ask for a fresh offer. */
  rebuildMedia() {
    if (this.ended) return;
    this.publisher?.rebuild();
    this.subscriber?.rebuild();
  }

  onTracks(list) {
    const remote = new Map();
    for (const entry of list) {
      if (!remote.has(entry.participant)) remote.set(entry.participant, {});
      const sources = remote.get(entry.participant);
      sources[entry.source] = entry.track;
    }
    this.remote = remote;
    this.changed('tracks', list);
  }

  /** Every received audio track: [{participant, track}]. */
  audioTracks() {
    const list = [];
    for (const [participant, sources] of this.remote) {
      if (sources.mic) list.push({ participant, track: sources.mic });
    }
    return list;
  }

  /** Starts (track) or stops (null) sharing the screen. */
  async setScreen(track) {
    this.screenTrack = track;
    if (!this.publisher) return;
    this.publisher.setTrack('screen', track);
    await this.publisher.publish();
  }

  /** Mutes or unmutes my own microphone (locally, and tells the session). */
  setMicEnabled(enabled) {
    if (this.local?.mic) this.local.mic.enabled = enabled;
    this.channel.send({ type: 'mute', muted: !enabled });
  }

  async reportLink() {
    const down = this.subscriber?.pc;
    const up = this.publisher?.pc;
    if (!down && !up) return;
    try {
      const [downStats, upStats] = await Promise.all([
        down ? down.getStats() : null, up ? up.getStats() : null,
      ]);
      const current = snapshot(downStats?.values(), upStats?.values(), performance.now());
      const frame = linkReport(this.lastSnapshot, current);
      this.lastSnapshot = current;
      if (Object.keys(frame).length > 1) this.channel.send(frame);
    } catch (err) {
      console.warn('link report failed', err);
    }
  }

  /** Audio packets received so far per participant (diagnostics and tests). */
  async inboundAudioPackets() {
    const pc = this.subscriber?.pc;
    if (!pc) return {};
    const byMid = this.subscriber.tracks;
    const stats = await pc.getStats();
    const packets = {};
    for (const s of stats.values()) {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio') continue;
      const who = byMid[s.mid]?.participant;
      if (who) packets[who] = (packets[who] || 0) + (s.packetsReceived || 0);
    }
    return packets;
  }

  close() {
    for (const off of this.unsubscribe) off();
    this.stopMedia();
  }
}
