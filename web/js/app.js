/**
 * The app shell at / : the role's page when this tab holds a session credential (after a join,
 * or a reload), otherwise a landing page that asks for a join link. The same shell serves the
 * recordings library at /recordings (with this tab's session) and the player of a shared link
 * at /watch/<token> (no session needed).
 */

import { clearSession, loadDeviceChoice, loadSession } from './credential.js';
import { openLocalMedia } from './devices.js';
import { h, replaceChildren } from './dom.js';
import { setText } from './i18n.js';
import { initShell, main, openRolePage, PUBLISHING_HOMES, setStatus, showMessage } from './shell.js';

function showLanding() {
  setStatus('status.not_joined', 'idle');
  const input = h('input', {
    type: 'url', id: 'link-input', required: true, autocomplete: 'off',
    i18nAttrs: { placeholder: 'landing.link_placeholder' },
  });
  const error = h('p', { class: 'form-error', attrs: { 'aria-live': 'polite' } });
  const form = h('form', {
    class: 'card landing',
    on: {
      submit: (event) => {
        event.preventDefault();
        let url;
        try { url = new URL(input.value.trim(), window.location.origin); } catch { url = null; }
        if (!url || !url.pathname.startsWith('/join/')) {
          setText(error, 'landing.link_invalid');
          return;
        }
        window.location.assign(url.pathname + url.search);
      },
    },
  },
  h('h1', { i18n: 'landing.title' }),
  h('p', { class: 'lead', i18n: 'landing.body' }),
  h('div', { class: 'field' },
    h('label', { attrs: { for: 'link-input' }, i18n: 'landing.link_label' }), input),
  error,
  h('button', { type: 'submit', class: 'btn btn-primary btn-big', i18n: 'landing.open' }));
  replaceChildren(main(), form);
}

/** The engine a test may force with ?engine=hlsjs|native, else null. */
function forcedEngine() {
  const value = new URLSearchParams(window.location.search).get('engine');
  return value === 'hlsjs' || value === 'native' ? value : null;
}

async function start() {
  await initShell();
  const path = window.location.pathname;
  if (path.startsWith('/watch/')) {
    const page = await import('./pages/watch.js');
    await page.mount(main(), { token: page.watchToken(path), force: forcedEngine() });
    return;
  }
  const saved = loadSession();
  if (/^\/recordings\/?$/.test(path)) {
    if (!saved) {
      showMessage('rec.need_session_title', 'rec.need_session_body', {
        action: h('a', { href: '/', class: 'btn btn-primary', i18n: 'rec.open_link' }),
      });
      return;
    }
    document.getElementById('status').hidden = true; // no live connection on this page
    window.tongxin = { home: 'recordings', channel: null, room: null };
    const page = await import('./pages/recordings.js');
    await page.mount(main(), { profile: saved });
    return;
  }
  if (!saved) {
    showLanding();
    return;
  }
  const choice = loadDeviceChoice();
  let local = null;
  if (PUBLISHING_HOMES.has(saved.home)) {
    try {
      local = await openLocalMedia({ ...choice, detailed: saved.home === 'clinic' });
    } catch {
      showMessage('join.devices_failed_title', 'join.devices_denied', {
        action: h('button', {
          type: 'button', class: 'btn btn-primary', i18n: 'common.retry',
          on: { click: () => window.location.reload() },
        }),
      });
      return;
    }
  }
  await openRolePage(saved, { local, choice });
}

start().catch((err) => {
  console.error(err);
  clearSession();
  showMessage('error.title', 'error.unknown', { detail: String(err?.message || err) });
});
