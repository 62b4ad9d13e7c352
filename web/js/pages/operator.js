/**
 * Operator dashboard (county/city): live sessions with their participants and link quality,
 * the directory (add and edit experts and sites: 卫生院, 村卫生室, 教学点, …), the audit log and
 * the recordings library.
 */

import { get, post, put } from '../api.js';
import { confirmDialog } from '../controls.js';
import { field, h, replaceChildren, select } from '../dom.js';
import { setText } from '../i18n.js';
import { linkQuality } from '../linkstats.js';
import { toast, toastError } from '../shell.js';
import { badge } from '../tiles.js';

const LIVE_POLL_MS = 5000;
const AUDIT_PAGE = 50;
export const SITE_KINDS = ['village_clinic', 'township_health_center', 'county_hospital', 'city_hospital',
  'provincial_hospital', 'school', 'classroom'];

/** A list from an API answer that is either a list or {items: [...]}. */
export function itemsOf(answer) {
  if (Array.isArray(answer)) return answer;
  return answer?.entries || answer?.items || answer?.sessions || [];
}

/** Comma/、-separated text -> trimmed non-empty values. */
export function splitList(text) {
  return String(text || '').split(/[,，、\s]+/).map((s) => s.trim()).filter(Boolean);
}

/** A region path (province, city, county, …) as text, and back. */
export function regionText(region) {
  return Array.isArray(region) ? region.join(' / ') : String(region || '');
}

export function splitRegion(text) {
  return String(text || '').split('/').map((s) => s.trim()).filter(Boolean);
}

const TABS = [
  { id: 'live', key: 'operator.tab_live' },
  { id: 'classes', key: 'operator.tab_classes' },
  { id: 'experts', key: 'operator.tab_experts' },
  { id: 'sites', key: 'operator.tab_sites' },
  { id: 'audit', key: 'operator.tab_audit' },
  { id: 'recordings', key: 'operator.tab_recordings' },
];

function table(headKeys, rows, emptyKey) {
  if (!rows.length) return h('p', { class: 'empty', i18n: emptyKey });
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data-table' },
    h('thead', {}, h('tr', {}, headKeys.map((k) => h('th', { attrs: { scope: 'col' }, i18n: k })))),
    h('tbody', {}, rows)));
}

function qualityBadge(link) {
  const quality = linkQuality(link);
  const level = { good: 'ok', fair: 'warn', poor: 'bad' }[quality] || 'info';
  return badge(`quality.${quality}`, level);
}

function renderLive(panel, answer) {
  const sessions = itemsOf(answer);
  const cards = sessions.map((s) => h('article', { class: 'card live-card', dataset: { session: s.id } },
    h('header', { class: 'live-head' },
      h('h3', { text: s.title || s.id }),
      badge(s.kind === 'consult' ? 'operator.kind_consult' : 'operator.kind_class', 'info'),
      s.recording ? badge('teacher.recording', 'bad') : null),
    h('ul', { class: 'participant-list' }, (s.participants || []).map((p) => h('li', {},
      h('span', { class: 'participant-name', text: p.name || p.id }),
      h('span', { class: 'participant-role', i18n: `role.${p.role}` }),
      p.present === false ? badge('teacher.offline', 'info') : qualityBadge(p.link))))));
  replaceChildren(panel, sessions.length ? h('div', { class: 'live-grid' }, cards)
    : h('p', { class: 'empty', i18n: 'operator.no_live' }));
}

/** An id field for a new directory entry (ids are fixed once made). */
function idField(existing) {
  if (existing) return null;
  return field('operator.id', h('input', { name: 'id', required: true, maxLength: 128,
    pattern: '[A-Za-z0-9._:@\\-]+', autocomplete: 'off' }), 'operator.id_hint');
}

