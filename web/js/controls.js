/**
 * Pieces shared by the in-session pages: the microphone toggle, the audio sink with its
 * "turn sound on" prompt, the banner area, the confirm dialog and the session-ended notice.
 */

import { h, replaceChildren } from './dom.js';
import { setText } from './i18n.js';
import { AudioSink } from './tiles.js';

/** A toggle button (aria-pressed) whose label follows its state. */
export function toggleButton({ onKey, offKey, pressed = false, onToggle, extraClass = '' }) {
  const button = h('button', { type: 'button', class: ['btn', 'btn-toggle', extraClass] });
  const render = () => {
    button.setAttribute('aria-pressed', String(pressed));
    setText(button, pressed ? onKey : offKey);
  };
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const next = !pressed;
      await onToggle(next);
      pressed = next;
      render();
    } catch {
      // The toggle did not happen; onToggle has told the user why.
    } finally {
      button.disabled = false;
    }
  });
  render();
  return {
    el: button,
    set(value) { pressed = value; render(); },
    get pressed() { return pressed; },
  };
}

/** The microphone on/off button of a room (pressed = muted). */
export function micButton(room) {
  return toggleButton({
    onKey: 'controls.unmute_me', offKey: 'controls.mute_me', extraClass: 'btn-mic',
    onToggle: (muted) => room.setMicEnabled(!muted),
  });
}

/** The banner area of a page: `show(key, level)` replaces its banner, `clear()` empties it. */
export function bannerArea() {
  const el = h('div', { class: 'banner-area', attrs: { 'aria-live': 'polite' } });
  return {
    el,
    show(key, level = 'info', args = undefined) {
      replaceChildren(el, h('p', { class: ['banner', `banner-${level}`], i18n: key, i18nArgs: args }));
    },
    clear() { el.replaceChildren(); },
    get key() { return el.firstChild?.dataset.i18n ?? null; },
  };
}

/** The audio of a room, played in #audio-sink, with a prompt in `banners` when blocked. */
export function roomAudio(room, banners) {
  const container = document.getElementById('audio-sink');
  const unlock = h('button', {
    type: 'button', class: 'btn btn-primary sound-unlock', i18n: 'controls.sound_on',
    hidden: true,
    on: { click: () => { sink.unlock(); unlock.hidden = true; } },
  });
  const sink = new AudioSink(container, () => { unlock.hidden = false; });
  banners.el.after(unlock);
  room.addEventListener('change', (event) => {
    if (event.detail.what === 'tracks') sink.update(room.audioTracks());
  });
  return sink;
}

/** Asks a yes/no question in a modal <dialog>; resolves with the form's values or null. */
export function confirmDialog({ titleKey, bodyKey, confirmKey, fields = [], danger = false }) {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog', class: 'dialog-body' },
      h('h2', { i18n: titleKey }),
      bodyKey ? h('p', { i18n: bodyKey }) : null,
      fields,
      h('div', { class: 'dialog-actions' },
        h('button', { type: 'submit', value: 'cancel', class: 'btn', i18n: 'common.cancel',
          formNoValidate: true }),
        h('button', { type: 'submit', value: 'ok', class: ['btn', danger ? 'btn-danger' : 'btn-primary'],
          i18n: confirmKey })));
    const dialog = h('dialog', { class: 'dialog' }, form);
    document.body.append(dialog);
    dialog.addEventListener('close', () => {
      const values = dialog.returnValue === 'ok' ? Object.fromEntries(new FormData(form)) : null;
      dialog.remove();
      resolve(values);
    });
    dialog.showModal();
  });
}

/** A link to the recordings library (for the notice at the end of a session). */
export function libraryLink() {
  return h('a', { href: '/recordings', class: 'btn', i18n: 'rec.open_library' });
}

/** Replaces `root` with the notice that the session ended (with its outcome when known). */
export function showEnded(root, frame, { kind = 'class', action = null } = {}) {
  replaceChildren(root, h('section', { class: 'card message-card ended', attrs: { role: 'status' } },
    h('h1', { i18n: kind === 'consult' ? 'ended.consult_title' : 'ended.class_title' }),
    frame?.outcome
      ? h('p', { class: 'lead' }, h('span', { i18n: 'ended.outcome' }), ' ',
        h('strong', { i18n: `outcome.${frame.outcome}` }))
      : h('p', { class: 'lead', i18n: 'ended.thanks' }),
    action ? h('div', { class: 'toolbar' }, action) : null));
}

/** m:ss for a duration in seconds, h:mm:ss from an hour on. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const two = (n) => String(n).padStart(2, '0');
  if (s >= 3600) return `${Math.floor(s / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return `${Math.floor(s / 60)}:${two(s % 60)}`;
}
