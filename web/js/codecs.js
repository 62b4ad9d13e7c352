/**
 * Codec choices for published tracks: VP8 first for video (the relay forwards VP8 temporal
 * layers), Opus first for audio with RED kept offered, and the send encodings of each source
 * for a connection mode (full video, low video, audio only).
 *
 * Cameras publish simulcast in `full` mode: up to three spatial layers (180p, 360p, 720p, RIDs
 * q, h, f, lowest first: the relay reads the order of the offer's `a=simulcast` line as lowest
 * first), each with VP8 temporal layers; the relay forwards one layer per subscriber. How many
 * layers: as many as the capture has (a 360p camera sends two) and the join page's network
 * check allows (`cameraLayerCount`). The screen stays one high-resolution, low-fps stream.
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
    camera: { width: 1280, height: 720, frameRate: 30, maxBitrate: 1_700_000 },
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

/** Simulcast layers of a camera, lowest first: RID, height and bitrate ceiling. */
export const CAMERA_LAYERS = [
  { rid: 'q', height: 180, maxBitrate: 300_000 },
  { rid: 'h', height: 360, maxBitrate: 500_000 },
  { rid: 'f', height: 720, maxBitrate: 1_700_000 },
];

/** The top simulcast layer's own ceiling: what a direct call gives a camera on a good link. */
export const TOP_LAYER_MAX_BPS = 1_700_000;

/** Link (kbit/s, the network check's download) a camera needs for 2 and 3 layers. */
export const LAYER_LINK_KBPS = [0, 800, 2500];

/**
 * How many simulcast layers a camera sends: 1 outside `full` mode (the relay's low rung
 * covers a single-layer publisher); else as many of 180p/360p/720p as the capture height has,
 * and as the network check's download allows (unknown: the capture decides).
 */
export function cameraLayerCount(mode, captureHeight, linkKbps) {
  if (mode !== 'full') return 1;
  const height = captureHeight || 360;
  const byCapture = CAMERA_LAYERS.filter((l) => l.height <= height * 1.1).length;
  const byLink = linkKbps === null || linkKbps === undefined
    ? CAMERA_LAYERS.length
    : LAYER_LINK_KBPS.filter((kbps) => linkKbps >= kbps).length;
  return Math.max(1, Math.min(byCapture, byLink));
}

/**
 * The send encodings of a simulcast camera: the lowest `count` layers, each scaled down from
 * the capture height, lowest first; `layered` adds VP8 temporal layers to each. The top layer
 * may use what a direct call gives (`TOP_LAYER_MAX_BPS`, also a 360p camera's 360p layer):
 * the relay lowers it to what the weakest classroom that can watch it takes (the `layers`
 * frame's `max_kbps`), so a 1 Mbit/s classroom still gets 360p and one alone on 2 Mbit/s
 * most of its link.
 * Browsers give a lower layer its resolution's target bitrate, and up to its ceiling what a
 * top layer held by the relay leaves (180p measured 212k under a capped 360p): the relay sets
 * the lowest layer's ceiling too, from the weakest classroom.
 */
export function cameraEncodings(count, captureHeight, layered) {
  const height = captureHeight || 360;
  const layers = CAMERA_LAYERS.slice(0, count);
  return layers.map((layer, i) => {
    const encoding = {
      rid: layer.rid,
      active: true,
      scaleResolutionDownBy: Math.max(1, height / layer.height),
      maxBitrate: i === layers.length - 1 ? TOP_LAYER_MAX_BPS : layer.maxBitrate,
      maxFramerate: 30,
    };
    if (layered) encoding.scalabilityMode = 'L1T3';
    return encoding;
  });
}
