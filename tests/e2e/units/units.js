// Table tests of the client's pure functions, run in real Chromium by tests/e2e/test_js_units.py.
// Results land in window.unitResults: [{name, ok, detail}].

import { chooseLanguage, format } from '/static/js/i18n.js';
import { linkQuality, linkReport, snapshot } from '/static/js/linkstats.js';
import { median, suggestMode } from '/static/js/netcheck.js';
import {
  cameraEncodings, cameraLayerCount, preferCodec, sendEncoding, sendsCamera,
} from '/static/js/codecs.js';
import { reconnectDelay, redirectSocketUrl, retryUrl, SignalingChannel, socketUrl }
  from '/static/js/signaling.js';
import { isExpired, tokenFromPath } from '/static/js/credential.js';
import { normalizeTicket, sortQueue, ticketSession, waitingSeconds } from '/static/js/consults.js';
import { rungBanner, stageLayout } from '/static/js/pages/classroom.js';
import { classrooms } from '/static/js/pages/teacher.js';
import { handOverChoices } from '/static/js/pages/doctor.js';
import { parseMaster, playbackEngine } from '/static/js/player.js';
import { anyBusy, libraryQuery, renditionFigures, statusView } from '/static/js/recordings.js';
import { renditionOptions } from '/static/js/playback.js';
import { refusalKeys, watchToken } from '/static/js/pages/watch.js';
import { canDelete } from '/static/js/pages/recordings.js';
import { waitMinutes } from '/static/js/pages/clinic.js';
import { auditTarget, itemsOf, splitList } from '/static/js/pages/operator.js';
import { devicesPass, levelFromSamples } from '/static/js/devices.js';
import { combinedMediaState } from '/static/js/room.js';
import { statusFor } from '/static/js/shell.js';
import { activeFlags, layerCeilings, sourcesByMid } from '/static/js/publisher.js';
import { receivedTracks } from '/static/js/subscriber.js';
import { formatDuration } from '/static/js/controls.js';
import { dataSaverFrame, storedBudget, usageText, verdictBanner } from '/static/js/datasaver.js';

const results = [];
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function table(name, fn, rows) {
  rows.forEach(([args, expected], i) => {
    let actual;
    try {
      actual = fn(...args);
    } catch (err) {
      results.push({ name: `${name}[${i}]`, ok: false, detail: `threw ${err}` });
      return;
    }
    results.push({
      name: `${name}[${i}]`,
      ok: same(actual, expected),
      detail: `${JSON.stringify(args)} -> ${JSON.stringify(actual)}, wanted ${JSON.stringify(expected)}`,
    });
  });
}

table('chooseLanguage', chooseLanguage, [
  [['en', ['zh-CN']], 'en'],
  [[null, ['zh-TW', 'en']], 'zh-CN'],
  [[null, ['en-US']], 'en'],
  [[null, ['fr-FR', 'en-GB']], 'en'],
  [['de', ['de']], 'zh-CN'],
]);
table('format', format, [
  [['{n} left', { n: 3 }], '3 left'],
  [['{a}{b}', { a: 1 }], '1{b}'],
  [['plain', undefined], 'plain'],
]);

const inbound = (over) => ({ type: 'inbound-rtp', kind: 'audio', bytesReceived: 0, packetsReceived: 0, packetsLost: 0, ...over });
table('snapshot sums inbound and outbound and takes the selected pair rtt', snapshot, [
  [[[inbound({ bytesReceived: 1000, packetsReceived: 10, packetsLost: 1 }),
    inbound({ kind: 'video', bytesReceived: 4000, packetsReceived: 40, framesPerSecond: 24 }),
    { type: 'transport', selectedCandidatePairId: 'p1' },
    { type: 'candidate-pair', id: 'p1', currentRoundTripTime: 0.05 },
    { type: 'candidate-pair', id: 'p2', currentRoundTripTime: 0.5 }],
  [{ type: 'outbound-rtp', bytesSent: 2000 }], 1000],
  { t: 1000, bytesIn: 5000, bytesOut: 2000, packetsReceived: 50, packetsLost: 1, rttMs: 50, fps: 24 }],
  [[null, null, 5], { t: 5, bytesIn: 0, bytesOut: 0, packetsReceived: 0, packetsLost: 0, rttMs: null, fps: null }],
]);
const snap = (t, bytesIn, bytesOut, packetsReceived, packetsLost, rttMs = null, fps = null) =>
  ({ t, bytesIn, bytesOut, packetsReceived, packetsLost, rttMs, fps });
