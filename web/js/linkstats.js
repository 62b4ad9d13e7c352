/**
 * The page's view of its own link, from getStats: a snapshot of counters per report, and the
 * `link` frame (rtt, loss, received and sent kbps, frame rate) from two snapshots.
 * Pure functions over plain stats objects, so they are tested with tables.
 */

/** Counters of the down and up connections' stats (iterables of RTCStats dictionaries). */
export function snapshot(downStats, upStats, nowMs) {
  const snap = {
    t: nowMs, bytesIn: 0, bytesOut: 0, packetsReceived: 0, packetsLost: 0,
    rttMs: null, fps: null,
  };
  const rtts = [];
  for (const stats of [downStats, upStats]) {
    const list = [...(stats || [])];
    const selected = new Set(list.filter((s) => s.type === 'transport' && s.selectedCandidatePairId)
      .map((s) => s.selectedCandidatePairId));
    for (const s of list) {
      if (s.type === 'inbound-rtp') {
        snap.bytesIn += s.bytesReceived || 0;
        snap.packetsReceived += s.packetsReceived || 0;
        snap.packetsLost += Math.max(0, s.packetsLost || 0);
        if (s.kind === 'video' && typeof s.framesPerSecond === 'number') {
          snap.fps = Math.max(snap.fps ?? 0, s.framesPerSecond);
        }
      } else if (s.type === 'outbound-rtp') {
        snap.bytesOut += s.bytesSent || 0;
      } else if (s.type === 'candidate-pair' && typeof s.currentRoundTripTime === 'number'
        && (selected.has(s.id) || (selected.size === 0 && s.nominated))) {
        rtts.push(s.currentRoundTripTime * 1000);
      }
    }
  }
  if (rtts.length) snap.rttMs = Math.min(...rtts);
  return snap;
}

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));
const round1 = (value) => Math.round(value * 10) / 10;

/**
 * The `link` frame for the interval between two snapshots; fields without data are left out.
 * Counters that went backwards (a new peer connection) count from zero.
 */
export function linkReport(previous, current) {
  const frame = { type: 'link' };
  if (current.rttMs !== null) frame.rtt_ms = round1(clamp(current.rttMs, 0, 60_000));
  if (current.fps !== null) frame.fps = round1(clamp(current.fps, 0, 240));
  if (!previous) return frame;
  const seconds = (current.t - previous.t) / 1000;
  if (seconds <= 0) return frame;
  const delta = (key) => {
    const d = current[key] - previous[key];
    return d >= 0 ? d : current[key];
  };
  frame.down_kbps = round1(clamp((delta('bytesIn') * 8) / 1000 / seconds, 0, 1_000_000));
  frame.up_kbps = round1(clamp((delta('bytesOut') * 8) / 1000 / seconds, 0, 1_000_000));
  const received = delta('packetsReceived');
  const lost = delta('packetsLost');
  if (received + lost > 0) frame.loss_pct = round1(clamp((100 * lost) / (received + lost), 0, 100));
  return frame;
}

/** A quality word for a link (ours or a `link` frame): good | fair | poor | unknown. */
export function linkQuality(link) {
  if (!link) return 'unknown';
  if (link.rung === 'audio_only') return 'poor';
  if (link.rung === 'low' || link.rung === 'reduced_fps') return 'fair';
  const loss = link.loss_pct ?? 0;
  const rtt = link.rtt_ms ?? 0;
  if (loss >= 8 || rtt >= 800) return 'poor';
  if (loss >= 2 || rtt >= 300) return 'fair';
  if (link.rung === 'full' || link.loss_pct !== undefined || link.rtt_ms !== undefined) {
    return 'good';
  }
  return 'unknown';
}