async function editExpert(expert, reload) {
  const name = h('input', { name: 'name', required: true, value: expert?.name ?? '', maxLength: 100 });
  const kind = select(['doctor', 'teacher'].map((k) => ({ value: k, i18n: `expert.${k}`,
    selected: (expert?.kind ?? 'doctor') === k })), { name: 'kind' });
  const specialties = h('input', { name: 'specialties', value: (expert?.specialties || []).join(', ') });
  const languages = h('input', { name: 'languages', value: (expert?.languages || ['zh']).join(', ') });
  const capacity = h('input', { name: 'capacity', type: 'number', min: 1, max: 20,
    value: expert?.capacity ?? 1 });
  const answer = await confirmDialog({
    titleKey: expert ? 'operator.edit_expert' : 'operator.add_expert', confirmKey: 'common.save',
    fields: [idField(expert), field('operator.name', name), field('operator.expert_kind', kind),
      field('operator.specialties', specialties, 'operator.list_hint'),
      field('operator.languages', languages, 'operator.list_hint'), field('operator.capacity', capacity)],
  });
  if (!answer) return;
  const body = { ...expert, id: expert?.id ?? answer.id, name: answer.name, kind: answer.kind,
    specialties: splitList(answer.specialties), languages: splitList(answer.languages),
    capacity: Number(answer.capacity) || 1 };
  try {
    if (expert) await put(`/api/v1/experts/${encodeURIComponent(expert.id)}`, body);
    else await post('/api/v1/experts', body);
    toast('operator.saved', 'ok');
    await reload();
  } catch (err) {
    toastError(err);
  }
}

async function editSite(site, reload) {
  const name = h('input', { name: 'name', required: true, value: site?.name ?? '', maxLength: 100 });
  const kind = select(SITE_KINDS.map((k) => ({ value: k, i18n: `site.${k}`, selected: site?.kind === k })),
    { name: 'kind' });
  const region = h('input', { name: 'region', value: regionText(site?.region), maxLength: 200 });
  const answer = await confirmDialog({
    titleKey: site ? 'operator.edit_site' : 'operator.add_site', confirmKey: 'common.save',
    fields: [idField(site), field('operator.name', name), field('operator.site_kind', kind),
      field('operator.region', region, 'operator.region_hint')],
  });
  if (!answer) return;
  const body = { ...site, id: site?.id ?? answer.id, name: answer.name, kind: answer.kind,
    region: splitRegion(answer.region) };
  try {
    if (site) await put(`/api/v1/sites/${encodeURIComponent(site.id)}`, body);
    else await post('/api/v1/sites', body);
    toast('operator.saved', 'ok');
    await reload();
  } catch (err) {
    toastError(err);
  }
}

async function showExperts(panel) {
  const reload = () => showExperts(panel);
  const experts = itemsOf(await get('/api/v1/experts'));
  const rows = experts.map((e) => h('tr', {},
    h('td', { text: e.name }),
    h('td', { text: (e.specialties || []).join(', ') }),
    h('td', { text: (e.languages || []).join(', ') }),
    h('td', {}, badge(e.on_duty ? 'doctor.on_duty' : 'doctor.off_duty', e.on_duty ? 'ok' : 'info')),
    h('td', {}, h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.edit',
      on: { click: () => editExpert(e, reload) } }))));
  replaceChildren(panel,
    h('div', { class: 'panel-head' }, h('button', { type: 'button', class: 'btn btn-primary',
      i18n: 'operator.add_expert', on: { click: () => editExpert(null, reload) } })),
    table(['operator.name', 'operator.specialties', 'operator.languages', 'operator.duty', 'common.actions'],
      rows, 'operator.no_experts'));
}