table('linkReport', linkReport, [
  [[null, snap(0, 0, 0, 0, 0, 40, 30)], { type: 'link', rtt_ms: 40, fps: 30 }],
  [[snap(0, 0, 0, 0, 0), snap(2000, 250_000, 125_000, 98, 2)],
    { type: 'link', down_kbps: 1000, up_kbps: 500, loss_pct: 2 }],
  [[snap(0, 900_000, 0, 500, 5), snap(1000, 1000, 0, 10, 0)],
    { type: 'link', down_kbps: 8, up_kbps: 0, loss_pct: 0 }],
  [[snap(1000, 0, 0, 0, 0), snap(1000, 10, 10, 1, 0)], { type: 'link' }],
]);
table('linkQuality', linkQuality, [
  [[null], 'unknown'],
  [[{ rung: 'audio_only' }], 'poor'],
  [[{ rung: 'low' }], 'fair'],
  [[{ rung: 'full', loss_pct: 0.5, rtt_ms: 40 }], 'good'],
  [[{ rung: 'full', loss_pct: 10 }], 'poor'],
  [[{ loss_pct: 3 }], 'fair'],
]);
table('suggestMode', suggestMode, [
  [[{ downKbps: 5000, rttMs: 30 }], 'full'],
  [[{ downKbps: 5000, rttMs: 600 }], 'low'],
  [[{ downKbps: 600, rttMs: 100 }], 'low'],
  [[{ downKbps: 250, rttMs: 100 }], 'audio_only'],
  [[{ downKbps: null, rttMs: null }], 'low'],
]);
table('median', median, [[[[]], null], [[[3, 1, 2]], 2], [[[4, 1, 2, 3]], 2.5]]);
table('preferCodec puts VP8 first and keeps the rest in order', (list) =>
  preferCodec(list, 'video/VP8').map((c) => c.mimeType), [
  [[[{ mimeType: 'video/VP9' }, { mimeType: 'video/rtx' }, { mimeType: 'video/VP8' }]],
    ['video/VP8', 'video/VP9', 'video/rtx']],
]);
table('sendEncoding', sendEncoding, [
  [['camera', 'low', true], { maxBitrate: 150000, maxFramerate: 15, scalabilityMode: 'L1T3' }],
  [['camera', 'audio_only', false], {}],
  [['screen', 'full', false], { maxBitrate: 1200000, maxFramerate: 10 }],
]);
table('cameraLayerCount: the capture and the checked link bound the simulcast layers',
  cameraLayerCount, [
    [['full', 720, 10000], 3],
    [['full', 720, null], 3],
    [['full', 720, 1500], 2],
    [['full', 720, 500], 1],
    [['full', 360, 10000], 2],
    [['full', 180, 10000], 1],
    [['low', 720, 10000], 1],
    [['audio_only', 720, 10000], 1],
  ]);
