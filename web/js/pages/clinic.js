/**
 * Clinic (卫生院 / 村卫生室): request a consult (specialty, urgency, short reason), wait in the
 * waiting room with position and estimated wait updating live, then the consult view with the
 * doctor large; told when the consult ends and with what outcome.
 */

import { get, post } from '../api.js';
import { isTaken, isWaiting, normalizeTicket, specialtyName, ticketSession, ticketState, URGENCIES }
  from '../consults.js';
import { bannerArea, micButton, roomAudio, showEnded } from '../controls.js';
import { dataSaverControl } from '../datasaver.js';
import { field, h, replaceChildren, select } from '../dom.js';
import { language, setText } from '../i18n.js';
import { Room } from '../room.js';
import { toastError } from '../shell.js';
import { VideoTile } from '../tiles.js';

const POLL_MS = 10_000;
const REASON_MAX = 500;

/** Minutes to show for an estimated wait in seconds (at least 1; null when unknown). */
export function waitMinutes(seconds) {
  if (typeof seconds !== 'number' || Number.isNaN(seconds)) return null;
  return Math.max(1, Math.round(seconds / 60));
}

/**
 * Asks the clinic whether the doctor may record (a `consent_request` frame); resolves true or
 * false. "Do not record" has the focus first; Escape also answers no (no answer, no consent).
 */
