/**
 * The REST client: JSON calls under /api/v1 with the session credential, errors turned into
 * `ApiError`s whose text is shown to the user in their language when the code is known.
 */

import { credential } from './credential.js';
import { has, t } from './i18n.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** What to tell the user: the translated code when there is one, else the server's text. */
  userMessage() {
    return describeError(this.code, this.message);
  }
}

/** A user-facing message for an error code (translated when known). */
export function describeError(code, message) {
  const key = `error.${code}`;
  if (code && has(key)) return t(key);
  return message || t('error.unknown');
}

/**
 * Calls `path` and returns the decoded JSON (or null for 204).
 * `body` is sent as JSON unless it is a Blob (sent as is with its type).
 */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = {};
  const bearer = credential();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let payload;
  if (body instanceof Blob) {
    payload = body;
    headers['Content-Type'] = body.type || 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, signal, cache: 'no-store' });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', err.message);
  }
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch { /* empty or not JSON */ }
  if (!response.ok) {
    throw new ApiError(response.status, data?.error?.code || `http_${response.status}`,
      data?.error?.message || `HTTP ${response.status}`);
  }
  return data;
}

export const get = (path, options) => api(path, { ...options, method: 'GET' });
export const post = (path, body, options) => api(path, { ...options, method: 'POST', body });
export const put = (path, body, options) => api(path, { ...options, method: 'PUT', body });
