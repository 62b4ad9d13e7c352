/**
 * The player page of a shared link (/watch/<share token>): no join link, no credential. Shows
 * the recording (title, teacher, subject, date, length) and plays it; a recording still being
 * prepared shows its progress and is polled; an expired or unknown link says so plainly.
 */

import { formatDuration } from '../controls.js';
import { h, replaceChildren } from '../dom.js';
import { language, setText } from '../i18n.js';
import { playbackPanel } from '../playback.js';
import { BUSY_POLL_MS, formatWhen, statusView, watchRecording } from '../recordings.js';
import { setSessionTitle, setStatus } from '../shell.js';
import { badge } from '../tiles.js';

/** The share token of a /watch/<token> path, or null. */
export function watchToken(pathname) {
  const match = /^\/watch\/([^/?#]+)\/?$/.exec(pathname);
  return match ? decodeURIComponent(match[1]) : null;
}

/** The message keys for a refused share link, by HTTP status / error code. */
export function refusalKeys(error) {
  if (error?.status === 0 || error?.code === 'network') return ['watch.offline_title', 'watch.offline_body'];
  if (error?.status === 404 || error?.status === 401 || error?.status === 403
    || error?.code === 'expired' || error?.code === 'not_found' || error?.code === 'unauthorized') {
    return ['watch.gone_title', 'watch.gone_body'];
  }
  return ['watch.failed_title', 'watch.failed_body'];
}

export async function mount(root, { token, force = null } = {}) {
  // A viewer of a shared link is in no session: no connection status to show.
  setStatus('status.not_joined', 'idle');
  document.getElementById('status').hidden = true;
  let timer = null;

  const show = async () => {
    clearTimeout(timer);
    let rec;
    try {
      rec = await watchRecording(token);
    } catch (err) {
      const [title, body] = refusalKeys(err);
      replaceChildren(root, h('section', { class: 'card message-card', id: 'watch-refused' },
        h('h1', { i18n: title }), h('p', { i18n: body })));
      return;
    }
    setSessionTitle(rec.title || '');
    const when = formatWhen(rec.started_at, language());
    const facts = h('p', { class: 'watch-facts' },
      h('time', { text: when, attrs: { datetime: rec.started_at || '' } }),
      rec.duration_s ? ` · ${formatDuration(rec.duration_s)}` : '');
    if (rec.status === 'ready' && rec.playback_url) {
      const panel = playbackPanel(rec, { force, headingLevel: 'h1' });
      window.tongxin = { home: 'watch', player: panel.player };
      replaceChildren(root, h('div', { class: 'watch' }, panel.el, facts,
        h('p', { class: 'hint', i18n: 'watch.weak_link_hint' })));
      return;
    }
    const view = statusView(rec);
    const box = h('section', { class: 'card message-card', id: 'watch-waiting' },
      h('h1', { text: rec.title || '' }), facts, badge(view.key, view.level));
    if (view.percent !== null) {
      box.append(h('progress', { max: 100, value: view.percent, id: 'watch-progress',
        attrs: { 'aria-labelledby': 'watch-progress-label' } }),
      h('p', { id: 'watch-progress-label' }));
      setText(box.lastChild, 'watch.preparing', { percent: view.percent });
    } else if (rec.status === 'failed') {
      box.append(h('p', { i18n: 'watch.failed_recording' }));
    } else {
      box.append(h('p', { i18n: 'watch.not_ready' }));
    }
    replaceChildren(root, box);
    if (rec.status !== 'failed') timer = setTimeout(show, BUSY_POLL_MS);
  };
  window.tongxin = { home: 'watch', player: null };
  await show();
}