table('cameraEncodings: lowest first, scaled from the capture', (count, height, layered) =>
  cameraEncodings(count, height, layered).map((e) =>
    [e.rid, e.scaleResolutionDownBy, e.maxBitrate, e.scalabilityMode || null]), [
  [[3, 720, true], [['q', 4, 300000, 'L1T3'], ['h', 2, 500000, 'L1T3'], ['f', 1, 1700000, 'L1T3']]],
  // the top layer may take what a direct call gives; the relay lowers it (max_kbps)
  [[2, 720, false], [['q', 4, 300000, null], ['h', 2, 1700000, null]]],
  [[2, 360, true], [['q', 2, 300000, 'L1T3'], ['h', 1, 1700000, 'L1T3']]],
]);
table('sendsCamera', sendsCamera, [[['full'], true], [['low'], true], [['audio_only'], false]]);
table('reconnectDelay', reconnectDelay, [[[0], 500], [[1], 1000], [[3], 4000], [[10], 4000]]);
table('socketUrl', socketUrl, [
  [[{ protocol: 'https:', host: 'a.example:8443' }], 'wss://a.example:8443/ws'],
  [[{ protocol: 'http:', host: '127.0.0.1:8080' }], 'ws://127.0.0.1:8080/ws'],
]);
table('tokenFromPath', tokenFromPath, [
  [['/join/abc.def-ghi'], 'abc.def-ghi'], [['/join/abc/'], 'abc'], [['/'], null], [['/join/'], null],
]);
table('isExpired', isExpired, [
  [[{ expires_at: 100 }, 100_001], true], [[{ expires_at: 100 }, 99_000], false], [[{}, 5], false],
]);
table('ticketSession', ticketSession, [
  [[{ session: 's1' }], 's1'], [[{ session_id: 's2' }], 's2'], [[{ session: { id: 's3' } }], 's3'],
  [[{ id: 'c1', state: 'admitted' }], 'c1'], [[{ id: 'c1', state: 'matched' }], null], [[{}], null],
]);
table('normalizeTicket', normalizeTicket, [
  [[{ ticket: { id: 'c1', state: 'waiting' }, position: 0, estimated_wait_s: 60 }],
    { id: 'c1', state: 'waiting', position: 0, estimated_wait_s: 60 }],
  [[{ consult: 'c2', state: 'matched', mine: true }], { consult: 'c2', state: 'matched', mine: true, id: 'c2' }],
  [[null], null],
]);
table('waitingSeconds', waitingSeconds, [
  [[{ waited_s: 30 }, 10_000, 5_000], 35],
  [[{ requested_at: 100 }, 160_000], 60],
  [[{ created_at: '1970-01-01T00:01:00Z' }, 90_000], 30],
  [[{}, 1], null],
]);
table('auditTarget', auditTarget, [
  [[{ session: 'c1', detail: { outcome: 'referred' } }], 'c1 · outcome=referred'], [[{}], ''],
]);
table('sortQueue: emergencies first, then the longest wait', (items) =>
  sortQueue(items, 1_000_000).map((t) => t.id), [
  [[[{ id: 'a', urgency: 'routine', requested_at: 100 }, { id: 'b', urgency: 'emergency', requested_at: 900 },
    { id: 'c', urgency: 'routine', requested_at: 50 }, { id: 'd', urgency: 'urgent', requested_at: 999 }]],
  ['b', 'd', 'c', 'a']],
]);
const session = { participants: [{ id: 't', role: 'teacher' }, { id: 'c1', role: 'assistant' },
  { id: 'c2', role: 'assistant' }], spotlight: 'c2' };
