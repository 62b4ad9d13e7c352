"""A simulcast publisher for benchmarks and tests: three pre-encoded VP8 layers as one RID
simulcast m-section, the way a browser sends them.

aiortc cannot send simulcast, so the video is not aiortc's: the peer connection has a video
transceiver whose track never produces a frame (`HeldTrack`), its offer is rewritten into a
browser's simulcast offer (`simulcast_offer_sdp`: `a=rid:<rid> send` per layer,
`a=simulcast:send q;h;f`, the `rtp-stream-id` / `repaired-rtp-stream-id` header extensions,
no `a=ssrc` lines), and once connected the publisher writes each layer's RTP packets itself on
the connection's transport (`datagram_sender`, SRTP + `sendto`, as the relay's own emit path):

- one SSRC per layer; every packet carries the `sdes:mid` and `rtp-stream-id` extensions for
  its layer's first `RID_PACKETS` packets (a browser stops once the receiver's reports
  acknowledge the SSRC; the relay learns SSRC -> layer from them, `media.rtp.rid`);
- one timestamp for the three layers' frames of one capture instant, 30 frames a second;
- VP8 payload descriptors with a 15-bit picture id and, for L1T3 clips (`load_clip(...,
  temporal_layers=3)`: libvpx's own 0,2,1,2 pattern), TL0PICIDX, TID and the layer-sync bit.

Keyframes on PLI, per layer: the relay's RTCP is read as it arrives (`receive_directly` with a
callback) and a PLI or FIR for a layer's SSRC makes that layer jump to its clip's next
keyframe, as `client.clip.ClipTrack` does (the clip is looped; keyframes every 2 s anyway).
A `layers` event from the relay (dynacast) pauses and resumes layers as a page sets
`RTCRtpEncodingParameters.active`; a resumed layer starts with a keyframe.
Not done: retransmissions (NACKs are ignored; the benchmark runs on loopback), sender reports
(the relay does not need them to forward), RTX and padding.

Audio is an ordinary aiortc sender of the Opus clip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import is_rtx
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from client.clip import ClipTrack, EncodedClip, frame_digest, load_clip
from client.peer import FrameLog, PublishOffer
from media.peers.aiortc_bends import (
    HeldTrack,
    bind_host_candidates,
    datagram_sender,
    receive_directly,
    transport_of,
)
from media.peers.config import PeerConfig
from media.peers.simulcast_sdp import MID_URI, REPAIRED_RID_URI, RID_URI
from media.rtp.rtcp_feedback import KeyframeRequest, parse_feedback

logger = logging.getLogger(__name__)

FPS = 30
VIDEO_CLOCK = 90000
PACKET_MAX = 1200
"""Largest RTP payload (descriptor included) the packetizer makes."""
RID_PACKETS = 100
"""Packets of each layer that carry the MID and RID header extensions (then the SSRC alone)."""
KEYFRAME_INTERVAL = 60
"""Frames between the clips' keyframes (2 s), a multiple of 4 for the temporal pattern."""


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One simulcast layer: its RID and the clip it plays."""

    rid: str
    width: int
    height: int
    bitrate: int


LAYERS = (
    LayerSpec("q", 320, 180, 150_000),
    LayerSpec("h", 640, 360, 500_000),
    LayerSpec("f", 1280, 720, 1_500_000),
)
"""A browser's three layers (web/js/codecs.js), lowest first."""
LAYER_HEIGHTS = {spec.height: spec.rid for spec in LAYERS}
"""Keyframe height -> RID: which layer a subscriber received, from what it decoded headers of."""


def layer_clip(spec: LayerSpec, temporal_layers: int = 3) -> EncodedClip:
    """The pre-encoded clip of one layer (cached on disk after the first encoding)."""
    return load_clip(
        "vp8", width=spec.width, height=spec.height, fps=FPS, bitrate=spec.bitrate,
        keyframe_interval=KEYFRAME_INTERVAL, temporal_layers=temporal_layers,
    )


# --- the offer ---------------------------------------------------------------------------------


