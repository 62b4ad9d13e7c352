/**
 * Classroom view (教学点, run by the assistant teacher; also the observer's view): the teacher
 * large, the slides larger still when shared, the classroom called on, raise hand, a clear
 * banner when the network is weak (video paused, audio continues) and when it recovers, and the
 * data saver (a budget in MB per hour; the MB used; "limited by your data budget" when it is the
 * budget, not the network, that paused the video).
 */

import { bannerArea, libraryLink, micButton, roomAudio, showEnded, toggleButton } from '../controls.js';
import { dataSaverControl, verdictBanner } from '../datasaver.js';
import { h, replaceChildren } from '../dom.js';
import { Room } from '../room.js';
import { VideoTile } from '../tiles.js';

const TEACHER_ROLES = new Set(['teacher']);
const PAUSED_BANNERS = ['classroom.weak_network', 'classroom.camera_paused',
  'classroom.data_saver_limited', 'classroom.data_saver_camera'];

/** What the stage shows: {main, side, spotlight} as {participant, source} or null. */
export function stageLayout(session, remote, me) {
  const teacher = (session?.participants || []).find((p) => TEACHER_ROLES.has(p.role));
  const tracks = teacher ? remote.get(teacher.id) || {} : {};
  const spot = session?.spotlight && session.spotlight !== me ? session.spotlight : null;
  if (teacher && tracks.screen) {
    return {
      main: { participant: teacher.id, source: 'screen' },
      side: { participant: teacher.id, source: 'camera' },
      spotlight: spot ? { participant: spot, source: 'camera' } : null,
    };
  }
  return {
    main: teacher ? { participant: teacher.id, source: 'camera' } : null,
    side: null,
    spotlight: spot ? { participant: spot, source: 'camera' } : null,
  };
}

/**
 * Whether a `link` frame's paused tracks (`participant:source`) include the teacher's camera
 * (a paused camera of a classroom called on is not "the teacher's video is paused").
 */
export function cameraPaused(paused, teacherId) {
  return Boolean(teacherId) && (paused || []).includes(`${teacherId}:camera`);
}

/**
 * The banner for my own adaptation: [key, level] or null, given this `link` frame's rung and
 * paused tracks and the previous ones, and the teacher's participant id. All video paused says
 * so; the teacher's camera paused while the slides go on says that instead; either one ending
 * says the video is back. `reason` `data_saver`: my data budget, not the network, paused it.
 */
export function rungBanner(rung, previousRung, paused = [], previousPaused = [], teacherId = null,
  reason = '') {
  const budget = reason === 'data_saver';
  if (rung === 'audio_only') {
    return [budget ? 'classroom.data_saver_limited' : 'classroom.weak_network', 'warn'];
  }
  if (cameraPaused(paused, teacherId)) {
    return [budget ? 'classroom.data_saver_camera' : 'classroom.camera_paused', 'warn'];
  }
  if (previousRung === 'audio_only' || cameraPaused(previousPaused, teacherId)) {
    return ['classroom.network_recovered', 'ok'];
  }
  return null;
}

