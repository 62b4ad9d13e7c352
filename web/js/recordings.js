/**
 * Recordings as the library and the player show them (docs/recording.md):
 * the library query from the filter, what a recording's status says, the share expiries, and
 * the REST calls under /api/v1/recordings and /api/v1/watch.
 */

import { api, get, post } from './api.js';

export const STATUSES = ['recording', 'processing', 'ready', 'failed'];
export const KINDS = ['class', 'consult'];
/** Share-link lifetimes offered, in seconds (the API takes 60 s .. 30 days). */
export const SHARE_EXPIRIES = [
  { seconds: 3600, key: 'rec.expiry_hour' },
  { seconds: 86_400, key: 'rec.expiry_day' },
  { seconds: 7 * 86_400, key: 'rec.expiry_week' },
  { seconds: 30 * 86_400, key: 'rec.expiry_month' },
];
export const FILTER_FIELDS = ['kind', 'teacher', 'subject', 'q', 'from', 'to'];
/** Poll the library this often while a recording is being made or processed. */
export const BUSY_POLL_MS = 3000;

/** The query string of a library filter: only the fields set, in a fixed order. */
export function libraryQuery(filter) {
  const params = new URLSearchParams();
  for (const name of FILTER_FIELDS) {
    const value = String(filter?.[name] ?? '').trim();
    if (value && !(name === 'kind' && !KINDS.includes(value))) params.set(name, value);
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** What a recording's status shows: {key, level, percent|null}. */
export function statusView(rec) {
  const status = STATUSES.includes(rec?.status) ? rec.status : 'failed';
  const level = { recording: 'bad', processing: 'warn', ready: 'ok', failed: 'bad' }[status];
  let percent = null;
  if (status === 'processing') {
    const progress = Number(rec.progress);
    percent = Number.isFinite(progress) ? Math.round(Math.min(1, Math.max(0, progress)) * 100) : 0;
  }
  return { key: `rec.status_${status}`, level, percent };
}

/** True when any recording is still changing (worth polling for). */
export function anyBusy(recordings) {
  return (recordings || []).some((r) => r.status === 'recording' || r.status === 'processing');
}

/** The host's name of a recording (teacher for a class, doctor for a consult). */
export function hostName(rec) {
  return rec?.teacher || rec?.doctor || rec?.host_name || '';
}

/** A rendition's label figures: "1280×720 · 1.2 Mbit/s" / "320×180 · 200 kbit/s". */
export function renditionFigures({ width, height, bandwidth }) {
  const size = width && height ? `${width}×${height}` : '';
  let rate = '';
  if (bandwidth >= 1_000_000) rate = `${(bandwidth / 1_000_000).toFixed(1)} Mbit/s`;
  else if (bandwidth > 0) rate = `${Math.round(bandwidth / 1000)} kbit/s`;
  return [size, rate].filter(Boolean).join(' · ');
}

/** The absolute share URL for a `/watch/<token>` path. */
export function shareUrl(path, origin) {
  return new URL(path, origin).href;
}

/** The date part (YYYY-MM-DD, local time) of an ISO timestamp, or ''. */
export function localDate(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const two = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
}

/** A timestamp as the user's language writes a date and time. */
export function formatWhen(iso, lang) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleString(lang === 'en' ? 'en-GB' : 'zh-CN',
    { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export const listRecordings = (filter) => get(`/api/v1/recordings${libraryQuery(filter)}`);
export const shareRecording = (id, seconds) =>
  post(`/api/v1/recordings/${encodeURIComponent(id)}/share`, { expires_in_s: seconds });
export const deleteRecording = (id) =>
  api(`/api/v1/recordings/${encodeURIComponent(id)}`, { method: 'DELETE' });
export const getRecording = (id) => get(`/api/v1/recordings/${encodeURIComponent(id)}`);

/** GET /api/v1/watch/<token>: the shared recording, without any credential. */
export async function watchRecording(token) {
  const response = await fetch(`/api/v1/watch/${encodeURIComponent(token)}`,
    { cache: 'no-store' });
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const error = new Error(body?.error?.message || `HTTP ${response.status}`);
    error.code = body?.error?.code || `http_${response.status}`;
    error.status = response.status;
    throw error;
  }
  return body;
}
