/**
 * The join page's network check: round trip (a few GET /healthz) and download throughput (a
 * sized download), then a plain verdict and the mode it suggests: full | low | audio_only.
 * The result is kept for the tab (`lastNetworkCheck`): the publisher's simulcast layers start
 * from it.
 */

const PROBES = 5;
const STORAGE_KEY = 'tongxin.netcheck';
const DOWNLOAD_BYTES = 1_000_000;
const DOWNLOAD_TIMEOUT_MS = 6000;

/** The mode a measured link suggests (kbps down, round trip ms; null when unknown). */
export function suggestMode({ downKbps, rttMs }) {
  if (downKbps === null || downKbps === undefined) return 'low';
  if (downKbps >= 1500 && (rttMs ?? 0) < 400) return 'full';
  if (downKbps >= 400 && (rttMs ?? 0) < 1000) return 'low';
  return 'audio_only';
}

/** Median of numbers (null for none). */
export function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function timeRoundTrips() {
  const samples = [];
  for (let i = 0; i < PROBES; i += 1) {
    const start = performance.now();
    try {
      const response = await fetch(`/healthz?probe=${i}`, { cache: 'no-store' });
      await response.arrayBuffer();
      if (response.ok) samples.push(performance.now() - start);
    } catch {
      // Count only answered probes.
    }
  }
  return median(samples);
}

async function timeDownload(url) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), DOWNLOAD_TIMEOUT_MS);
  const start = performance.now();
  let bytes = 0;
  try {
    const response = await fetch(url, { cache: 'no-store', signal: controller.signal });
    if (!response.ok) return null;
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
    }
  } catch (err) {
    if (err.name !== 'AbortError') return null;
    // Timed out: what arrived so far still measures the link.
  } finally {
    clearTimeout(timer);
  }
  const seconds = (performance.now() - start) / 1000;
  return bytes > 0 && seconds > 0 ? (bytes * 8) / 1000 / seconds : null;
}

/**
 * Runs the check; `onProgress(step)` with 'rtt' then 'download'. Resolves with
 * {rttMs, downKbps, mode}.
 */
export async function runNetworkCheck(onProgress = () => {}) {
  onProgress('rtt');
  const rttMs = await timeRoundTrips();
  onProgress('download');
  let downKbps = await timeDownload(`/api/v1/netcheck?bytes=${DOWNLOAD_BYTES}`);
  if (downKbps === null) downKbps = await timeDownload('/static/js/pages/operator.js');
  const result = { rttMs, downKbps, mode: suggestMode({ downKbps, rttMs }) };
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(result));
  } catch {
    // No storage: the publisher decides its layers from the capture alone.
  }
  return result;
}

/** The last network check of this tab ({rttMs, downKbps, mode}), or null. */
export function lastNetworkCheck() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
  } catch {
    return null;
  }
}
