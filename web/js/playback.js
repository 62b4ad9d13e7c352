/**
 * The player panel of a ready recording, shared by the library and the /watch page: the video
 * (HlsPlayer), a rendition choice (automatic by the link, or one pinned), what is playing, and
 * a plain message when the browser cannot play it.
 */

import { field, h, replaceChildren } from './dom.js';
import { setText, t } from './i18n.js';
import { HlsPlayer } from './player.js';
import { hostName, renditionFigures } from './recordings.js';

/** The labels of the rendition choice: automatic first, then each rendition lowest first. */
export function renditionOptions(renditions) {
  const options = [{ value: '-1', key: 'rec.quality_auto', figures: '' }];
  (renditions || []).forEach((r, i) => {
    options.push({ value: String(i), key: i === 0 && renditions.length > 1 ? 'rec.quality_low'
      : 'rec.quality_normal', figures: renditionFigures(r) });
  });
  return options;
}

/**
 * Builds the panel for `rec` (with its playback_url) and starts loading it.
 * Returns {el, player, destroy()}; `force` picks an engine ('hlsjs' | 'native') for tests.
 */
export function playbackPanel(rec, { force = null, headingLevel = 'h2', onClose = null } = {}) {
  const video = h('video', {
    controls: true, playsInline: true, preload: 'metadata', id: 'recording-video',
    poster: rec.poster_url || undefined,
    attrs: { 'aria-label': t('rec.video_label', { title: rec.title || '' }) },
  });
  const quality = h('select', { id: 'quality-select', name: 'quality' });
  const nowPlaying = h('p', { class: 'hint', id: 'now-playing', attrs: { 'aria-live': 'polite' } });
  const problem = h('p', { class: 'form-error', attrs: { role: 'alert' }, hidden: true });

  const renderQuality = () => {
    const selected = String(player.pinned);
    replaceChildren(quality, renditionOptions(player.renditions).map((o) => {
      const label = t(o.key) + (o.figures ? ` (${o.figures})` : '');
      return h('option', { value: o.value, text: label, selected: o.value === selected });
    }));
    quality.disabled = player.renditions.length < 2;
    const level = player.playing >= 0 ? player.renditions[player.playing] : null;
    if (level) setText(nowPlaying, 'rec.now_playing', { figures: renditionFigures(level) });
    else nowPlaying.textContent = '';
    el.dataset.engine = player.engine || '';
    el.dataset.playing = String(player.playing);
  };
  const player = new HlsPlayer(video, {
    force,
    onChange: renderQuality,
    onError: (code) => {
      problem.hidden = false;
      setText(problem, `rec.play_error_${code}`);
    },
  });
  quality.addEventListener('change', () => player.setRendition(Number(quality.value)));

  const heading = h(headingLevel, { id: 'player-h', text: rec.title || '' });
  const facts = [hostName(rec), rec.subject].filter(Boolean).join(' · ');
  const el = h('section', { class: 'card player-panel', id: 'player',
    attrs: { 'aria-labelledby': 'player-h' }, dataset: { recording: rec.id || '' } },
  h('div', { class: 'player-head' }, heading,
    onClose ? h('button', { type: 'button', class: 'btn btn-small', i18n: 'rec.close_player',
      on: { click: () => onClose() } }) : null),
  facts ? h('p', { class: 'lead', text: facts }) : null,
  h('div', { class: 'player-frame' }, video),
  h('div', { class: 'player-tools' },
    field('rec.quality', quality, 'rec.quality_hint'), nowPlaying),
  problem);
  renderQuality();
  player.load(rec.playback_url).catch((err) => {
    console.warn('player failed', err);
    problem.hidden = false;
    setText(problem, 'rec.play_error_media');
  });
  return { el, player, video, destroy: () => player.destroy() };
}
