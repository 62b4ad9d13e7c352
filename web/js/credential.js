/**
 * The session credential and what came with it, kept in sessionStorage (per tab, gone when the
 * tab closes; never the browser-wide storage), plus the exchange of a join link's token for it.
 */

const SESSION_KEY = 'tongxin.session';
const DEVICES_KEY = 'tongxin.devices';

/** The join token in a /join/<token> path, or null. */
export function tokenFromPath(pathname) {
  const match = /^\/join\/([^/?#]+)\/?$/.exec(pathname);
  return match ? decodeURIComponent(match[1]) : null;
}

/** True when a saved session's credential has expired (expires_at is in seconds). */
export function isExpired(saved, nowMs) {
  return typeof saved?.expires_at === 'number' && saved.expires_at * 1000 <= nowMs;
}

/** Exchanges a join token for a session credential: POST /api/v1/session. */
export async function exchangeToken(token) {
  const response = await fetch('/api/v1/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
    cache: 'no-store',
  });
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: handled below */ }
  if (!response.ok) {
    const error = new Error(body?.error?.message || `HTTP ${response.status}`);
    error.code = body?.error?.code || `http_${response.status}`;
    error.status = response.status;
    throw error;
  }
  return body;
}

export function saveSession(granted) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(granted));
}

/** The saved session, or null when none or expired. */
export function loadSession(nowMs = Date.now()) {
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null'); } catch { return null; }
  if (!saved?.credential || isExpired(saved, nowMs)) return null;
  return saved;
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(DEVICES_KEY);
}

/** The bearer credential for REST calls, or null. */
export function credential() {
  return loadSession()?.credential ?? null;
}

/** The devices and mode chosen on the join page: {audioId, videoId, mode}. */
export function saveDeviceChoice(choice) {
  sessionStorage.setItem(DEVICES_KEY, JSON.stringify(choice));
}

export function loadDeviceChoice() {
  try {
    return JSON.parse(sessionStorage.getItem(DEVICES_KEY) || 'null') || { mode: 'full' };
  } catch {
    return { mode: 'full' };
  }
}