async function showSites(panel) {
  const reload = () => showSites(panel);
  const sites = itemsOf(await get('/api/v1/sites'));
  const rows = sites.map((s) => h('tr', {},
    h('td', { text: s.name }),
    h('td', { i18n: `site.${s.kind}` }),
    h('td', { text: regionText(s.region) }),
    h('td', {}, h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.edit',
      on: { click: () => editSite(s, reload) } }))));
  replaceChildren(panel,
    h('div', { class: 'panel-head' }, h('button', { type: 'button', class: 'btn btn-primary',
      i18n: 'operator.add_site', on: { click: () => editSite(null, reload) } })),
    table(['operator.name', 'operator.site_kind', 'operator.region', 'common.actions'], rows,
      'operator.no_sites'));
}

function linkList(view, siteNames) {
  const rows = [[null, view.host_link], ...Object.entries(view.classroom_links || {})];
  return h('dl', { class: 'link-list' }, rows.map(([site, link]) => [
    h('dt', site ? { text: siteNames.get(site) ?? site } : { i18n: 'role.teacher' }),
    h('dd', {}, h('input', { type: 'text', readOnly: true, value: link, class: 'link-field',
      i18nAttrs: { 'aria-label': 'operator.join_link' },
      on: { focus: (event) => event.target.select() } }))]));
}

async function scheduleClass(panel, reload) {
  const [teachers, rooms] = await Promise.all([
    get('/api/v1/experts?kind=teacher'), get('/api/v1/sites?kind=classroom')]);
  const title = h('input', { name: 'title', required: true, maxLength: 200 });
  const subject = h('input', { name: 'subject', required: true, maxLength: 64 });
  const teacher = select(itemsOf(teachers).map((e) => ({ value: e.id, text: e.name })),
    { name: 'teacher_id', required: true });
  const classrooms = h('fieldset', { class: 'choice-group' },
    h('legend', { i18n: 'operator.classrooms' }),
    itemsOf(rooms).map((site) => h('label', { class: 'choice' },
      h('input', { type: 'checkbox', name: 'classroom', value: site.id }),
      h('span', { text: site.name }))));
  const recording = h('label', { class: 'choice' },
    h('input', { type: 'checkbox', name: 'recording_allowed', value: '1' }),
    h('span', { i18n: 'operator.recording_allowed' }));
  const answer = await confirmDialog({
    titleKey: 'operator.schedule_class', confirmKey: 'operator.schedule',
    fields: [field('operator.class_title', title), field('operator.subject', subject),
      field('role.teacher', teacher), classrooms, recording],
  });
  if (!answer) return;
  const picked = [...classrooms.querySelectorAll('input:checked')].map((i) => i.value);
  try {
    const view = await post('/api/v1/classes', {
      title: answer.title, subject: answer.subject, teacher_id: answer.teacher_id,
      classroom_site_ids: picked, recording_allowed: answer.recording_allowed === '1',
    });
    await reload();
    panel.prepend(h('section', { class: 'card scheduled', attrs: { role: 'status' } },
      h('h3', { i18n: 'operator.scheduled', i18nArgs: { title: view.klass.title } }),
      h('p', { class: 'hint', i18n: 'operator.links_hint' }),
      linkList(view, new Map(itemsOf(rooms).map((r) => [r.id, r.name])))));
  } catch (err) {
    toastError(err);
  }
}

async function showClasses(panel) {
  const reload = () => showClasses(panel);
  const classes = itemsOf(await get('/api/v1/classes'));
  const rows = classes.map((c) => h('tr', {},
    h('td', { text: c.title }),
    h('td', { text: c.subject }),
    h('td', { text: auditTime({ at: c.starts_at }) }),
    h('td', { text: String((c.classroom_site_ids || []).length) }),
    h('td', {}, badge(`class_state.${c.state}`, c.state === 'live' ? 'ok' : 'info'))));
  replaceChildren(panel,
    h('div', { class: 'panel-head' }, h('button', { type: 'button', class: 'btn btn-primary',
      i18n: 'operator.schedule_class', on: { click: () => scheduleClass(panel, reload) } })),
    table(['operator.class_title', 'operator.subject', 'operator.starts', 'operator.classrooms',
      'operator.state'], rows, 'operator.no_classes'));
}

