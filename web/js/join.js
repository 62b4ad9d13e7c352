/**
 * The join page (/join/<token>): exchanges the link's token for a session credential (then
 * removes the token from the address bar), says who is joining what, checks the camera,
 * microphone (live level) and network, suggests a mode, and opens the role's page.
 * `?autojoin=1` joins by itself once the devices pass (kiosk classroom PCs, automation).
 */

import { describeError } from './api.js';
import { exchangeToken, saveDeviceChoice, saveSession, tokenFromPath } from './credential.js';
import { devicesPass, listDevices, MicLevel, openLocalMedia, stopStream } from './devices.js';
import { field, h, replaceChildren, select } from './dom.js';
import { setText } from './i18n.js';
import { runNetworkCheck } from './netcheck.js';
import { initShell, main, openRolePage, PUBLISHING_HOMES, setSessionTitle, setStatus,
  showMessage } from './shell.js';
import { VideoTile } from './tiles.js';

const ROLE_KEYS = {
  teacher: 'role.teacher', assistant: 'role.assistant', doctor: 'role.doctor',
  clinic: 'role.clinic', observer: 'role.observer', operator: 'role.operator',
};

function formatKbps(kbps) {
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mbit/s` : `${Math.round(kbps)} kbit/s`;
}

class JoinPage {
  constructor(granted, autojoin) {
    this.granted = granted;
    this.autojoin = autojoin;
    this.local = null;
    this.level = null;
    this.check = null;
    this.mode = 'full';
    this.modeTouched = false;
    this.joined = false;
  }

  render() {
    const { participant, session } = this.granted;
    this.preview = new VideoTile({ source: 'camera', self: true, nameKey: 'join.preview' });
    this.cameraSelect = select([], { name: 'camera' });
    this.micSelect = select([], { name: 'microphone' });
    this.meter = h('meter', { min: 0, max: 1, low: 0.15, high: 0.9, optimum: 0.5, value: 0 });
    this.deviceStatus = h('p', { class: 'device-status', attrs: { 'aria-live': 'polite' } });
    this.rttOut = h('output', { class: 'figure', text: '…' });
    this.downOut = h('output', { class: 'figure', text: '…' });
    this.verdict = h('p', { class: 'verdict', attrs: { 'aria-live': 'polite' } });
    this.modeSelect = select([
      { value: 'full', i18n: 'mode.full' },
      { value: 'low', i18n: 'mode.low' },
      { value: 'audio_only', i18n: 'mode.audio_only' },
    ], { name: 'mode' });
    this.joinButton = h('button', {
      type: 'submit', class: 'btn btn-primary btn-big', i18n: 'join.join', id: 'join-button',
    });
    this.recheck = h('button', { type: 'button', class: 'btn', i18n: 'join.recheck' });

    const roleKey = ROLE_KEYS[participant.role] || 'role.participant';
    const form = h('form', { class: 'join', on: { submit: (e) => { e.preventDefault(); this.join(); } } },
      h('header', { class: 'join-head' },
        h('h1', { i18n: session ? 'join.title_session' : 'join.title_console',
          i18nArgs: { title: session?.title || '' } }),
        h('p', { class: 'who' },
          h('span', { i18n: 'join.you_are' }), ' ',
          h('strong', { text: participant.name }), ' · ',
          h('span', { class: 'chip chip-info', i18n: roleKey }))),
      h('div', { class: 'join-grid' },
        h('section', { class: 'card', attrs: { 'aria-labelledby': 'devices-h' } },
          h('h2', { id: 'devices-h', i18n: 'join.devices' }),
          this.preview.el,
          field('join.camera', this.cameraSelect),
          field('join.microphone', this.micSelect),
          field('join.mic_level', this.meter, 'join.mic_level_hint'),
          this.deviceStatus),
        h('section', { class: 'card', attrs: { 'aria-labelledby': 'network-h' } },
          h('h2', { id: 'network-h', i18n: 'join.network' }),
          h('dl', { class: 'figures' },
            h('dt', { i18n: 'join.rtt' }), h('dd', {}, this.rttOut),
            h('dt', { i18n: 'join.download' }), h('dd', {}, this.downOut)),
          this.verdict,
          field('join.mode', this.modeSelect, 'join.mode_hint'),
          h('div', { class: 'join-actions' }, this.recheck, this.joinButton))));
    replaceChildren(main(), form);

    this.cameraSelect.addEventListener('change', () => this.openDevices());
    this.micSelect.addEventListener('change', () => this.openDevices());
    this.modeSelect.addEventListener('change', () => {
      this.modeTouched = true;
      this.mode = this.modeSelect.value;
      this.openDevices();
    });
    this.recheck.addEventListener('click', () => this.runCheck());
    // The level meter's AudioContext may wait for a gesture before it runs.
    document.addEventListener('pointerdown', () => this.level?.resume(), { once: true });
  }

  async openDevices() {
    this.level?.stop();
    stopStream(this.local?.stream);
    this.local = null;
    this.updateDeviceStatus('join.devices_opening', 'info');
    try {
      this.local = await openLocalMedia({
        audioId: this.micSelect.value || undefined,
        videoId: this.cameraSelect.value || undefined,
        mode: this.mode,
        detailed: this.granted.home === 'clinic',
      });
    } catch (err) {
      const key = err.name === 'NotAllowedError' ? 'join.devices_denied' : 'join.devices_failed';
      this.updateDeviceStatus(key, 'error');
      return;
    }
    this.preview.setTrack(this.local.camera);
    if (this.local.mic) {
      this.level = new MicLevel(this.local.mic, (value) => { this.meter.value = value; });
    }
    await this.fillDeviceLists();
    if (devicesPass(this.local, this.mode)) this.updateDeviceStatus('join.devices_ok', 'ok');
    else if (!this.local.mic) this.updateDeviceStatus('join.no_microphone', 'error');
    else this.updateDeviceStatus('join.no_camera', 'warn');
    this.maybeAutojoin();
  }

  async fillDeviceLists() {
    const devices = await listDevices();
    const fill = (selectEl, list, track) => {
      const current = track?.getSettings().deviceId;
      selectEl.replaceChildren(...list.map((d) =>
        h('option', { value: d.id, text: d.label, selected: d.id === current })));
    };
    fill(this.cameraSelect, devices.video, this.local.camera);
    fill(this.micSelect, devices.audio, this.local.mic);
  }

  updateDeviceStatus(key, level) {
    this.deviceStatus.dataset.level = level;
    setText(this.deviceStatus, key);
  }

  async runCheck() {
    this.recheck.disabled = true;
    this.rttOut.textContent = '…';
    this.downOut.textContent = '…';
    setText(this.verdict, 'join.checking');
    const result = await runNetworkCheck((step) => setText(this.verdict, `join.checking_${step}`));
    this.check = result;
    this.rttOut.textContent = result.rttMs === null ? '—' : `${Math.round(result.rttMs)} ms`;
    this.downOut.textContent = result.downKbps === null ? '—' : formatKbps(result.downKbps);
    setText(this.verdict, `join.verdict_${result.mode}`);
    this.verdict.dataset.level = result.mode === 'full' ? 'ok' : result.mode === 'low' ? 'warn' : 'bad';
    if (!this.modeTouched && result.mode !== this.mode) {
      this.mode = result.mode;
      this.modeSelect.value = result.mode;
      await this.openDevices();
    }
    this.recheck.disabled = false;
    this.maybeAutojoin();
  }

  maybeAutojoin() {
    if (this.autojoin && this.check && devicesPass(this.local, this.mode)) this.join();
  }

  async join() {
    if (this.joined) return;
    if (!this.local?.mic) {
      this.updateDeviceStatus('join.no_microphone', 'error');
      return;
    }
    this.joined = true;
    this.level?.stop();
    const choice = {
      audioId: this.local.mic?.getSettings().deviceId,
      videoId: this.local.camera?.getSettings().deviceId,
      mode: this.mode,
    };
    saveDeviceChoice(choice);
    replaceChildren(main(), h('p', { class: 'loading', i18n: 'common.loading' }));
    await openRolePage(this.granted, { local: this.local, choice });
  }

  async start() {
    this.render();
    this.runCheck();
    await this.openDevices();
  }
}

async function start() {
  await initShell();
  const token = tokenFromPath(window.location.pathname);
  const autojoin = new URLSearchParams(window.location.search).get('autojoin') === '1';
  if (!token) {
    showMessage('join.bad_link_title', 'join.bad_link_body');
    return;
  }
  setStatus('status.checking_link', 'warn');
  let granted;
  try {
    granted = await exchangeToken(token);
  } catch (err) {
    // The token is useless now: keep it out of the address bar and the history anyway.
    window.history.replaceState(null, '', '/');
    setStatus('status.offline', 'bad');
    showMessage('join.refused_title', 'join.refused_body',
      { detail: describeError(err.code, err.message) });
    return;
  }
  saveSession(granted);
  window.history.replaceState(null, '', '/');
  setSessionTitle(granted.session?.title || '');
  setStatus('status.ready', 'idle');
  if (!PUBLISHING_HOMES.has(granted.home)) {
    await openRolePage(granted);
    return;
  }
  await new JoinPage(granted, autojoin).start();
}

start().catch((err) => {
  console.error(err);
  showMessage('error.title', 'error.unknown', { detail: String(err?.message || err) });
});
