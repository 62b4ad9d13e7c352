/**
 * Playing an HLS recording in a <video>: the browser's own HLS when it has it, else hls.js
 * (web/vendor/hls.js: hls.js 1.7.4 from npm, loaded on first use as a classic script that
 * defines window.Hls) over Media Source Extensions.
 *
 * The rendition follows the link: hls.js starts on the lowest one and then picks by the
 * bandwidth it measures; a native player does its own choice. The viewer can also pin one
 * (`setRendition(i)`, -1 for automatic): hls.js switches level, a native player loads that
 * rendition's playlist (read from the master playlist).
 */

export const HLS_MIME = 'application/vnd.apple.mpegurl';
export const HLS_SCRIPT = '/static/vendor/hls.js/hls.min.js';
const START_ESTIMATE_BPS = 250_000;

/** Which engine plays HLS here: 'native' | 'hlsjs' | 'none'. `force` ('native'|'hlsjs') wins
 * when that engine is available (for testing one path). */
export function playbackEngine({ nativeHls, mse, force = null }) {
  if (force === 'hlsjs' && mse) return 'hlsjs';
  if (force === 'native' && nativeHls) return 'native';
  if (nativeHls) return 'native';
  return mse ? 'hlsjs' : 'none';
}

/** hls.js settings: start on the lowest rendition, then adapt to the measured bandwidth. */
export function hlsConfig() {
  return {
    startLevel: 0,
    abrEwmaDefaultEstimate: START_ESTIMATE_BPS,
    testBandwidth: true,
    capLevelToPlayerSize: false,
    enableWorker: true,
    lowLatencyMode: false,
    maxBufferLength: 30,
  };
}

/** The variants of a master playlist: [{bandwidth, width, height, uri}] (uri absolute),
 * lowest bandwidth first. */
export function parseMaster(text, baseUrl) {
  const lines = String(text || '').split(/\r?\n/).map((l) => l.trim());
  const variants = [];
  for (let i = 0; i < lines.length; i += 1) {
    if (!lines[i].startsWith('#EXT-X-STREAM-INF:')) continue;
    const attrs = lines[i].slice('#EXT-X-STREAM-INF:'.length);
    const bandwidth = Number(/(?:^|,)BANDWIDTH=(\d+)/.exec(attrs)?.[1] || 0);
    const [width, height] = (/(?:^|,)RESOLUTION=(\d+)x(\d+)/.exec(attrs) || [])
      .slice(1).map(Number);
    let j = i + 1;
    while (j < lines.length && (!lines[j] || lines[j].startsWith('#'))) j += 1;
    if (j >= lines.length) break;
    variants.push({ bandwidth, width: width || null, height: height || null,
      uri: new URL(lines[j], baseUrl).href });
    i = j;
  }
  return variants.sort((a, b) => a.bandwidth - b.bandwidth);
}

let loadingHls = null;

/** window.Hls, loading the vendored script once. */
export function loadHlsJs() {
  if (window.Hls) return Promise.resolve(window.Hls);
  loadingHls ||= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = HLS_SCRIPT;
    script.async = true;
    script.addEventListener('load', () => (window.Hls ? resolve(window.Hls)
      : reject(new Error('hls.js did not load'))));
    script.addEventListener('error', () => { loadingHls = null; reject(new Error('hls.js did not load')); });
    document.head.append(script);
  });
  return loadingHls;
}

/** Plays one master playlist in `video`; `onChange()` is called when renditions or the playing
 * rendition change, `onError(code)` on a fatal error ('unsupported' | 'network' | 'media'). */
export class HlsPlayer {
  constructor(video, { onChange = () => {}, onError = () => {}, force = null } = {}) {
    this.video = video;
    this.onChange = onChange;
    this.onError = onError;
    this.force = force;
    this.engine = null;
    this.hls = null;
    this.masterUrl = null;
    this.renditions = [];
    this.pinned = -1;
    this.playing = -1;
    /** The renditions hls.js switched to, in order (the first is where it started). */
    this.switches = [];
  }

  async load(masterUrl) {
    this.masterUrl = new URL(masterUrl, window.location.href).href;
    const nativeHls = this.video.canPlayType(HLS_MIME) !== '';
    const mse = typeof window.MediaSource === 'function'
      || typeof window.ManagedMediaSource === 'function';
    this.engine = playbackEngine({ nativeHls, mse, force: this.force });
    if (this.engine === 'none') {
      this.onError('unsupported');
      return this.engine;
    }
    if (this.engine === 'native') {
      await this.loadNative();
    } else {
      await this.loadHlsJs();
    }
    this.onChange();
    return this.engine;
  }

  async loadNative() {
    try {
      const response = await fetch(this.masterUrl, { cache: 'no-store' });
      if (response.ok) this.renditions = parseMaster(await response.text(), this.masterUrl);
    } catch {
      this.renditions = [];
    }
    this.video.addEventListener('error', () => this.onError('media'));
    this.video.src = this.masterUrl;
  }

  async loadHlsJs() {
    const Hls = await loadHlsJs();
    if (!Hls.isSupported()) {
      this.engine = 'none';
      this.onError('unsupported');
      return;
    }
    const hls = new Hls(hlsConfig());
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
      this.renditions = (data.levels || []).map((level) => ({
        bandwidth: level.bitrate, width: level.width || null, height: level.height || null,
        uri: level.url?.[0] ?? level.uri ?? null,
      }));
      this.onChange();
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
      this.playing = data.level;
      this.switches.push(data.level);
      this.onChange();
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        this.onError('network');
        hls.startLoad();
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        this.onError('media');
        hls.recoverMediaError();
      } else {
        this.onError('media');
      }
    });
    hls.loadSource(this.masterUrl);
    hls.attachMedia(this.video);
  }

  /** Pins rendition `index` (of `renditions`), or -1 for automatic. */
  setRendition(index) {
    this.pinned = index;
    if (this.hls) {
      this.hls.currentLevel = index;
      if (index < 0) this.hls.nextLevel = -1;
    } else if (this.engine === 'native') {
      const at = this.video.currentTime;
      const wasPaused = this.video.paused;
      const uri = index >= 0 ? this.renditions[index]?.uri : this.masterUrl;
      if (!uri) return;
      this.video.src = uri;
      this.video.addEventListener('loadedmetadata', () => {
        this.video.currentTime = at;
        if (!wasPaused) this.video.play().catch(() => {});
      }, { once: true });
      this.playing = index;
    }
    this.onChange();
  }

  destroy() {
    this.hls?.destroy();
    this.hls = null;
    this.video.removeAttribute('src');
    this.video.load();
  }
}