table('stageLayout', stageLayout, [
  [[session, new Map([['t', { camera: {} }]]), 'c1'],
    { main: { participant: 't', source: 'camera' }, side: null, spotlight: { participant: 'c2', source: 'camera' } }],
  [[session, new Map([['t', { camera: {}, screen: {} }]]), 'c2'],
    { main: { participant: 't', source: 'screen' }, side: { participant: 't', source: 'camera' }, spotlight: null }],
  [[{ participants: [] }, new Map(), 'c1'], { main: null, side: null, spotlight: null }],
]);
table('rungBanner', rungBanner, [
  [['audio_only', 'full'], ['classroom.weak_network', 'warn']],
  [['low', 'audio_only'], ['classroom.network_recovered', 'ok']],
  [['full', 'low'], null],
  [['reduced_fps', 'full', ['t:camera'], [], 't'], ['classroom.camera_paused', 'warn']],
  [['reduced_fps', 'reduced_fps', [], ['t:camera'], 't'], ['classroom.network_recovered', 'ok']],
  [['reduced_fps', 'full', ['t:screen'], [], 't'], null],
  [['reduced_fps', 'full', ['c2:camera'], [], 't'], null],
  [['reduced_fps', 'full', ['t:camera'], [], null], null],
  [['audio_only', 'full', [], [], 't', 'data_saver'], ['classroom.data_saver_limited', 'warn']],
  [['reduced_fps', 'full', ['t:camera'], [], 't', 'data_saver'], ['classroom.data_saver_camera', 'warn']],
  [['audio_only', 'full', [], [], 't', 'loss'], ['classroom.weak_network', 'warn']],
]);
const fakeStorage = (value) => ({ getItem: () => value });
table('storedBudget', (v) => storedBudget(fakeStorage(v)), [
  [['100'], 100], [['50'], 50], [['200'], 200], [[null], null], [['75'], null], [['abc'], null],
  [['1e9'], null], [[''], null],
]);
table('storedBudget without storage', () => storedBudget({ getItem: () => { throw new Error('denied'); } }), [[[], null]]);
table('dataSaverFrame', dataSaverFrame, [
  [[100], { type: 'data_saver', mb_per_hour: 100 }], [[null], { type: 'data_saver', mb_per_hour: null }],
]);
table('usageText', usageText, [
  [[{ used_mb: 12.34, budget_mb_h: 100 }], ['data.used_of_budget', { used: '12.3', budget: '100' }]],
  [[{ used_mb: 0.5, budget_mb_h: null }], ['data.used', { used: '0.5' }]],
  [[null], ['data.used', { used: '0.0' }]],
]);
table('verdictBanner', verdictBanner, [
  [[{ verdict: 'below_audio' }], 'data.below_audio'], [[{ verdict: 'limiting' }], null], [[null], null],
]);
table('classrooms', (s) => classrooms(s).map((p) => p.id), [[[session], ['c1', 'c2']], [[null], []]]);
table('waitMinutes', waitMinutes, [[[10], 1], [[600], 10], [[undefined], null]]);
table('splitList', splitList, [[['a, b，c、d  e'], ['a', 'b', 'c', 'd', 'e']], [[''], []]]);
table('itemsOf', itemsOf, [[[[1]], [1]], [[{ items: [2] }], [2]], [[{ entries: [3], next_after: 'x' }], [3]], [[null], []]]);
table('levelFromSamples', (s) => Math.round(levelFromSamples(s) * 100) / 100, [
  [[new Float32Array(8)], 0], [[new Float32Array(8).fill(1)], 1], [[new Float32Array(8).fill(0.0005)], 0], [[new Float32Array(8).fill(0.03162)], 0.5],
]);
table('devicesPass', devicesPass, [
  [[{ mic: { readyState: 'live' }, camera: { readyState: 'live' } }, 'full'], true],
  [[{ mic: { readyState: 'live' }, camera: null }, 'full'], false],
  [[{ mic: { readyState: 'live' }, camera: null }, 'audio_only'], true],
  [[{ mic: { readyState: 'ended' }, camera: { readyState: 'live' } }, 'low'], false],
]);
table('combinedMediaState', combinedMediaState, [
  [[null, null], 'idle'], [['connected', 'connected'], 'connected'],
  [['connected', 'failed'], 'reconnecting'], [['connecting', 'connected'], 'connecting'],
  [[null, 'connected'], 'connected'],
]);
table('statusFor', statusFor, [
  [['online', 'connected'], ['status.online', 'ok']],
  [['online', 'reconnecting'], ['status.reconnecting', 'warn']],
  [['reconnecting', 'connected'], ['status.reconnecting', 'warn']],
  [['refused', 'idle'], ['status.refused', 'bad']],
]);
table('sourcesByMid maps only sources with a track', sourcesByMid, [
  [[new Map([['mic', { mid: '0' }], ['camera', { mid: '1' }], ['screen', { mid: null }]]),
    new Map([['mic', {}], ['camera', null], ['screen', {}]])], { 0: 'mic' }],
]);
table('activeFlags: the encodings a layers frame keeps sending', activeFlags, [
  [[[{ rid: 'q', active: true }, { rid: 'h', active: true }, { rid: 'f', active: true }],
    ['q', 'h']], [true, true, false]],
  [[[{ rid: 'q', active: true }, { rid: 'h', active: false }, { rid: 'f', active: false }],
    ['q', 'f']], [true, false, true]],
  [[[{ rid: 'q', active: true }, { rid: 'h', active: false }], ['q']], null], // already so
  [[[{ rid: 'q', active: true }, { rid: 'h', active: true }], ['x']], null], // no known layer
  [[[{ active: true }], ['q']], null], // a single layer
  [[[{ rid: 'q', active: true }, { rid: 'h', active: true }], 'q'], null], // malformed
  [[undefined, ['q']], null],
]);
const twoLayers = [{ rid: 'q', maxBitrate: 300000 }, { rid: 'h', maxBitrate: 1700000 }];
const configured = { q: 300000, h: 1700000 };
table('layerCeilings: the relay lowers a layer, never above the page\'s own', layerCeilings, [
  [[twoLayers, { h: 812 }, configured], [300000, 812000]],
  [[twoLayers, { h: 5000 }, configured], null], // above the page's own: already so
  [[[{ rid: 'q', maxBitrate: 300000 }, { rid: 'h', maxBitrate: 812000 }], {}, configured],
    [300000, 1700000]], // a RID the frame does not name goes back to the page's own
  [[twoLayers, { q: 200, h: 'x' }, configured], [200000, 1700000]],
  [[twoLayers, { h: -1, q: Infinity }, configured], null], // malformed values are ignored
  [[twoLayers, null, configured], null],
  [[[{ rid: 'q', maxBitrate: 300000 }], { q: 100 }, configured], null], // a single layer
]);
table('receivedTracks follows offer.tracks', (transceivers, tracks) =>
  receivedTracks(transceivers, tracks).map((t) => [t.mid, t.participant, t.source, t.kind]), [
  [[[{ mid: '0', currentDirection: 'recvonly', receiver: { track: { kind: 'audio' } } },
    { mid: '1', currentDirection: 'inactive', receiver: { track: { kind: 'video' } } },
    { mid: '2', currentDirection: 'recvonly', receiver: { track: { kind: 'video' } } }],
  { 0: { participant: 'p', source: 'mic' }, 1: { participant: 'p', source: 'camera' },
    2: { participant: 'q', source: 'screen' } }],
  [['0', 'p', 'mic', 'audio'], ['2', 'q', 'screen', 'video']]],
]);
table('formatDuration', formatDuration, [[[0], '0:00'], [[65], '1:05'], [[-3], '0:00'], [[3725], '1:02:05']]);

