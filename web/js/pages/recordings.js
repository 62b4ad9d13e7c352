/**
 * The recordings library (/recordings, and the operator dashboard's Recordings tab): filter
 * by kind, teacher or doctor, subject, words and dates; each recording's status with the
 * processing progress (refreshed while anything is busy); play a ready one here; share a link
 * with an expiry; delete (operator only).
 */

import { confirmDialog, formatDuration } from '../controls.js';
import { field, h, replaceChildren, select } from '../dom.js';
import { language, setText, t } from '../i18n.js';
import { playbackPanel } from '../playback.js';
import { anyBusy, BUSY_POLL_MS, deleteRecording, formatWhen, hostName, listRecordings,
  SHARE_EXPIRIES, shareRecording, shareUrl, statusView } from '../recordings.js';
import { toast, toastError } from '../shell.js';
import { badge } from '../tiles.js';

const NARROW = '(max-width: 760px)';

/** Whether a role may delete recordings. */
export function canDelete(role) {
  return role === 'operator';
}

function filterForm(onFilter) {
  const kind = select([
    { value: '', i18n: 'rec.kind_all' }, { value: 'class', i18n: 'rec.kind_class' },
    { value: 'consult', i18n: 'rec.kind_consult' },
  ], { name: 'kind', id: 'filter-kind' });
  const input = (name, type = 'text') => h('input', { name, type, id: `filter-${name}`,
    autocomplete: 'off', maxLength: type === 'text' ? 100 : undefined });
  const form = h('form', { class: 'card filter-form', id: 'recording-filter',
    attrs: { role: 'search', 'aria-label': t('rec.filter') },
    on: {
      submit: (event) => {
        event.preventDefault();
        onFilter(Object.fromEntries(new FormData(form)));
      },
    } },
  field('rec.kind', kind), field('rec.teacher', input('teacher')),
  field('rec.subject', input('subject')), field('rec.words', input('q', 'search')),
  field('rec.from', input('from', 'date')), field('rec.to', input('to', 'date')),
  h('div', { class: 'filter-actions' },
    h('button', { type: 'submit', class: 'btn btn-primary', i18n: 'rec.apply_filter' }),
    h('button', { type: 'reset', class: 'btn', i18n: 'rec.clear_filter',
      on: { click: () => setTimeout(() => onFilter({}), 0) } })));
  kind.addEventListener('change', () => form.requestSubmit());
  return form;
}

async function share(rec) {
  const expiry = select(SHARE_EXPIRIES.map((e, i) => ({ value: String(e.seconds), i18n: e.key,
    selected: i === 1 })), { name: 'expires', id: 'share-expiry' });
  const answer = await confirmDialog({
    titleKey: 'rec.share_title', bodyKey: 'rec.share_body', confirmKey: 'rec.make_link',
    fields: [field('rec.expires_in', expiry)],
  });
  if (!answer) return;
  let made;
  try {
    made = await shareRecording(rec.id, Number(answer.expires));
  } catch (err) {
    toastError(err);
    return;
  }
  const url = shareUrl(made.url, window.location.origin);
  const link = h('input', { type: 'text', readOnly: true, value: url, id: 'share-link',
    class: 'link-field' });
  const copy = h('button', { type: 'button', class: 'btn btn-primary', i18n: 'rec.copy',
    on: {
      click: async () => {
        try {
          await navigator.clipboard.writeText(url);
          toast('rec.copied', 'ok');
        } catch {
          link.select();
          toast('rec.copy_by_hand', 'info');
        }
      },
    } });
  const dialog = h('dialog', { class: 'dialog', id: 'share-dialog' },
    h('div', { class: 'dialog-body' },
      h('h2', { i18n: 'rec.link_ready' }),
      field('rec.link', link),
      h('p', { i18n: 'rec.link_expires', i18nArgs: { when: formatWhen(made.expires_at, language()) },
        dataset: { expiresAt: made.expires_at || '' } }),
      h('div', { class: 'dialog-actions' }, copy,
        h('button', { type: 'button', class: 'btn', i18n: 'common.close',
          on: { click: () => dialog.close() } }))));
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  link.select();
}

