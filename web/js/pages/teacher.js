/**
 * Teacher console (双师课堂, the remote teacher): own camera, screen share, the grid of
 * classrooms with each one's link quality, the raise-hand queue, calling on a classroom
 * (spotlight), muting one or all, recording when allowed, and ending the class.
 */

import { bannerArea, confirmDialog, libraryLink, micButton, roomAudio, showEnded, toggleButton }
  from '../controls.js';
import { openScreenShare } from '../devices.js';
import { h, replaceChildren } from '../dom.js';
import { setText } from '../i18n.js';
import { linkQuality } from '../linkstats.js';
import { Room } from '../room.js';
import { toast } from '../shell.js';
import { badge, VideoTile } from '../tiles.js';

const CLASSROOM_ROLES = new Set(['assistant', 'classroom']);

/** The classrooms of a session state, in the order the server lists them. */
export function classrooms(session) {
  return (session?.participants || []).filter((p) => CLASSROOM_ROLES.has(p.role));
}

export async function mount(root, ctx) {
  const { channel, local, choice, profile } = ctx;
  const room = new Room({ channel, local, mode: choice.mode });
  ctx.attachRoom(room);
  const canRecord = (profile.permissions || []).includes('record');

  const banners = bannerArea();
  const selfTile = new VideoTile({ source: 'camera', self: true, nameKey: 'teacher.you' });
  selfTile.setTrack(local?.camera ?? null);
  const screenTile = new VideoTile({ source: 'screen', self: true, nameKey: 'teacher.your_screen' });
  screenTile.el.hidden = true;

  const mic = micButton(room);
  const share = toggleButton({
    onKey: 'teacher.stop_share', offKey: 'teacher.share_screen', extraClass: 'btn-share',
    onToggle: async (on) => {
      if (!on) {
        room.screenTrack?.stop();
        screenTile.setTrack(null);
        screenTile.el.hidden = true;
        await room.setScreen(null);
        return;
      }
      let track;
      try {
        track = await openScreenShare();
      } catch {
        toast('teacher.share_failed', 'error');
        throw new Error('screen share refused');
      }
      track.addEventListener('ended', () => {
        if (room.screenTrack === track) {
          share.set(false);
          screenTile.setTrack(null);
          screenTile.el.hidden = true;
          room.setScreen(null);
        }
      });
      screenTile.setTrack(track);
      screenTile.el.hidden = false;
      await room.setScreen(track);
    },
  });
  const muteAll = h('button', {
    type: 'button', class: 'btn', i18n: 'teacher.mute_all',
    on: { click: () => channel.send({ type: 'mute', muted: true, participant: '*' }) },
  });
  const record = toggleButton({
    onKey: 'teacher.stop_recording', offKey: 'teacher.start_recording', extraClass: 'btn-record',
    onToggle: (on) => {
      channel.send({ type: 'record', on });
      // The button follows the session's `recording` flag, not the click.
      throw new Error('wait for the session');
    },
  });
  record.el.hidden = true;
  record.el.id = 'record-button';
  // The header shows "recording" to everyone; the button follows the server, not the click.
  channel.on('recording', (frame) => record.set(Boolean(frame.on)));
  const endButton = h('button', {
    type: 'button', class: 'btn btn-danger', i18n: 'teacher.end_class',
    on: {
      click: async () => {
        const answer = await confirmDialog({
          titleKey: 'teacher.end_title', bodyKey: 'teacher.end_body',
          confirmKey: 'teacher.end_class', danger: true,
        });
        if (answer) channel.send({ type: 'end' });
      },
    },
  });

  const grid = h('div', { class: 'classroom-grid', id: 'classroom-grid' });
  const gridCount = h('span', { class: 'count' });
  const hands = h('ol', { class: 'hand-list', id: 'hand-list' });
  const handsEmpty = h('p', { class: 'empty', i18n: 'teacher.no_hands' });
  const spotlightBox = h('div', { class: 'spotlight-box', attrs: { 'aria-live': 'polite' } });

  replaceChildren(root, h('div', { class: 'console teacher-console' },
    h('section', { class: 'console-main', attrs: { 'aria-labelledby': 'teacher-h' } },
      h('div', { class: 'console-head' },
        h('h1', { id: 'teacher-h', text: profile.session?.title || '' })),
      banners.el,
      h('div', { class: 'self-row' }, selfTile.el, screenTile.el),
      h('div', { class: 'toolbar', attrs: { role: 'toolbar', 'aria-labelledby': 'teacher-h' } },
        mic.el, share.el, muteAll, record.el, endButton),
      h('h2', { class: 'section-title' }, h('span', { i18n: 'teacher.classrooms' }), ' ', gridCount),
      grid),
    h('aside', { class: 'console-side', attrs: { 'aria-labelledby': 'hands-h' } },
      h('h2', { id: 'hands-h', i18n: 'teacher.hands' }),
      spotlightBox, hands, handsEmpty)));
  roomAudio(room, banners);

  const tiles = new Map();
  const tileFor = (participant) => {
    if (tiles.has(participant.id)) return tiles.get(participant.id);
    const tile = new VideoTile({ participant: participant.id, source: 'camera', name: participant.name });
    const callOn = h('button', { type: 'button', class: 'btn btn-small' });
    const muteOne = h('button', { type: 'button', class: 'btn btn-small' });
    callOn.addEventListener('click', () => {
      const on = room.session?.spotlight === participant.id;
      channel.send({ type: 'spotlight', participant: on ? null : participant.id });
    });
    muteOne.addEventListener('click', () => {
      const view = classrooms(room.session).find((p) => p.id === participant.id);
      channel.send({ type: 'mute', muted: !view?.muted, participant: participant.id });
    });
    const entry = { tile, callOn, muteOne,
      el: h('div', { class: 'classroom-card', dataset: { participant: participant.id } },
        tile.el, h('div', { class: 'card-actions' }, callOn, muteOne)) };
    tiles.set(participant.id, entry);
    return entry;
  };

  const nameOf = (id) => (room.session?.participants || []).find((p) => p.id === id)?.name || id;

  const render = () => {
    const session = room.session;
    const list = classrooms(session);
    setText(gridCount, 'teacher.classroom_count', { n: list.filter((p) => p.present).length });
    const seen = new Set();
    for (const participant of list) {
      seen.add(participant.id);
      const entry = tileFor(participant);
      entry.tile.setName(participant.name);
      entry.tile.setTrack(room.remote.get(participant.id)?.camera ?? null);
      const link = room.links.get(participant.id) || participant.link;
      const quality = linkQuality(link);
      const badges = [badge(`quality.${quality}`, quality === 'good' ? 'ok'
        : quality === 'fair' ? 'warn' : quality === 'poor' ? 'bad' : 'info')];
      if (!participant.present) badges.push(badge('teacher.offline', 'info'));
      if (participant.hand) badges.push(badge('teacher.hand_up', 'warn'));
      if (participant.muted) badges.push(badge('teacher.muted', 'info'));
      if (session.spotlight === participant.id) badges.push(badge('teacher.called_on', 'ok'));
      entry.tile.setBadges(badges);
      entry.el.dataset.quality = quality;
      entry.el.classList.toggle('is-spotlight', session.spotlight === participant.id);
      setText(entry.callOn, session.spotlight === participant.id ? 'teacher.uncall' : 'teacher.call_on');
      setText(entry.muteOne, participant.muted ? 'teacher.unmute' : 'teacher.mute');
      if (entry.el.parentNode !== grid) grid.append(entry.el);
    }
    for (const [id, entry] of tiles) {
      if (!seen.has(id)) { entry.el.remove(); tiles.delete(id); }
    }
    if (!list.length) replaceChildren(grid, h('p', { class: 'empty', i18n: 'teacher.no_classrooms' }));
    else grid.querySelector(':scope > .empty')?.remove();

    const queue = session?.hands || [];
    handsEmpty.hidden = queue.length > 0;
    replaceChildren(hands, queue.map((id) => h('li', {},
      h('span', { class: 'hand-name', text: nameOf(id) }),
      h('button', {
        type: 'button', class: 'btn btn-small btn-primary', i18n: 'teacher.call_on',
        on: { click: () => channel.send({ type: 'spotlight', participant: id }) },
      }))));
    if (session?.spotlight) {
      replaceChildren(spotlightBox,
        h('p', { i18n: 'teacher.spotlight_on', i18nArgs: { name: nameOf(session.spotlight) } }),
        h('button', {
          type: 'button', class: 'btn btn-small', i18n: 'teacher.back_to_me',
          on: { click: () => channel.send({ type: 'spotlight', participant: null }) },
        }));
    } else {
      spotlightBox.replaceChildren();
    }
    record.el.hidden = !(canRecord && session?.detail?.recording_allowed);
    record.set(Boolean(session?.recording));
  };

  room.addEventListener('change', (event) => {
    const { what } = event.detail;
    if (what === 'ended') {
      showEnded(root, event.detail.frame, { kind: 'class', action: libraryLink() });
      return;
    }
    if (what === 'media') {
      if (room.mediaState === 'reconnecting') banners.show('media.reconnecting', 'warn');
      else if (banners.key === 'media.reconnecting') banners.clear();
      return;
    }
    if (room.session) render();
  });
  if (room.session) render();
}