const doc = (id, name, specialties, onDuty = true) => ({ id, name, specialties, on_duty: onDuty });
table('handOverChoices: on duty, not me, my specialty first', (list, me) =>
  handOverChoices(list, me).map((c) => c.id), [
  [[[doc('me', '张', ['内科']), doc('b', '白', ['儿科']), doc('w', '吴', ['内科']),
    doc('x', '许', ['内科'], false)], 'me'], ['w', 'b']],
  [[[doc('me', '张', ['内科'])], 'me'], []],
  [[null, 'me'], []],
]);
table('playbackEngine: native HLS when the browser has it, else hls.js over MSE', playbackEngine, [
  [[{ nativeHls: true, mse: true }], 'native'],
  [[{ nativeHls: false, mse: true }], 'hlsjs'],
  [[{ nativeHls: false, mse: false }], 'none'],
  [[{ nativeHls: true, mse: true, force: 'hlsjs' }], 'hlsjs'],
  [[{ nativeHls: false, mse: true, force: 'native' }], 'hlsjs'],
]);
table('parseMaster: variants lowest first, URIs absolute', (text, base) =>
  parseMaster(text, base).map((v) => [v.bandwidth, v.width, v.height, v.uri]), [
  [['#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1200000,RESOLUTION=1280x720,CODECS="avc1.4d401f"\n'
    + 'normal/index.m3u8\n#EXT-X-STREAM-INF:RESOLUTION=320x180,BANDWIDTH=200000\n\nlow/index.m3u8\n',
  'http://h/media/recordings/t/master.m3u8'],
  [[200000, 320, 180, 'http://h/media/recordings/t/low/index.m3u8'],
    [1200000, 1280, 720, 'http://h/media/recordings/t/normal/index.m3u8']]],
  [['#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1', 'http://h/'], []],
  [['', 'http://h/'], []],
]);
table('libraryQuery: only the fields set, kind checked', libraryQuery, [
  [[{}], ''],
  [[{ kind: 'class', teacher: ' 王 ', subject: '', from: '2026-11-01' }],
    '?kind=class&teacher=%E7%8E%8B&from=2026-11-01'],
  [[{ kind: 'party', q: 'a b' }], '?q=a+b'],
  [[null], ''],
]);
table('statusView', statusView, [
  [[{ status: 'processing', progress: 0.424 }], { key: 'rec.status_processing', level: 'warn', percent: 42 }],
  [[{ status: 'processing', progress: 7 }], { key: 'rec.status_processing', level: 'warn', percent: 100 }],
  [[{ status: 'ready' }], { key: 'rec.status_ready', level: 'ok', percent: null }],
  [[{ status: 'recording' }], { key: 'rec.status_recording', level: 'bad', percent: null }],
  [[{ status: 'weird' }], { key: 'rec.status_failed', level: 'bad', percent: null }],
]);
table('anyBusy', anyBusy, [
  [[[{ status: 'ready' }, { status: 'processing' }]], true],
  [[[{ status: 'ready' }, { status: 'failed' }]], false],
  [[null], false],
]);
table('renditionFigures', renditionFigures, [
  [[{ width: 1280, height: 720, bandwidth: 1_200_000 }], '1280×720 · 1.2 Mbit/s'],
  [[{ width: 320, height: 180, bandwidth: 200_000 }], '320×180 · 200 kbit/s'],
  [[{ bandwidth: 0 }], ''],
]);
table('renditionOptions: automatic, then low and normal', (r) =>
  renditionOptions(r).map((o) => [o.value, o.key]), [
  [[[{ bandwidth: 2e5 }, { bandwidth: 1e6 }]],
    [['-1', 'rec.quality_auto'], ['0', 'rec.quality_low'], ['1', 'rec.quality_normal']]],
  [[[{ bandwidth: 1e6 }]], [['-1', 'rec.quality_auto'], ['0', 'rec.quality_normal']]],
]);
table('watchToken', watchToken, [
  [['/watch/abc.DEF-1'], 'abc.DEF-1'], [['/watch/'], null], [['/watch/a/b'], null],
  [['/recordings'], null],
]);
table('refusalKeys', refusalKeys, [
  [[{ status: 404 }], ['watch.gone_title', 'watch.gone_body']],
  [[{ status: 0, code: 'network' }], ['watch.offline_title', 'watch.offline_body']],
  [[{ status: 500 }], ['watch.failed_title', 'watch.failed_body']],
]);
table('canDelete', canDelete, [[['operator'], true], [['teacher'], false], [[''], false]]);
table('redirectSocketUrl', redirectSocketUrl, [
  [['http://10.0.0.2:8080'], 'ws://10.0.0.2:8080/ws'],
  [['https://node-b.example:8443/'], 'wss://node-b.example:8443/ws'],
  [['https://lb.example/tongxin/'], 'wss://lb.example/tongxin/ws'],
]);
table('retryUrl alternates between the node and the origin after a move', retryUrl, [
  [['ws://a/ws', 'ws://a/ws', 1], 'ws://a/ws'],
  [['ws://b/ws', 'ws://a/ws', 0], 'ws://b/ws'],
  [['ws://b/ws', 'ws://a/ws', 1], 'ws://a/ws'],
]);

