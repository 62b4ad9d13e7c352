/**
 * The page frame every page shares: the header (brand, session title, connection status,
 * language switch, leave), toasts, and opening the role's page after a join.
 */

import { h, replaceChildren } from './dom.js';
import { has, initI18n, language, setLanguage, setText, t } from './i18n.js';
import { SignalingChannel } from './signaling.js';
import { clearSession } from './credential.js';
import { describeError } from './api.js';

const PAGES = {
  teacher: './pages/teacher.js',
  classroom: './pages/classroom.js',
  observer: './pages/classroom.js',
  doctor: './pages/doctor.js',
  clinic: './pages/clinic.js',
  operator: './pages/operator.js',
};

/** Homes that capture the microphone and camera. */
export const PUBLISHING_HOMES = new Set(['teacher', 'classroom', 'doctor', 'clinic']);

export const main = () => document.getElementById('main');

/** Loads the strings and wires the header; call first on every page. */
export async function initShell() {
  await initI18n();
  const picker = document.getElementById('lang-select');
  picker.value = language();
  picker.addEventListener('change', () => setLanguage(picker.value));
  setStatus('status.starting', 'idle');
}

export function setSessionTitle(text) {
  document.getElementById('session-title').textContent = text || '';
}

/** Shows the always-visible connection status: a string key and a level (ok|warn|bad|idle). */
export function setStatus(key, level) {
  const box = document.getElementById('status');
  box.dataset.level = level;
  setText(document.getElementById('status-text'), key);
}

/** The status shown for a signaling state and a media state. */
export function statusFor(channelState, mediaState) {
  if (channelState === 'reconnecting' || channelState === 'connecting') {
    return channelState === 'connecting' ? ['status.connecting', 'warn']
      : ['status.reconnecting', 'warn'];
  }
  if (channelState === 'refused') return ['status.refused', 'bad'];
  if (channelState === 'closed') return ['status.offline', 'idle'];
  if (mediaState === 'reconnecting') return ['status.reconnecting', 'warn'];
  if (mediaState === 'connecting') return ['status.connecting_media', 'warn'];
  return ['status.online', 'ok'];
}

/** Shows a short message; `message` is a string key or {text}. */
export function toast(message, level = 'info', args = undefined) {
  const box = document.getElementById('toasts');
  const item = h('div', { class: ['toast', `toast-${level}`], attrs: { role: 'status' } });
  if (typeof message === 'string') setText(item, message, args);
  else item.textContent = message.text;
  box.append(item);
  setTimeout(() => item.remove(), level === 'error' ? 9000 : 5000);
}

/** Shows an error that came from the API or the WebSocket. */
export function toastError(err) {
  const text = typeof err?.userMessage === 'function' ? err.userMessage()
    : describeError(err?.code, err?.message);
  toast({ text }, 'error');
}

/** A full-page message (no session, link refused, …) with an optional action. */
export function showMessage(titleKey, bodyKey, { detail = '', action = null } = {}) {
  replaceChildren(main(), h('section', { class: 'card message-card' },
    h('h1', { i18n: titleKey }),
    h('p', { i18n: bodyKey }),
    detail ? h('p', { class: 'detail', text: detail }) : null,
    action));
}

/**
 * The "recording on" indicator in the header, seen by every participant: follows the
 * session's `recording` flag and the `recording` frames; says so when it turns on or off.
 */
export function recordingIndicator(channel) {
  const el = h('span', { class: 'rec-indicator', id: 'rec-indicator', hidden: true,
    attrs: { role: 'status' } },
  h('span', { class: 'rec-dot', attrs: { 'aria-hidden': 'true' } }),
  h('span', { i18n: 'rec.on_indicator' }));
  document.getElementById('status').before(el);
  let on = false;
  let sessionId = null;
  const set = (value, { announce = true } = {}) => {
    if (value === on) return;
    on = value;
    el.hidden = !on;
    if (announce) toast(on ? 'rec.started_notice' : 'rec.stopped_notice', on ? 'info' : 'ok');
  };
  channel.on('session', (frame) => {
    // Entering a session where recording is already on is not news; a change within it is.
    const same = frame.id === sessionId;
    sessionId = frame.id;
    set(Boolean(frame.recording) && frame.status !== 'ended', { announce: same });
  });
  channel.on('recording', (frame) => set(Boolean(frame.on)));
  channel.on('ended', () => set(false, { announce: false }));
  return { el, get on() { return on; } };
}

function showLeave(channel) {
  const slot = document.getElementById('leave-slot');
  replaceChildren(slot, h('button', {
    type: 'button', class: 'btn btn-quiet', i18n: 'shell.leave',
    on: {
      click: () => {
        if (!window.confirm(t('shell.leave_confirm'))) return;
        channel?.close();
        clearSession();
        window.location.assign('/');
      },
    },
  }));
}

/**
 * Opens the page of `granted.home` in this document: connects the WebSocket (except for the
 * operator, whose dashboard uses REST) and mounts the page module.
 */
export async function openRolePage(granted, { local = null, choice = { mode: 'full' } } = {}) {
  setSessionTitle(granted.session?.title || '');
  const path = PAGES[granted.home];
  if (!path) {
    showMessage('error.title', 'error.unknown_home', { detail: String(granted.home) });
    return;
  }
  const page = await import(path);
  if (granted.home === 'operator') {
    window.tongxin = { home: granted.home, channel: null, room: null };
    setStatus('status.online', 'ok');
    showLeave(null);
    await page.mount(main(), { profile: granted });
    return;
  }
  const channel = new SignalingChannel(granted.credential);
  let room = null;
  const refresh = () => {
    const [key, level] = statusFor(channel.state, room ? room.mediaState : 'idle');
    setStatus(key, level);
  };
  channel.on('state', refresh);
  channel.on('notice', (frame) => {
    const key = `notice.${frame.code}`;
    toast({ text: describeNotice(key, frame.message) }, frame.level === 'error' ? 'error' : 'info');
  });
  channel.on('error', (frame) => {
    if (frame.ref !== 'publish') toast({ text: describeError(frame.code, frame.message) }, 'error');
  });
  recordingIndicator(channel);
  setStatus('status.connecting', 'warn');
  try {
    await channel.connect();
  } catch {
    showMessage('join.refused_title', 'join.refused_body');
    return;
  }
  refresh();
  showLeave(channel);
  const ctx = {
    profile: granted,
    channel,
    local,
    choice,
    attachRoom(r) {
      room = r;
      window.tongxin.room = r;
      r?.addEventListener('change', refresh);
      refresh();
    },
  };
  window.tongxin = { home: granted.home, channel, room: null };
  await page.mount(main(), ctx);
}

function describeNotice(key, message) {
  return has(key) ? t(key) : message;
}