function recordingRow(rec, { role, onPlay, onDelete }) {
  const view = statusView(rec);
  const status = h('div', { class: 'rec-status' }, badge(view.key, view.level));
  if (view.percent !== null) {
    status.append(h('progress', { max: 100, value: view.percent,
      attrs: { 'aria-label': t('rec.progress_label', { title: rec.title || '' }) } }),
    h('span', { class: 'rec-percent', text: `${view.percent}%` }));
  }
  const actions = h('div', { class: 'rec-actions' });
  if (rec.status === 'ready' && rec.playback_url) {
    actions.append(h('button', { type: 'button', class: 'btn btn-small btn-primary btn-play',
      text: t('rec.play'), attrs: { 'aria-label': t('rec.play_named', { title: rec.title || '' }) },
      on: { click: () => onPlay(rec) } }));
    actions.append(h('button', { type: 'button', class: 'btn btn-small btn-share-rec',
      text: t('rec.share'), attrs: { 'aria-label': t('rec.share_named', { title: rec.title || '' }) },
      on: { click: () => share(rec) } }));
  }
  if (canDelete(role)) {
    actions.append(h('button', { type: 'button', class: 'btn btn-small btn-danger btn-delete-rec',
      text: t('rec.delete'), attrs: { 'aria-label': t('rec.delete_named', { title: rec.title || '' }) },
      on: { click: () => onDelete(rec) } }));
  }
  const poster = rec.poster_url && rec.status === 'ready'
    ? h('img', { src: rec.poster_url, alt: '', width: 128, height: 72, loading: 'lazy',
      class: 'rec-poster' })
    : h('div', { class: 'rec-poster rec-poster-empty', attrs: { 'aria-hidden': 'true' } });
  return h('li', { class: 'rec-item card', dataset: { recording: rec.id, status: rec.status } },
    poster,
    h('div', { class: 'rec-main' },
      h('h3', { class: 'rec-title', text: rec.title || rec.id }),
      h('p', { class: 'rec-facts' },
        badge(`rec.kind_${rec.kind === 'consult' ? 'consult' : 'class'}`, 'info'), ' ',
        h('span', { text: [hostName(rec), rec.subject].filter(Boolean).join(' · ') })),
      h('p', { class: 'rec-when' },
        h('time', { text: formatWhen(rec.started_at, language()),
          attrs: { datetime: rec.started_at || '' } }),
        rec.duration_s ? h('span', { class: 'rec-duration', text: ` · ${formatDuration(rec.duration_s)}` })
          : null),
      status),
    actions);
}

/**
 * Mounts the library in `root`. ctx.profile is the session (its participant's role decides
 * what is offered); ctx.embedded (operator tab) leaves out the page heading.
 */
export async function mount(root, ctx = {}) {
  const role = ctx.profile?.participant?.role || ctx.profile?.home || '';
  let filter = {};
  let pollTimer = null;
  let current = null;
  const list = h('ul', { class: 'rec-list', id: 'recording-list', attrs: { 'aria-live': 'polite' } });
  const summary = h('p', { class: 'hint', id: 'recording-count' });
  const playerSlot = h('div', { class: 'player-slot' });

  const closePlayer = () => {
    current?.destroy();
    current = null;
    playerSlot.replaceChildren();
  };
  const play = (rec) => {
    closePlayer();
    current = playbackPanel(rec, { onClose: closePlayer });
    playerSlot.append(current.el);
    current.el.scrollIntoView({ block: 'nearest' });
    current.video.focus();
    current.video.play().catch(() => {});
    window.tongxin = { ...(window.tongxin || {}), player: current.player };
  };
  const remove = async (rec) => {
    const answer = await confirmDialog({ titleKey: 'rec.delete_title', bodyKey: 'rec.delete_body',
      confirmKey: 'rec.delete', danger: true });
    if (!answer) return;
    try {
      await deleteRecording(rec.id);
      toast('rec.deleted', 'ok');
      if (current && playerSlot.firstChild?.dataset.recording === rec.id) closePlayer();
      await refresh();
    } catch (err) {
      toastError(err);
    }
  };

  async function refresh() {
    clearTimeout(pollTimer);
    let answer;
    try {
      answer = await listRecordings(filter);
    } catch (err) {
      replaceChildren(list, h('li', { class: 'form-error', i18n: 'rec.load_failed' }));
      summary.textContent = '';
      if (err?.status !== 404) toastError(err);
      return;
    }
    const recordings = Array.isArray(answer) ? answer : answer?.recordings || [];
    setText(summary, 'rec.count', { n: recordings.length });
    replaceChildren(list, recordings.length
      ? recordings.map((rec) => recordingRow(rec, { role, onPlay: play, onDelete: remove }))
      : h('li', { class: 'empty-card' },
        h('p', { class: 'empty', i18n: Object.keys(filter).some((k) => filter[k])
          ? 'rec.none_match' : 'rec.none_yet' }),
        h('p', { class: 'hint', i18n: 'rec.none_hint' })));
    if (anyBusy(recordings) && root.isConnected) {
      pollTimer = setTimeout(() => refresh(), BUSY_POLL_MS);
    }
  }

  const form = filterForm((values) => { filter = values; refresh(); });
  // On a phone the filter starts folded so the recordings come first.
  const filterBox = h('details', { class: 'filter-box', open: !window.matchMedia(NARROW).matches },
    h('summary', { i18n: 'rec.filter' }), form);
  replaceChildren(root, h('div', { class: 'library', id: 'recordings-library' },
    ctx.embedded ? null : h('div', { class: 'library-head' },
      h('h1', { id: 'library-h', i18n: 'rec.library' }),
      ctx.profile && ctx.profile.home !== 'operator'
        ? h('a', { href: '/', class: 'btn btn-small', i18n: 'rec.back_to_session' }) : null),
    playerSlot, filterBox, summary, list));
  await refresh();
  return { stop: () => { clearTimeout(pollTimer); closePlayer(); } };
}