def _free_extension_ids(section: Sequence[str], count: int) -> list[int]:
    used = {
        int(line.split(":", 1)[1].split()[0].split("/")[0])
        for line in section if line.startswith("a=extmap:")
    }
    return [i for i in range(1, 15) if i not in used][:count]


def simulcast_offer_sdp(sdp: str, mid: str, rids: Sequence[str]) -> str:
    """`sdp` (aiortc's offer) with the m-section `mid` turned into a browser's RID simulcast
    offer: its `a=ssrc` / `a=ssrc-group` lines dropped, the `rtp-stream-id` and
    `repaired-rtp-stream-id` extensions added (and `sdes:mid` if missing), then `a=rid:<rid>
    send` per layer and `a=simulcast:send <r1>;<r2>;...`, lowest layer first."""
    eol = "\r\n" if "\r\n" in sdp else "\n"
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out: list[str] = []
    for section in sections:
        if f"a=mid:{mid}" not in section:
            out.extend(section)
            continue
        kept = [line for line in section if not line.startswith(("a=ssrc:", "a=ssrc-group:"))]
        uris = {line.split()[1] for line in kept if line.startswith("a=extmap:")}
        wanted = [uri for uri in (MID_URI, RID_URI, REPAIRED_RID_URI) if uri not in uris]
        ids = _free_extension_ids(kept, len(wanted))
        added = [f"a=extmap:{i} {uri}" for i, uri in zip(ids, wanted, strict=True)]
        last = max((i for i, line in enumerate(kept) if line.startswith("a=extmap:")), default=0)
        kept[last + 1:last + 1] = added
        kept += [f"a=rid:{rid} send" for rid in rids]
        kept.append(f"a=simulcast:send {';'.join(rids)}")
        out.extend(kept)
    return eol.join(out) + eol


def _section(sdp: str, mid: str) -> list[str]:
    """The lines of the m-section `mid` of an SDP (empty if none)."""
    for section in sdp.split("\nm=")[1:]:
        lines = [line.rstrip("\r") for line in section.split("\n")]
        if f"a=mid:{mid}" in lines:
            return lines
    return []


def extension_ids(sdp: str, mid: str) -> dict[str, int]:
    """uri -> id of the header extensions in the m-section `mid` of an SDP."""
    return {
        line.split()[1]: int(line.split(":", 1)[1].split()[0].split("/")[0])
        for line in _section(sdp, mid) if line.startswith("a=extmap:")
    }


def vp8_payload_type(sdp: str, mid: str) -> int | None:
    """The payload type of VP8 in the m-section `mid` of an SDP (None if not there)."""
    for line in _section(sdp, mid):
        if line.startswith("a=rtpmap:") and line.split()[1].lower().startswith("vp8/"):
            return int(line[9:].split()[0])
    return None


# --- one layer's packets -----------------------------------------------------------------------


def vp8_payloads(
    frame: bytes, picture_id: int, tl0picidx: int | None, tid: int | None, layer_sync: bool,
) -> list[bytes]:
    """A VP8 frame as RTP payloads (RFC 7741): the descriptor, then at most `PACKET_MAX`
    bytes together. `tid` None: no temporal layer fields."""
    descriptor = VpxPayloadDescriptor(
        partition_start=1, partition_id=0, picture_id=picture_id,
        tl0picidx=tl0picidx, tid=(tid, int(layer_sync)) if tid is not None else None,
    )
    payloads: list[bytes] = []
    pos = 0
    while pos < len(frame) or not payloads:
        head = bytes(descriptor)
        size = min(len(frame) - pos, PACKET_MAX - len(head))
        payloads.append(head + frame[pos:pos + size])
        descriptor.partition_start = 0
        pos += size
    return payloads


def layer_sync(index: int) -> bool:
    """The Y bit of frame `index` of an L1T3 clip (pattern 0,2,1,2): frames 1 and 2 of each
    four reference the base layer only; frame 3 references frame 2."""
    return index % 4 in (1, 2)