function auditTime(entry) {
  const at = entry.at ?? entry.time ?? entry.ts;
  const date = typeof at === 'number' ? new Date(at * 1000) : new Date(at);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}

/** What an audit entry concerns: its session and its small facts. */
export function auditTarget(entry) {
  const facts = Object.entries(entry.detail || {}).map(([k, v]) => `${k}=${v}`);
  return [entry.session, ...facts].filter(Boolean).join(' · ');
}

async function showAudit(panel) {
  const body = h('tbody', {});
  const more = h('button', { type: 'button', class: 'btn', i18n: 'operator.load_more' });
  let after = '';
  const load = async () => {
    more.disabled = true;
    try {
      const answer = await get(`/api/v1/audit?limit=${AUDIT_PAGE}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      const entries = itemsOf(answer);
      for (const e of entries) {
        body.append(h('tr', {},
          h('td', { text: auditTime(e) }),
          h('td', { text: e.actor ?? '' }),
          h('td', { text: e.action ?? '' }),
          h('td', { text: auditTarget(e) })));
      }
      after = answer?.next_after ?? (entries.length ? entries[entries.length - 1].id ?? '' : '');
      more.hidden = entries.length < AUDIT_PAGE || !after;
    } catch (err) {
      toastError(err);
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', load);
  replaceChildren(panel, h('div', { class: 'table-wrap' }, h('table', { class: 'data-table' },
    h('thead', {}, h('tr', {}, ['operator.time', 'operator.actor', 'operator.action', 'operator.target']
      .map((k) => h('th', { attrs: { scope: 'col' }, i18n: k })))), body)), more);
  await load();
}

export async function mount(root, ctx = {}) {
  const panel = h('section', { class: 'panel', id: 'operator-panel', attrs: { role: 'tabpanel' } });
  const buttons = TABS.map((tab) => h('button', {
    type: 'button', class: 'tab', id: `tab-${tab.id}`, i18n: tab.key,
    attrs: { role: 'tab', 'aria-selected': 'false', 'aria-controls': 'operator-panel' },
  }));
  let liveTimer = null;
  let library = null;
  const open = async (id) => {
    clearInterval(liveTimer);
    library?.stop();
    library = null;
    buttons.forEach((b, i) => {
      const selected = TABS[i].id === id;
      b.setAttribute('aria-selected', String(selected));
      b.tabIndex = selected ? 0 : -1;
    });
    panel.setAttribute('aria-labelledby', `tab-${id}`);
    replaceChildren(panel, h('p', { class: 'loading', i18n: 'common.loading' }));
    try {
      if (id === 'live') {
        const refresh = async () => renderLive(panel, await get('/api/v1/live'));
        await refresh();
        liveTimer = setInterval(() => refresh().catch(() => {}), LIVE_POLL_MS);
      } else if (id === 'classes') await showClasses(panel);
      else if (id === 'experts') await showExperts(panel);
      else if (id === 'sites') await showSites(panel);
      else if (id === 'recordings') {
        const page = await import('./recordings.js');
        library = await page.mount(panel, { profile: ctx.profile, embedded: true });
      } else await showAudit(panel);
    } catch (err) {
      replaceChildren(panel, h('p', { class: 'form-error' }));
      setText(panel.firstChild, 'error.load_failed');
      toastError(err);
    }
  };
  const tablist = h('div', { class: 'tabs', attrs: { role: 'tablist', 'aria-labelledby': 'operator-h' } }, buttons);
  buttons.forEach((b, i) => {
    b.addEventListener('click', () => open(TABS[i].id));
    b.addEventListener('keydown', (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = buttons[(i + step + buttons.length) % buttons.length];
      next.focus();
      next.click();
    });
  });
  replaceChildren(root, h('div', { class: 'operator' },
    h('h1', { id: 'operator-h', i18n: 'operator.title' }), tablist, panel));
  await open('live');
}
