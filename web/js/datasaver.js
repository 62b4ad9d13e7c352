/**
 * Data saver: a data budget for participants on prepaid mobile data. The choice (off, or 50,
 * 100, 200 MB per hour) is remembered in localStorage and sent as a `data_saver` frame on
 * entering a session (and again after a reconnect); the relay answers with `data` frames
 * (MB used since joining, the budget, whether the budget holds the picture down), shown as
 * "12.3 MB used · budget 100 MB/h".
 */

import { h } from './dom.js';
import { setText } from './i18n.js';

export const PRESETS_MB_H = [50, 100, 200];
export const STORAGE_KEY = 'tongxin.dataSaver';

/** The remembered budget (MB/h) or null; anything else stored is ignored. */
export function storedBudget(storage = globalThis.localStorage) {
  let raw = null;
  try { raw = storage?.getItem(STORAGE_KEY) ?? null; } catch { return null; }
  const value = Number(raw);
  return raw !== null && PRESETS_MB_H.includes(value) ? value : null;
}

/** Remember `budget` (null: off). */
export function storeBudget(budget, storage = globalThis.localStorage) {
  try {
    if (budget === null) storage?.removeItem(STORAGE_KEY);
    else storage?.setItem(STORAGE_KEY, String(budget));
  } catch {
    // Private mode: the choice holds for this page only.
  }
}

/** The `data_saver` frame for a budget (null clears mine: the site's default applies). */
export function dataSaverFrame(budget) {
  return { type: 'data_saver', mb_per_hour: budget };
}

/** [i18n key, args] of the usage line for a `data` frame. */
export function usageText(frame) {
  const used = Number(frame?.used_mb ?? 0).toFixed(1);
  if (frame?.budget_mb_h === null || frame?.budget_mb_h === undefined) {
    return ['data.used', { used }];
  }
  return ['data.used_of_budget', { used, budget: String(Math.round(frame.budget_mb_h)) }];
}

/** The banner key for a `data` frame's verdict, or null. */
export function verdictBanner(frame) {
  if (frame?.verdict === 'below_audio') return 'data.below_audio';
  return null;
}

/**
 * The data saver control and usage line of a room page: a select (off / presets), the MB
 * used, and the budget. Sends the remembered choice whenever a session starts.
 */
export function dataSaverControl(room, channel) {
  const select = h('select', { class: 'data-saver-select', attrs: { 'data-testid': 'data-saver' } },
    h('option', { attrs: { value: '' }, i18n: 'data.off' }),
    ...PRESETS_MB_H.map((mb) => h('option', { attrs: { value: String(mb) }, i18n: 'data.preset', i18nArgs: { mb: String(mb) } })));
  const usage = h('span', { class: 'data-usage', attrs: { 'aria-live': 'polite', 'data-testid': 'data-usage' } });
  const label = h('label', { class: 'data-saver' }, h('span', { i18n: 'data.saver' }), select);
  const el = h('div', { class: 'data-saver-bar' }, label, usage);
  const current = storedBudget();
  select.value = current === null ? '' : String(current);
  const send = () => channel.send(dataSaverFrame(storedBudget()));
  select.addEventListener('change', () => {
    storeBudget(select.value === '' ? null : Number(select.value));
    send();
  });
  let sentFor = null;
  room.addEventListener('change', (event) => {
    const { what, frame } = event.detail;
    if (what === 'session' && frame?.id && frame.id !== sentFor) {
      sentFor = frame.id;
      if (storedBudget() !== null) send();
    }
    if (what === 'data') setText(usage, ...usageText(frame));
  });
  channel.on('state', ({ state }) => { if (state === 'online') sentFor = null; });
  setText(usage, ...usageText(null));
  return { el, select, usage };
}