class LayerSender:
    """One layer's stream: its clip looped from frame to frame, as RTP packets."""

    def __init__(self, spec: LayerSpec, clip: EncodedClip, payload_type: int, mid: str) -> None:
        self.spec = spec
        self.clip = clip
        self.ssrc = random.randint(1, 0xFFFFFFFF)
        self.payload_type = payload_type
        self.mid = mid
        self.seq = random.randint(0, 0xFFFF)
        self.picture_id = random.randint(0, 0x7FFF)
        self.tl0picidx = 0
        self.index = 0
        self.active = True
        self.sent_packets = 0
        self.sent_frames = 0
        self.keyframe_requests = 0
        self._jump = False
        self.digests = [frame_digest(f) for f in clip.frames]

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._jump = True

    def set_active(self, active: bool) -> None:
        if active and not self.active:
            self._jump = True  # a resumed encoder starts with a keyframe
        self.active = active

    def next_frame(self) -> int:
        """The clip index of the frame to send now (jumping to a keyframe when one is due)."""
        if self._jump:
            self._jump = False
            later = [k for k in self.clip.keyframes if k > self.index]
            self.index = later[0] if later else self.clip.keyframes[0]
        index = self.index
        self.index = (self.index + 1) % len(self.clip.frames)
        return index

    def packets(self, index: int, timestamp: int, extensions: HeaderExtensionsMap) -> list[bytes]:
        """The RTP packets of clip frame `index` at `timestamp`."""
        clip = self.clip
        tid = clip.temporal_ids[index] if clip.temporal_ids else None
        if tid == 0:
            self.tl0picidx = (self.tl0picidx + 1) & 0xFF
        payloads = vp8_payloads(
            clip.frames[index], self.picture_id, self.tl0picidx if tid is not None else None,
            tid, tid is not None and tid > 0 and layer_sync(index),
        )
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.sent_frames += 1
        out: list[bytes] = []
        for i, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=self.payload_type, marker=int(i == len(payloads) - 1),
                sequence_number=self.seq, timestamp=timestamp & 0xFFFFFFFF, ssrc=self.ssrc,
                payload=payload,
            )
            if self.sent_packets < RID_PACKETS:
                packet.extensions.mid = self.mid
                packet.extensions.rtp_stream_id = self.spec.rid
            out.append(packet.serialize(extensions))
            self.seq = (self.seq + 1) & 0xFFFF
            self.sent_packets += 1
        return out


# --- the publisher -----------------------------------------------------------------------------