export async function mount(root, ctx) {
  const { channel, local, choice, profile } = ctx;
  const observer = profile.home === 'observer';
  const room = new Room({ channel, local, mode: choice.mode, publish: !observer });
  ctx.attachRoom(room);

  const banners = bannerArea();
  const mainTile = new VideoTile({ source: 'camera', nameKey: 'classroom.teacher', extraClass: 'tile-main' });
  const sideTile = new VideoTile({ source: 'camera', nameKey: 'classroom.teacher', extraClass: 'tile-side' });
  const spotTile = new VideoTile({ source: 'camera', extraClass: 'tile-spot' });
  const selfTile = new VideoTile({ source: 'camera', self: true, nameKey: 'classroom.you' });
  selfTile.setTrack(local?.camera ?? null);
  sideTile.el.hidden = true;
  spotTile.el.hidden = true;

  const hand = toggleButton({
    onKey: 'classroom.lower_hand', offKey: 'classroom.raise_hand', extraClass: 'btn-hand btn-big',
    onToggle: (raised) => { channel.send({ type: 'hand', raised }); },
  });
  const mic = micButton(room);
  const dataSaver = dataSaverControl(room, channel);
  const calledOn = h('p', { class: 'called-on', i18n: 'classroom.you_are_called_on', hidden: true,
    attrs: { role: 'status' } });

  replaceChildren(root, h('div', { class: 'classroom-view' },
    banners.el,
    calledOn,
    h('section', { class: 'stage', i18nAttrs: { 'aria-label': 'classroom.stage' } },
      mainTile.el,
      h('div', { class: 'stage-side' }, sideTile.el, spotTile.el)),
    observer ? null : h('div', { class: 'classroom-bar' },
      h('div', { class: 'toolbar' }, hand.el, mic.el),
      selfTile.el),
    dataSaver.el));
  roomAudio(room, banners);

  let myRung = null;
  let myPaused = [];
  let recoveredTimer = null;
  const bind = (tile, slot, nameKeyFor) => {
    tile.el.hidden = !slot;
    if (!slot) { tile.setTrack(null); return; }
    const track = room.remote.get(slot.participant)?.[slot.source] ?? null;
    tile.video.dataset.participant = slot.participant;
    tile.video.dataset.source = slot.source;
    tile.el.dataset.participant = slot.participant;
    tile.setTrack(track);
    const person = (room.session?.participants || []).find((p) => p.id === slot.participant);
    if (nameKeyFor) tile.setName('', nameKeyFor(slot), { name: person?.name ?? '' });
    else tile.setName(person?.name ?? '');
  };

  const render = () => {
    const layout = stageLayout(room.session, room.remote, room.me);
    bind(mainTile, layout.main, (slot) => (slot.source === 'screen' ? 'classroom.slides' : 'classroom.teacher_named'));
    mainTile.el.classList.toggle('tile-screen', layout.main?.source === 'screen');
    bind(sideTile, layout.side, () => 'classroom.teacher_named');
    bind(spotTile, layout.spotlight, () => 'classroom.called_on_named');
    const me = (room.session?.participants || []).find((p) => p.id === room.me);
    if (me) hand.set(Boolean(me.hand));
    if (me) mic.set(Boolean(me.muted));
    calledOn.hidden = !(room.session?.spotlight && room.session.spotlight === room.me);
  };

  channel.on('notice', (frame) => {
    if (frame.code === 'weak_network') banners.show('classroom.weak_network', 'warn');
  });
  room.addEventListener('change', (event) => {
    const { what, frame } = event.detail;
    if (what === 'ended') {
      showEnded(root, frame, { kind: 'class', action: libraryLink() });
      return;
    }
    if (what === 'link' && frame.participant === room.me) {
      const paused = frame.paused || [];
      const teacher = (room.session?.participants || []).find((p) => TEACHER_ROLES.has(p.role));
      const shown = rungBanner(frame.rung, myRung, paused, myPaused, teacher?.id ?? null,
        frame.reason);
      myRung = frame.rung;
      myPaused = paused;
      clearTimeout(recoveredTimer);
      if (shown) {
        banners.show(...shown);
        if (shown[1] === 'ok') recoveredTimer = setTimeout(() => banners.clear(), 8000);
      } else if (PAUSED_BANNERS.includes(banners.key)) {
        banners.clear();
      }
      return;
    }
    if (what === 'data') {
      const key = verdictBanner(frame);
      if (key) banners.show(key, 'warn');
      else if (banners.key === 'data.below_audio') banners.clear();
      return;
    }
    if (what === 'media') {
      if (room.mediaState === 'reconnecting') banners.show('media.reconnecting', 'warn');
      else if (banners.key === 'media.reconnecting') banners.clear();
      return;
    }
    render();
  });
  render();
}
