/**
 * Showing media: a video tile (video, name, badges) bound to one participant's source, and the
 * audio sink that plays every received audio track (with a "turn sound on" fallback when the
 * browser blocks autoplay).
 */

import { h } from './dom.js';
import { setText } from './i18n.js';

/** A tile showing one video source; `tile.setTrack(track)` binds it (null: placeholder). */
export class VideoTile {
  constructor({ participant = '', source = 'camera', name = '', nameKey = null, self = false,
    extraClass = '' } = {}) {
    this.track = null;
    this.video = h('video', {
      autoplay: true, muted: true, playsInline: true,
      attrs: { 'aria-hidden': 'true' },
      dataset: { participant, source },
    });
    this.video.muted = true;
    this.placeholder = h('div', { class: 'tile-placeholder', i18n: 'tile.no_video' });
    this.nameEl = h('span', { class: 'tile-name' });
    this.badges = h('span', { class: 'tile-badges' });
    this.el = h('figure', {
      class: ['tile', `tile-${source}`, self && 'tile-self', extraClass, 'tile-empty'],
      dataset: { participant, source },
    }, this.video, this.placeholder, h('figcaption', {}, this.nameEl, this.badges));
    this.setName(name, nameKey);
  }

  setName(name, nameKey = null, args = undefined) {
    if (nameKey) setText(this.nameEl, nameKey, args);
    else {
      delete this.nameEl.dataset.i18n;
      this.nameEl.textContent = name;
    }
    this.el.setAttribute('aria-label', this.nameEl.textContent);
  }

  setTrack(track) {
    if (this.track === track) return;
    this.track?.removeEventListener('mute', this.showState);
    this.track?.removeEventListener('unmute', this.showState);
    this.track = track;
    // A received track is muted while no video arrives (not started yet, paused on a weak
    // link, or the sender gone): show the placeholder rather than a frozen or black frame.
    track?.addEventListener('mute', this.showState);
    track?.addEventListener('unmute', this.showState);
    this.showState();
    this.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) this.video.play().catch(() => { /* muted video autoplays; retried on data */ });
  }

  showState = () => {
    this.el.classList.toggle('tile-empty', !this.track || this.track.muted);
  };

  /** Replaces the badges (small labelled status chips) shown under the video. */
  setBadges(badges) {
    this.badges.replaceChildren(...badges);
  }
}

/** A small status chip: a translated label with a level class. */
export function badge(key, level = 'info', args = undefined) {
  return h('span', { class: ['chip', `chip-${level}`], i18n: key, i18nArgs: args });
}

/** Plays received audio tracks, one <audio> element per track. */
export class AudioSink {
  constructor(container, onBlocked) {
    this.container = container;
    this.onBlocked = onBlocked;
    this.elements = new Map();
  }

  /** Plays exactly the given tracks ([{track, participant}]). */
  update(entries) {
    const wanted = new Map(entries.map((e) => [e.track.id, e]));
    for (const [id, el] of this.elements) {
      if (!wanted.has(id)) {
        el.srcObject = null;
        el.remove();
        this.elements.delete(id);
      }
    }
    for (const [id, entry] of wanted) {
      if (this.elements.has(id)) continue;
      const el = h('audio', { autoplay: true, dataset: { participant: entry.participant } });
      el.srcObject = new MediaStream([entry.track]);
      this.container.append(el);
      this.elements.set(id, el);
      el.play().catch(() => this.onBlocked());
    }
  }

  /** After a user gesture: retry playing everything. */
  unlock() {
    for (const el of this.elements.values()) el.play().catch(() => {});
  }

  clear() {
    this.update([]);
  }
}