class SimulcastPublisher:
    """A participant publishing a three-layer simulcast camera (and an Opus mic) to the relay."""

    def __init__(
        self,
        participant_id: str,
        publish_offer: PublishOffer,
        *,
        config: PeerConfig | None = None,
        frame_log: FrameLog | None = None,
        layers: Sequence[LayerSpec] = LAYERS,
        temporal_layers: int = 3,
        audio: bool = True,
    ) -> None:
        self.participant_id = participant_id
        self._publish_offer = publish_offer
        self._config = config or PeerConfig()
        self._frame_log = frame_log
        self._specs = tuple(layers)
        self._clips = [layer_clip(spec, temporal_layers) for spec in self._specs]
        self._audio = audio
        self.layers: list[LayerSender] = []
        self.offer_sdp = ""
        """The simulcast offer sent to the relay (tests read its shape)."""
        self._pc: RTCPeerConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._extensions = HeaderExtensionsMap()
        self._record_first: Callable[[bytes, float], None] | None = None
        """One `camera` frame a capture instant (what a subscriber on any layer should get)."""
        self._record_more: Callable[[bytes, float], None] | None = None
        """The other layers' frames of that instant (their send times, for latency)."""

    @staticmethod
    def prepare(layers: Sequence[LayerSpec] = LAYERS, temporal_layers: int = 3) -> None:
        """Encode the layers' clips now (once; they are cached on disk after)."""
        for spec in layers:
            layer_clip(spec, temporal_layers)
        load_clip("opus")

    @staticmethod
    def layer_kbps(
        layers: Sequence[LayerSpec] = LAYERS, temporal_layers: int = 3
    ) -> dict[str, int]:
        """Each layer's clip bitrate, kbit/s, by RID."""
        return {
            spec.rid: round(layer_clip(spec, temporal_layers).bitrate / 1000) for spec in layers
        }

    @property
    def state(self) -> str:
        return self._pc.connectionState if self._pc is not None else "new"

    async def publish(self) -> None:
        """Offer the simulcast camera (and mic), apply the relay's answer, and start sending
        once connected."""
        pc = self._pc = self._config.new_peer_connection()
        video = pc.addTransceiver(HeldTrack("video"), direction="sendonly")
        caps = RTCRtpSender.getCapabilities("video").codecs
        vp8 = [c for c in caps if c.name.lower() == "vp8"]
        video.setCodecPreferences(vp8 + [c for c in caps if is_rtx(c)][:1])
        sources = {"camera": video}
        if self._audio:
            log = self._frame_log
            mic = ClipTrack(load_clip("opus"), on_frame=log.recorder("mic") if log else None)
            sources["mic"] = pc.addTransceiver(mic, direction="sendonly")
        if self._frame_log is not None:
            self._record_first = self._frame_log.recorder("camera")
            self._record_more = self._frame_log.recorder("camera-other-layers")

        @pc.on("connectionstatechange")
        def _on_change() -> None:
            if pc.connectionState == "connected" and self._task is None:
                self._task = asyncio.ensure_future(self._send_loop())

        offer = await pc.createOffer()
        bind_host_candidates(pc, self._config.udp_host)
        await pc.setLocalDescription(offer)
        mid = video.mid
        assert mid is not None
        rids = [spec.rid for spec in self._specs]
        self.offer_sdp = simulcast_offer_sdp(pc.localDescription.sdp, mid, rids)
        answer = await self._publish_offer(
            self.offer_sdp, {t.mid: s for s, t in sources.items() if t.mid is not None}
        )
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        ids = extension_ids(answer, mid)
        self._extensions.configure(RTCRtpParameters(headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=ids[uri], uri=uri)
            for uri in (MID_URI, RID_URI) if uri in ids
        ]))
        payload_type = vp8_payload_type(answer, mid)
        if payload_type is None:
            raise RuntimeError("the relay's answer has no VP8 for the simulcast camera")
        self.layers = [
            LayerSender(spec, clip, payload_type, mid)
            for spec, clip in zip(self._specs, self._clips, strict=True)
        ]

    def on_event(self, event: dict[str, object]) -> None:
        """A relay event for this participant: `layers` (dynacast) pauses and resumes layers."""
        if event.get("type") != "layers" or event.get("source") != "camera":
            return
        active = event.get("active")
        if not isinstance(active, list):
            return
        for layer in self.layers:
            layer.set_active(layer.spec.rid in active)

    def _on_rtcp(self, data: bytes) -> None:
        by_ssrc = {layer.ssrc: layer for layer in self.layers}
        with contextlib.suppress(ValueError):
            for item in parse_feedback(data):
                if type(item) is KeyframeRequest:
                    layer = by_ssrc.get(item.media_ssrc)
                    if layer is not None:
                        layer.request_keyframe()

    async def _send_loop(self) -> None:
        pc = self._pc
        assert pc is not None
        dtls = transport_of(pc)
        send = datagram_sender(dtls) if dtls is not None else None
        while send is None and pc.connectionState == "connected":
            await asyncio.sleep(0.05)
            dtls = transport_of(pc)
            send = datagram_sender(dtls) if dtls is not None else None
        if send is None or dtls is None:
            return
        receive_directly(dtls, on_rtcp=self._on_rtcp)
        start = time.monotonic()
        base_ts = random.randint(0, 0xFFFFFFFF)
        count = 0
        frame_s = 1 / FPS
        while self._pc is pc and pc.connectionState == "connected":
            delay = start + count * frame_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            timestamp = base_ts + count * (VIDEO_CLOCK // FPS)
            now = time.time()
            record = self._record_first
            for layer in self.layers:
                if not layer.active:
                    continue
                index = layer.next_frame()
                for datagram in layer.packets(index, timestamp, self._extensions):
                    send(datagram)
                if record is not None:
                    record(layer.digests[index], now)
                record = self._record_more
            count += 1

    async def close(self) -> None:
        task, self._task = self._task, None
        pc, self._pc = self._pc, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
