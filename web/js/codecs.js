/**
 * Codec choices for published tracks: VP8 first for video (the relay forwards VP8 temporal
 * layers), Opus first for audio with RED kept offered, and the send encodings of each source
 * for a connection mode (full video, low video, audio only).
 */

/** `codecs` reordered so those of `mimeType` come first; the rest keep their order. */
export function preferCodec(codecs, mimeType) {
  const wanted = mimeType.toLowerCase();
  const first = codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
  const rest = codecs.filter((c) => c.mimeType.toLowerCase() !== wanted);
  return [...first, ...rest];
}

/** Applies the codec preference to a transceiver when the browser allows it. */
export function applyCodecPreference(transceiver, kind) {
  if (typeof transceiver.setCodecPreferences !== 'function') return false;
  const mimeType = kind === 'video' ? 'video/VP8' : 'audio/opus';
  for (const source of [RTCRtpSender, RTCRtpReceiver]) {
    const caps = source.getCapabilities?.(kind);
    if (!caps) continue;
    try {
      transceiver.setCodecPreferences(preferCodec(caps.codecs, mimeType));
      return true;
    } catch {
      // This browser validates against the other capability list: try it.
    }
  }
  return false;
}

/**
 * What each source sends in a mode: capture constraints and one encoding.
 * `mode` is full | low | audio_only; in audio_only no camera is sent.
 */
export const MODE_PROFILES = {
  full: {
    camera: { width: 640, height: 360, frameRate: 30, maxBitrate: 800_000 },
    screen: { frameRate: 10, maxBitrate: 1_200_000 },
  },
  low: {
    camera: { width: 320, height: 180, frameRate: 15, maxBitrate: 150_000 },
    screen: { frameRate: 5, maxBitrate: 500_000 },
  },
  audio_only: {
    camera: null,
    screen: { frameRate: 5, maxBitrate: 400_000 },
  },
};

/** Whether `mode` sends camera video at all. */
export function sendsCamera(mode) {
  return Boolean((MODE_PROFILES[mode] || MODE_PROFILES.full).camera);
}

/** The send encoding of `source` in `mode`; `layered` adds VP8 temporal layers (L1T3). */
export function sendEncoding(source, mode, layered) {
  const profile = (MODE_PROFILES[mode] || MODE_PROFILES.full)[source];
  const encoding = {};
  if (profile?.maxBitrate) encoding.maxBitrate = profile.maxBitrate;
  if (profile?.frameRate) encoding.maxFramerate = profile.frameRate;
  if (layered) encoding.scalabilityMode = 'L1T3';
  return encoding;
}
