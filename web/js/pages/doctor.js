/**
 * Doctor console (远程会诊, the urban expert): on/off duty, the queue of requests matched to me
 * with urgency and waiting time, claim and admit, then the consult view: patient video large,
 * a full-resolution still snapshot of the clinic's camera stored with the consult, a short
 * note, hand over, end with an outcome.
 */

import { api, get, post } from '../api.js';
import { isTaken, normalizeTicket, OUTCOMES, sortQueue, specialtyName, ticketExpert, ticketSession,
  ticketSiteName, ticketState, waitingSeconds } from '../consults.js';
import { bannerArea, confirmDialog, formatDuration, libraryLink, micButton, roomAudio, showEnded,
  toggleButton }
  from '../controls.js';
import { field, h, replaceChildren, select } from '../dom.js';
import { language, setText } from '../i18n.js';
import { Room } from '../room.js';
import { toast, toastError } from '../shell.js';
import { badge, VideoTile } from '../tiles.js';

/** Draws a video element's current frame at its native size; resolves with a JPEG blob. */
export function captureFrame(video, quality = 0.92) {
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve, reject) => canvas.toBlob(
    (blob) => (blob ? resolve({ blob, width: canvas.width, height: canvas.height })
      : reject(new Error('no frame'))), 'image/jpeg', quality));
}

/** The doctors a consult can be handed over to: on duty, not me; same specialty first. */
export function handOverChoices(colleagues, me) {
  const mine = new Set((colleagues || []).find((c) => c.id === me)?.specialties || []);
  const shared = (c) => (c.specialties || []).some((s) => mine.has(s));
  return (colleagues || [])
    .filter((c) => c.on_duty && c.id !== me)
    .map((c) => ({ id: c.id, name: c.name, specialties: c.specialties || [] }))
    .sort((a, b) => Number(shared(b)) - Number(shared(a)) || a.name.localeCompare(b.name, 'zh'));
}