export function askConsent(frame) {
  return new Promise((resolve) => {
    let answer = false;
    const refuse = h('button', { type: 'button', class: 'btn btn-big', id: 'consent-refuse',
      i18n: 'clinic.consent_refuse', autofocus: true,
      on: { click: () => { answer = false; dialog.close(); } } });
    const grant = h('button', { type: 'button', class: 'btn btn-primary btn-big', id: 'consent-grant',
      i18n: 'clinic.consent_grant', on: { click: () => { answer = true; dialog.close(); } } });
    const dialog = h('dialog', { class: 'dialog consent-dialog', id: 'consent-dialog',
      attrs: { 'aria-labelledby': 'consent-h', 'aria-describedby': 'consent-body' } },
    h('div', { class: 'dialog-body' },
      h('h2', { id: 'consent-h', i18n: 'clinic.consent_title' }),
      h('p', { id: 'consent-body', i18n: 'clinic.consent_body',
        i18nArgs: { name: frame?.by || '' } }),
      h('p', { class: 'hint', i18n: 'clinic.consent_hint' }),
      h('div', { class: 'dialog-actions' }, refuse, grant)));
    dialog.addEventListener('close', () => { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    refuse.focus();
  });
}

export async function mount(root, ctx) {
  const { channel, local, choice, profile } = ctx;
  const room = new Room({ channel, local, mode: choice.mode });
  ctx.attachRoom(room);
  const banners = bannerArea();
  const body = h('div', { class: 'clinic-body' });
  const dataSaver = dataSaverControl(room, channel);  // a village clinic on prepaid data
  replaceChildren(root, h('div', { class: 'clinic-view' }, banners.el, body, dataSaver.el));
  roomAudio(room, banners);
  let ticket = null;
  let pollTimer = null;

  const specialties = await get('/api/v1/specialties').catch(() => []);

  const showForm = () => {
    ticket = null;
    clearInterval(pollTimer);
    const specialty = select(specialties.map((s) => ({ value: s.id, text: specialtyName(s.id, specialties, language()) })),
      { name: 'specialty', required: true, id: 'specialty' });
    const urgency = h('fieldset', { class: 'choice-group' },
      h('legend', { i18n: 'clinic.urgency' }),
      URGENCIES.slice().reverse().map((u, i) => h('label', { class: ['choice', `urgency-${u}`] },
        h('input', { type: 'radio', name: 'urgency', value: u, checked: i === 0, required: true }),
        h('span', { i18n: `urgency.${u}` }))));
    const reason = h('textarea', { name: 'reason', rows: 4, maxLength: REASON_MAX, required: true, id: 'reason' });
    const counter = h('p', { class: 'hint counter', i18n: 'clinic.chars_left', i18nArgs: { n: REASON_MAX } });
    reason.addEventListener('input', () => setText(counter, 'clinic.chars_left', { n: REASON_MAX - reason.value.length }));
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', i18n: 'clinic.request' });
    const form = h('form', { class: 'card request-form', id: 'request-form' },
      h('h1', { i18n: 'clinic.request_title' }),
      h('p', { class: 'lead', i18n: 'clinic.request_lead', i18nArgs: { name: profile.participant.name } }),
      field('clinic.specialty', specialty), urgency,
      field('clinic.reason', reason, 'clinic.reason_hint'), counter, submit);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      submit.disabled = true;
      const data = new FormData(form);
      try {
        ticket = normalizeTicket(await post('/api/v1/consults', {
          specialty: data.get('specialty'),
          urgency: data.get('urgency'),
          language: language() === 'en' ? 'en' : 'zh',
          reason: String(data.get('reason') || '').slice(0, REASON_MAX),
        }));
        showWaiting();
      } catch (err) {
        toastError(err);
        submit.disabled = false;
      }
    });
    replaceChildren(body, form);
  };

  const position = h('strong', { class: 'big-figure', id: 'queue-position' });
  const estimate = h('p', { class: 'estimate', id: 'queue-estimate' });
  const waitingStatus = h('p', { class: 'lead', attrs: { role: 'status' } });

  const renderWaiting = () => {
    if (!ticket) return;
    // The server counts from 0; people count from 1.
    position.textContent = typeof ticket.position === 'number' ? String(ticket.position + 1) : '—';
    const minutes = waitMinutes(ticket.estimated_wait_s);
    if (minutes === null) setText(estimate, 'clinic.estimate_unknown');
    else setText(estimate, 'clinic.estimate', { n: minutes });
    setText(waitingStatus, isTaken(ticket) ? 'clinic.doctor_found' : 'clinic.waiting_lead');
  };

  const showWaiting = () => {
    const cancel = h('button', { type: 'button', class: 'btn', i18n: 'clinic.cancel', on: {
      click: async () => {
        try {
          await post(`/api/v1/consults/${encodeURIComponent(ticket.id)}/cancel`);
          showForm();
        } catch (err) {
          toastError(err);
        }
      },
    } });
    replaceChildren(body, h('section', { class: 'card waiting-room', id: 'waiting-room' },
      h('h1', { i18n: 'clinic.waiting_title' }),
      waitingStatus,
      h('div', { class: 'waiting-figures' },
        h('div', {}, h('span', { class: 'figure-label', i18n: 'clinic.position' }), position),
        estimate),
      h('div', { class: 'spinner', attrs: { 'aria-hidden': 'true' } }),
      cancel));
    renderWaiting();
    clearInterval(pollTimer);
    pollTimer = setInterval(async () => {
      try {
        update(normalizeTicket(await get(`/api/v1/consults/${encodeURIComponent(ticket.id)}`)));
      } catch {
        // Polling is the fallback of the live queue frames: try again next time.
      }
    }, POLL_MS);
  };

  const update = (fresh) => {
    if (!ticket || !fresh || fresh.id !== ticket.id) return;
    ticket = { ...ticket, ...fresh };
    const session = ticketSession(ticket);
    const state = ticketState(ticket);
    if (state === 'admitted' && session && room.session?.id !== session) {
      channel.send({ type: 'enter', session });
    }
    if (state === 'cancelled') { showForm(); return; }
    if (isWaiting(ticket) || isTaken(ticket)) renderWaiting();
  };
  let asking = false;
  channel.on('consent_request', async (frame) => {
    if (asking) return;
    asking = true;
    try {
      const granted = await askConsent(frame);
      channel.send({ type: 'consent', granted });
    } finally {
      asking = false;
    }
  });
  channel.on('notice', (frame) => {
    const consult = frame.detail?.consult;
    if (frame.code === 'admitted' && consult && room.session?.id !== consult) {
      channel.send({ type: 'enter', session: consult });
    }
  });
  channel.on('queue', (frame) => {
    const items = (frame.items || []).map(normalizeTicket);
    if (!ticket) {
      ticket = items.find((t) => isWaiting(t) || isTaken(t) || ticketState(t) === 'admitted') || null;
      if (ticket) showWaiting();
    }
    for (const item of items) update(item);
  });

  // Consult view.
  const doctorTile = new VideoTile({ source: 'camera', nameKey: 'clinic.doctor', extraClass: 'tile-main' });
  const selfTile = new VideoTile({ source: 'camera', self: true, nameKey: 'clinic.you' });
  selfTile.setTrack(local?.camera ?? null);
  const mic = micButton(room);
  const renderConsult = () => {
    clearInterval(pollTimer);
    if (!body.contains(doctorTile.el)) {
      replaceChildren(body, h('section', { class: 'consult', attrs: { 'aria-labelledby': 'consult-h' } },
        h('h1', { id: 'consult-h', i18n: 'clinic.in_consult' }),
        h('div', { class: 'consult-stage' }, doctorTile.el, selfTile.el),
        h('div', { class: 'toolbar' }, mic.el)));
    }
    const doctor = (room.session?.participants || []).find((p) => p.role === 'doctor');
    doctorTile.setName(doctor?.name ?? '', doctor ? null : 'clinic.doctor');
    doctorTile.video.dataset.participant = doctor?.id ?? '';
    doctorTile.setTrack(doctor ? room.remote.get(doctor.id)?.camera ?? null : null);
  };
  room.addEventListener('change', (event) => {
    const { what, frame } = event.detail;
    if (what === 'ended') {
      ticket = null;
      showEnded(body, frame, { kind: 'consult', action: h('button', {
        type: 'button', class: 'btn btn-primary', i18n: 'clinic.new_request', on: { click: () => showForm() } }) });
      return;
    }
    if (what === 'media') {
      if (room.mediaState === 'reconnecting') banners.show('media.reconnecting', 'warn');
      else if (banners.key === 'media.reconnecting') banners.clear();
      return;
    }
    if ((what === 'session' || what === 'tracks') && room.session) renderConsult();
  });

  const known = channel.last('queue');
  if (room.session) renderConsult();
  else if (known) channel.emit('queue', known);
  if (!ticket && !room.session) showForm();
}