/** A WebSocket stand-in: records what the client sends; the test plays the server. */
class FakeSocket extends EventTarget {
  static all = [];

  constructor(url) {
    super();
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    this.closedWith = null;
    FakeSocket.all.push(this);
    setTimeout(() => { this.readyState = 1; this.dispatchEvent(new Event('open')); }, 0);
  }

  send(text) { this.sent.push(JSON.parse(text)); }

  close(code = 1000) {
    this.closedWith = code;
    this.readyState = 3;
    setTimeout(() => this.dispatchEvent(Object.assign(new Event('close'), { code })), 0);
  }

  serve(frame) {
    this.dispatchEvent(Object.assign(new Event('message'), { data: JSON.stringify(frame) }));
  }
}

const tick = () => new Promise((resolve) => { setTimeout(resolve, 5); });

/** Waits (bounded) until `cond()` holds. */
async function until(cond, within = 10_000) {
  const deadline = performance.now() + within;
  while (!cond() && performance.now() < deadline) await tick();
}

async function scenario(name, fn) {
  try {
    const detail = await fn();
    results.push({ name, ok: detail === true, detail: String(detail) });
  } catch (err) {
    results.push({ name, ok: false, detail: `threw ${err}` });
  }
}

await scenario('SignalingChannel follows a redirect: new node, same credential, enter again',
  async () => {
    FakeSocket.all = [];
    const channel = new SignalingChannel('cred-1', { url: 'ws://a/ws', WebSocketImpl: FakeSocket });
    const seen = [];
    channel.on('*', (f) => seen.push(f.type));
    channel.on('moved', (f) => seen.push(`moved:${f.url}`));
    const welcome = channel.connect();
    await until(() => FakeSocket.all[0]?.sent.length > 0);
    const [first] = FakeSocket.all;
    first.serve({ type: 'welcome', participant: { id: 'doc' }, resume: 'r-a', heartbeat_s: 60 });
    await welcome;
    channel.send({ type: 'enter', session: 'c-1' });
    first.serve({ type: 'redirect', url: 'http://b:9000', session: 'c-1', reason: 'x' });
    await until(() => FakeSocket.all[1]?.sent.length > 0);
    const second = FakeSocket.all[1];
    if (first.closedWith === null) return 'the old socket stays open';
    if (second?.url !== 'ws://b:9000/ws') return `opened ${second?.url}`;
    const join = second.sent[0];
    if (join.type !== 'join' || join.credential !== 'cred-1' || join.resume) {
      return `join on the new node: ${JSON.stringify(join)}`;
    }
    second.serve({ type: 'welcome', participant: { id: 'doc' }, resume: 'r-b', heartbeat_s: 60 });
    await until(() => second.sent.length > 1);
    const enter = second.sent[1];
    if (enter?.type !== 'enter' || enter.session !== 'c-1') return `then sent ${JSON.stringify(enter)}`;
    if (!same(seen, ['welcome', 'redirect', 'moved:ws://b:9000/ws', 'welcome'])) {
      return `frames ${JSON.stringify(seen)}`;
    }
    if (channel.state !== 'online' || FakeSocket.all.length !== 2) return `state ${channel.state}`;
    channel.close();
    return true;
  });