export async function mount(root, ctx) {
  const { channel, local, choice, profile } = ctx;
  const room = new Room({ channel, local, mode: choice.mode });
  ctx.attachRoom(room);
  const expertId = profile.participant.id;
  const specialties = await get('/api/v1/specialties').catch(() => []);
  let queue = (channel.last('queue')?.items || []).map(normalizeTicket);
  let queueAt = Date.now();
  let consultId = null;

  const banners = bannerArea();
  const duty = toggleButton({
    onKey: 'doctor.on_duty', offKey: 'doctor.off_duty', extraClass: 'btn-duty',
    pressed: false,
    onToggle: async (onDuty) => {
      try {
        await post(`/api/v1/experts/${encodeURIComponent(expertId)}/duty`, { on_duty: onDuty });
      } catch (err) {
        toastError(err);
        throw err;
      }
    },
  });
  duty.el.id = 'duty-button';
  // The duty the directory holds (the page may be a reload after a change).
  get('/api/v1/colleagues').then((list) => {
    const me = (list || []).find((c) => c.id === expertId);
    if (me) duty.set(Boolean(me.on_duty));
  }).catch(() => {});
  const queueList = h('ol', { class: 'queue-list', id: 'queue-list' });
  const queueEmpty = h('p', { class: 'empty', i18n: 'doctor.queue_empty' });
  const consultBox = h('section', { class: 'consult', attrs: { 'aria-labelledby': 'consult-h' } });

  replaceChildren(root, h('div', { class: 'console doctor-console' },
    h('aside', { class: 'console-side', attrs: { 'aria-labelledby': 'queue-h' } },
      h('div', { class: 'console-head' }, h('h1', { id: 'queue-h', i18n: 'doctor.queue' }), duty.el),
      queueList, queueEmpty),
    h('div', { class: 'console-main' }, banners.el, consultBox)));
  roomAudio(room, banners);

  // Consult view, shown while in a consult's media session.
  const patientTile = new VideoTile({ source: 'camera', nameKey: 'doctor.patient', extraClass: 'tile-main' });
  const selfTile = new VideoTile({ source: 'camera', self: true, nameKey: 'doctor.you' });
  selfTile.setTrack(local?.camera ?? null);
  const note = h('textarea', { name: 'note', rows: 4, maxLength: 2000, id: 'consult-note' });
  const gallery = h('ul', { class: 'snapshot-list', id: 'snapshot-list' });
  const mic = micButton(room);
  const snapButton = h('button', { type: 'button', class: 'btn btn-primary', i18n: 'doctor.snapshot',
    id: 'snapshot-button', on: { click: () => takeSnapshot() } });
  const handOverButton = h('button', { type: 'button', class: 'btn', i18n: 'doctor.hand_over',
    on: { click: () => handOver() } });
  const endButton = h('button', { type: 'button', class: 'btn btn-danger', i18n: 'doctor.end',
    id: 'end-consult', on: { click: () => endConsult() } });
  const consultTitle = h('h2', { id: 'consult-h' });
  // Recording a consult needs the clinic's consent: the server asks the clinic and tells us.
  const recordStatus = h('p', { class: 'record-status', id: 'record-status',
    attrs: { role: 'status', 'aria-live': 'polite' }, hidden: true });
  const showRecordStatus = (key, level) => {
    recordStatus.hidden = !key;
    recordStatus.dataset.level = level || '';
    recordStatus.dataset.state = key ? key.split('.').pop() : '';
    if (key) setText(recordStatus, key);
    else recordStatus.textContent = '';
  };
  const record = toggleButton({
    onKey: 'doctor.stop_recording', offKey: 'doctor.record', extraClass: 'btn-record',
    onToggle: (on) => {
      if (!channel.send({ type: 'record', on })) throw new Error('offline');
      if (on) showRecordStatus('doctor.consent_asking', 'warn');
      // The button follows the server's `recording` frames, not the click.
      throw new Error('wait for the server');
    },
  });
  record.el.id = 'record-button';
  const canRecord = (profile.permissions || []).includes('record');
  record.el.hidden = !canRecord;
  channel.on('recording', (frame) => {
    record.set(Boolean(frame.on));
    showRecordStatus(frame.on ? 'doctor.recording_on' : null, 'bad');
  });
  channel.on('notice', (frame) => {
    if (frame.code === 'consent_pending') showRecordStatus('doctor.consent_pending', 'warn');
    else if (frame.code === 'consent_refused') showRecordStatus('doctor.consent_refused', 'bad');
  });
  channel.on('error', (frame) => {
    if (frame.ref !== 'record') return;
    if (frame.code === 'consent_refused') showRecordStatus('doctor.consent_refused', 'bad');
    else showRecordStatus(null);
  });

  const showIdle = () => replaceChildren(consultBox,
    h('div', { class: 'card idle-card' }, h('h2', { id: 'consult-h', i18n: 'doctor.no_consult' }),
      h('p', { i18n: 'doctor.no_consult_hint' })));
  const showConsult = () => {
    if (consultBox.contains(patientTile.el)) return;
    gallery.replaceChildren();
    record.set(Boolean(room.session?.recording));
    showRecordStatus(room.session?.recording ? 'doctor.recording_on' : null, 'bad');
    note.value = '';
    replaceChildren(consultBox, consultTitle,
      h('div', { class: 'consult-stage' }, patientTile.el, selfTile.el),
      h('div', { class: 'toolbar', attrs: { role: 'toolbar', 'aria-labelledby': 'consult-h' } },
        mic.el, snapButton, record.el, handOverButton, endButton),
      recordStatus,
      h('div', { class: 'consult-notes' },
        field('doctor.note', note, 'doctor.note_hint'),
        h('h3', { i18n: 'doctor.snapshots' }), gallery));
  };
  showIdle();

  const patient = () => (room.session?.participants || []).find((p) => p.role === 'clinic');

  async function takeSnapshot() {
    const video = patientTile.video;
    if (!video.videoWidth || !consultId) {
      toast('doctor.snapshot_no_video', 'error');
      return;
    }
    snapButton.disabled = true;
    try {
      const shot = await captureFrame(video);
      const stored = await api(`/api/v1/consults/${encodeURIComponent(consultId)}/snapshots`,
        { method: 'POST', body: shot.blob });
      const url = URL.createObjectURL(shot.blob);
      gallery.append(h('li', { dataset: { snapshot: stored?.id ?? '', url: stored?.url ?? '' } },
        h('img', { src: url, alt: '', width: 160 }),
        h('span', { class: 'snapshot-size', text: `${shot.width}×${shot.height}` })));
      toast('doctor.snapshot_saved', 'ok', { size: `${shot.width}×${shot.height}` });
    } catch (err) {
      toastError(err);
    } finally {
      snapButton.disabled = false;
    }
  }

  async function handOver() {
    let colleagues;
    try {
      colleagues = handOverChoices(await get('/api/v1/colleagues'), expertId);
    } catch (err) {
      toastError(err);
      return;
    }
    if (!colleagues.length) {
      toast('doctor.hand_over_nobody', 'error');
      return;
    }
    const lang = language();
    const expertSelect = select(colleagues.map((c) => ({
      value: c.id,
      text: [c.name, c.specialties.map((s) => specialtyName(s, specialties, lang)).join('、')]
        .filter(Boolean).join(' · '),
    })), { name: 'expert', required: true, id: 'hand-over-select' });
    const handNote = h('textarea', { name: 'note', rows: 3, maxLength: 2000, value: note.value });
    const answer = await confirmDialog({
      titleKey: 'doctor.hand_over_title', confirmKey: 'doctor.hand_over',
      fields: [field('doctor.hand_over_to', expertSelect, 'doctor.hand_over_hint'),
        field('doctor.note', handNote)],
    });
    if (!answer?.expert) return;
    channel.send({ type: 'hand_over', consult: consultId, expert: answer.expert, note: answer.note || '' });
  }

  async function endConsult() {
    const outcome = select(OUTCOMES.map((o) => ({ value: o, i18n: `outcome.${o}` })),
      { name: 'outcome', required: true, id: 'outcome-select' });
    const endNote = h('textarea', { name: 'note', rows: 3, maxLength: 2000, value: note.value });
    const answer = await confirmDialog({
      titleKey: 'doctor.end_title', confirmKey: 'doctor.end', danger: true,
      fields: [field('doctor.outcome', outcome), field('doctor.note', endNote)],
    });
    if (!answer) return;
    channel.send({ type: 'end', outcome: answer.outcome, note: answer.note || '' });
  }

  const renderQueue = () => {
    const now = Date.now();
    const items = sortQueue(queue, now);
    queueEmpty.hidden = items.length > 0;
    replaceChildren(queueList, items.map((ticket) => {
      const waited = waitingSeconds(ticket, now, queueAt);
      const mine = ticket.mine ?? (isTaken(ticket) && ticketExpert(ticket) === expertId);
      const action = ticketState(ticket) === 'admitted' || (isTaken(ticket) && !mine)
        ? null
        : h('button', {
          type: 'button', class: ['btn', 'btn-primary', mine ? 'btn-admit' : 'btn-claim'],
          i18n: mine ? 'doctor.admit' : 'doctor.claim',
          on: { click: (event) => {
            event.currentTarget.disabled = true;
            consultId = ticket.id;
            channel.send({ type: mine ? 'admit' : 'claim', consult: ticket.id });
          } },
        });
      return h('li', { class: ['queue-item', `urgency-${ticket.urgency}`], dataset: { consult: ticket.id } },
        h('div', { class: 'queue-line' },
          badge(`urgency.${ticket.urgency}`, ticket.urgency === 'routine' ? 'info'
            : ticket.urgency === 'urgent' ? 'warn' : 'bad'),
          h('strong', { text: specialtyName(ticket.specialty, specialties, language()) }),
          waited === null ? null : h('span', { class: 'wait', i18n: 'doctor.waiting_for',
            i18nArgs: { time: formatDuration(waited) } })),
        h('p', { class: 'queue-site', text: ticketSiteName(ticket) }),
        h('p', { class: 'queue-reason', text: ticket.reason || '' }),
        action);
    }));
    for (const ticket of queue) {
      const session = ticketSession(ticket);
      if (ticketState(ticket) === 'admitted' && session && ticket.id === consultId
        && room.session?.id !== session) {
        channel.send({ type: 'enter', session });
      }
    }
  };
  channel.on('queue', (frame) => {
    queue = (frame.items || []).map(normalizeTicket);
    queueAt = Date.now();
    renderQueue();
  });
  const ticker = setInterval(renderQueue, 5000);
  renderQueue();
  get('/api/v1/consults?mine=1').then((items) => {
    if (!channel.last('queue') && Array.isArray(items)) {
      queue = items.map(normalizeTicket);
      renderQueue();
    }
  }).catch(() => {});

  const renderConsult = () => {
    if (!room.session || room.session.kind !== 'consult') { showIdle(); return; }
    consultId = room.session.id;
    showConsult();
    record.set(Boolean(room.session.recording));
    const person = patient();
    consultTitle.textContent = [person?.name, specialtyName(room.session.title, specialties,
      language())].filter(Boolean).join(' · ');
    patientTile.setName(person?.name ?? '', person ? null : 'doctor.patient');
    patientTile.video.dataset.participant = person?.id ?? '';
    patientTile.setTrack(person ? room.remote.get(person.id)?.camera ?? null : null);
  };
  room.addEventListener('change', (event) => {
    const { what, frame } = event.detail;
    if (what === 'ended') {
      showEnded(consultBox, frame, { kind: 'consult', action: [h('button', {
        type: 'button', class: 'btn btn-primary', i18n: 'doctor.back_to_queue',
        on: { click: () => showIdle() } }), libraryLink()] });
      setText(consultTitle, 'doctor.no_consult');
      consultId = null;
      return;
    }
    if (what === 'media') {
      if (room.mediaState === 'reconnecting') banners.show('media.reconnecting', 'warn');
      else if (banners.key === 'media.reconnecting') banners.clear();
      return;
    }
    if (what === 'session' || what === 'tracks') renderConsult();
  });
  window.addEventListener('pagehide', () => clearInterval(ticker));
}
