/**
 * Local capture: choosing and opening the microphone and camera, the live microphone level
 * (WebAudio AnalyserNode), and screen sharing.
 */

import { MODE_PROFILES } from './codecs.js';

/** Cameras and microphones: {audio: [{id, label}], video: [{id, label}]}. */
export async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const pick = (kind) => devices.filter((d) => d.kind === kind)
    .map((d, i) => ({ id: d.deviceId, label: d.label || `${kind} ${i + 1}` }));
  return { audio: pick('audioinput'), video: pick('videoinput') };
}

/** Capture constraints for the camera in `mode`; `detailed` asks for 720p (clinic cameras). */
export function cameraConstraints(mode, deviceId, detailed = false) {
  const profile = (MODE_PROFILES[mode] || MODE_PROFILES.full).camera;
  if (!profile) return false;
  const size = detailed && mode === 'full' ? { width: 1280, height: 720 } : profile;
  const constraints = {
    width: { ideal: size.width },
    height: { ideal: size.height },
    frameRate: { ideal: profile.frameRate, max: 30 },
  };
  if (deviceId) constraints.deviceId = { exact: deviceId };
  return constraints;
}

export function microphoneConstraints(deviceId) {
  const constraints = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (deviceId) constraints.deviceId = { exact: deviceId };
  return constraints;
}

/**
 * Opens the chosen microphone and (unless the mode is audio only or `camera` is false) camera.
 * Resolves with {stream, mic, camera}; a missing device leaves its track null.
 */
export async function openLocalMedia({ audioId, videoId, mode = 'full', camera = true,
  detailed = false } = {}) {
  const video = camera ? cameraConstraints(mode, videoId, detailed) : false;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: microphoneConstraints(audioId), video,
    });
  } catch (err) {
    if (!video || err.name === 'NotAllowedError') throw err;
    // The camera may be busy or missing: go on with the microphone alone.
    stream = await navigator.mediaDevices.getUserMedia({ audio: microphoneConstraints(audioId) });
  }
  return {
    stream,
    mic: stream.getAudioTracks()[0] || null,
    camera: stream.getVideoTracks()[0] || null,
  };
}

/** Whether the devices pass for a mode: a live microphone, and a live camera unless audio only. */
export function devicesPass(local, mode) {
  const live = (track) => Boolean(track) && track.readyState === 'live';
  return live(local?.mic) && (mode === 'audio_only' || live(local?.camera));
}

export function stopStream(stream) {
  for (const track of stream?.getTracks() || []) track.stop();
}

/** Asks the user for a screen or window to share; resolves with the video track. */
export async function openScreenShare() {
  const stream = await navigator.mediaDevices.getDisplayMedia({
    video: { frameRate: { ideal: 10, max: 15 } }, audio: false,
  });
  return stream.getVideoTracks()[0];
}

/** Level 0..1 from time-domain samples: RMS on a dB scale from -60 dB (0) to 0 dB (1). */
export function levelFromSamples(samples) {
  if (!samples.length) return 0;
  let sum = 0;
  for (const s of samples) sum += s * s;
  const rms = Math.sqrt(sum / samples.length);
  if (rms <= 0) return 0;
  const db = 20 * Math.log10(rms);
  return Math.min(1, Math.max(0, (db + 60) / 60));
}

/** A live microphone level: calls `onLevel(0..1)` about ten times a second until stopped. */
export class MicLevel {
  constructor(track, onLevel) {
    this.context = new AudioContext();
    const source = this.context.createMediaStreamSource(new MediaStream([track]));
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 1024;
    source.connect(this.analyser);
    this.samples = new Float32Array(this.analyser.fftSize);
    this.peak = 0;
    this.timer = setInterval(() => {
      this.analyser.getFloatTimeDomainData(this.samples);
      const level = levelFromSamples(this.samples);
      this.peak = Math.max(this.peak, level);
      onLevel(level);
    }, 100);
    this.context.resume().catch(() => {});
  }

  /** Starts the analysis after a user gesture (browsers may hold an AudioContext until one). */
  resume() {
    if (this.context.state === 'suspended') this.context.resume().catch(() => {});
  }

  stop() {
    clearInterval(this.timer);
    this.context.close().catch(() => {});
  }
}