await scenario('SignalingChannel after a move rejoins through the origin when the node dies',
  async () => {
    FakeSocket.all = [];
    const channel = new SignalingChannel('cred-2', { url: 'ws://a/ws', WebSocketImpl: FakeSocket });
    const connected = channel.connect();
    await until(() => FakeSocket.all[0]?.sent.length > 0);
    FakeSocket.all[0].serve({ type: 'welcome', participant: { id: 'c' }, resume: 'r-a' });
    await connected;
    FakeSocket.all[0].serve({ type: 'redirect', url: 'http://b', session: 'k-1' });
    await until(() => FakeSocket.all[1]?.sent.length > 0);
    FakeSocket.all[1].serve({ type: 'welcome', participant: { id: 'c' }, resume: 'r-b' });
    let moves = 0;
    channel.on('moved', () => { moves += 1; });
    FakeSocket.all[1].close(1001); // node b goes away
    await until(() => FakeSocket.all[2]?.sent.length > 0); // first retry after 0.5 s
    const third = FakeSocket.all[2];
    if (third?.url !== 'ws://b/ws' || third.sent[0]?.resume !== 'r-b') {
      return `first retry ${third?.url} ${JSON.stringify(third?.sent)}`;
    }
    third.close(1006); // b is dead: next try is the origin, without b's resume token
    await until(() => FakeSocket.all[3]?.sent.length > 0);
    const fourth = FakeSocket.all[3];
    if (fourth?.url !== 'ws://a/ws' || fourth.sent[0]?.resume) {
      return `second retry ${fourth?.url} ${JSON.stringify(fourth?.sent)}`;
    }
    fourth.serve({ type: 'welcome', participant: { id: 'c' }, resume: 'r-a2' });
    if (moves !== 1 || channel.state !== 'online') return `moves ${moves}, state ${channel.state}`;
    channel.close();
    return true;
  });

window.unitResults = results;
