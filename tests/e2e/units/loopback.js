// The client's up and down connections against an in-page stand-in for the relay: the page
// publishes camera and microphone, the stand-in answers, then offers those tracks back with a
// tracks map; run by tests/e2e/test_js_units.py. Progress lands in window.loopback.

import { Publisher } from '/static/js/publisher.js';
import { Subscriber } from '/static/js/subscriber.js';
import { openLocalMedia } from '/static/js/devices.js';
import { iceGatheringComplete } from '/static/js/rtc.js';

const state = { published: null, received: [], error: null, requestOffers: 0 };
window.loopback = state;

async function run() {
  const local = await openLocalMedia({ mode: 'low' });
  const relayUp = new RTCPeerConnection();
  const relayDown = new RTCPeerConnection();
  let subscriber;

  const publisher = new Publisher({
    mode: 'low',
    send: (frame) => {
      if (frame.type !== 'publish') return true;
      state.published = { sources: frame.sources, mids: (frame.sdp.match(/^a=mid:/gm) || []).length };
      (async () => {
        const tracks = [];
        relayUp.ontrack = (e) => tracks.push({ mid: e.transceiver.mid, track: e.track });
        await relayUp.setRemoteDescription({ type: 'offer', sdp: frame.sdp });
        await relayUp.setLocalDescription(await relayUp.createAnswer());
        await iceGatheringComplete(relayUp);
        publisher.handleAnswer(relayUp.localDescription.sdp);
        for (const { mid, track } of tracks) {
          const t = relayDown.addTransceiver(track, { direction: 'sendonly' });
          t.source = frame.sources[mid];
        }
        await relayDown.setLocalDescription(await relayDown.createOffer());
        await iceGatheringComplete(relayDown);
        const described = {};
        for (const t of relayDown.getTransceivers()) described[t.mid] = { participant: 'me', source: t.source };
        await subscriber.handleOffer({ sdp: relayDown.localDescription.sdp, tracks: described });
      })().catch((err) => { state.error = String(err); });
      return true;
    },
  });
  subscriber = new Subscriber({
    send: (frame) => {
      if (frame.type === 'answer') relayDown.setRemoteDescription({ type: 'answer', sdp: frame.sdp });
      if (frame.type === 'request_offer') state.requestOffers += 1;
      return true;
    },
    onTracks: (list) => {
      state.received = list.map((t) => `${t.participant}:${t.source}:${t.kind}`).sort();
      const video = list.find((t) => t.kind === 'video');
      if (video) {
        const el = document.createElement('video');
        el.id = 'looped';
        el.muted = true;
        el.autoplay = true;
        el.srcObject = new MediaStream([video.track]);
        document.body.append(el);
      }
    },
  });
  publisher.setTrack('mic', local.mic);
  publisher.setTrack('camera', local.camera);
  await publisher.publish();
  window.loopbackSent = async () => {
    const stats = [...(await publisher.pc.getStats()).values()];
    const video = stats.find((s) => s.type === 'outbound-rtp' && s.kind === 'video');
    const codec = stats.find((s) => s.id === video?.codecId);
    return { scalabilityMode: video?.scalabilityMode ?? null, codec: codec?.mimeType ?? null };
  };
}

run().catch((err) => { state.error = String(err); });
