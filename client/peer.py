"""A participant as a Python program: its two aiortc peer connections with the relay.

Driven by plain SDP exchange callbacks (signaling wraps them later): `publish` makes the up
offer and applies the relay's answer; `on_offer` answers the relay's down offers. What it
receives is counted without decoding: per (publisher, source) the number of frames and bytes,
each frame's digest (bit-identity), first-frame time and, when the publisher shares a
`FrameLog`, per-frame latency (publisher hand-over to last packet's arrival).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.codecs import is_rtx
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

from client.clip import ClipTrack, frame_digest
from media.peers.aiortc_bends import (
    bind_host_candidates,
    hold_remb_while,
    on_keyframe_request,
    receive_directly,
    stop_remote_bitrate_estimate,
    tap_client_receiver,
    transport_of,
)
from media.peers.config import PeerConfig
from media.rtp import vp8

logger = logging.getLogger(__name__)

PublishOffer = Callable[[str, dict[str, str]], Awaitable[str]]
"""(offer SDP, {mid: source}) -> the relay's answer SDP."""
SendAnswer = Callable[[str], Awaitable[None]]

H264_PROFILE = "42e01f"  # constrained baseline 3.1, what browsers decode everywhere


class FrameLog:
    """What a publisher sent: frame digests in order per source, and when each was sent."""

    def __init__(self, keep_order: bool = True) -> None:
        self.sent: dict[str, list[bytes]] = {}
        self.counts: dict[str, int] = {}
        self.send_times: dict[bytes, float] = {}
        self.history: dict[bytes, list[float]] = {}
        """Every send time of each frame (a looped clip sends each frame many times)."""
        self._keep_order = keep_order

    def latency_ms(self, digest: bytes, arrival: float) -> float | None:
        """Arrival minus the latest send of this frame before it (None if never sent)."""
        sends = [t for t in self.history.get(digest, ()) if t <= arrival]
        return (arrival - max(sends)) * 1000 if sends else None

    def recorder(self, source: str) -> Callable[[bytes, float], None]:
        """The `on_frame` callback for a `ClipTrack` publishing `source`."""
        order = self.sent.setdefault(source, [])
        self.counts.setdefault(source, 0)

        def record(digest: bytes, at: float) -> None:
            if self._keep_order:
                order.append(digest)
            self.counts[source] += 1
            self.send_times[digest] = at
            self.history.setdefault(digest, []).append(at)

        return record


@dataclass
class ReceivedTrack:
    """What arrived from one publisher's source."""

    participant: str
    source: str
    kind: str = ""
    codec: str = ""
    frames: int = 0
    bytes: int = 0
    digests: list[builtins.bytes] = field(default_factory=list)
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    arrivals: list[tuple[builtins.bytes, float]] = field(default_factory=list)
    """(digest, arrival time) of every `sample_every`-th video frame, for latency elsewhere."""
    keyframe_sizes: list[tuple[int, int]] = field(default_factory=list)
    """(width, height) of each VP8 keyframe received, in order."""


class PeerClient:
    """One participant's up and down connections with the relay."""

    def __init__(
        self,
        participant_id: str,
        *,
        publish_offer: PublishOffer,
        send_answer: SendAnswer,
        config: PeerConfig | None = None,
        frame_log: FrameLog | None = None,
        keep_digests: bool = True,
        sample_every: int = 0,
        estimate_bandwidth: bool = True,
        stalled: Callable[[], bool] | None = None,
    ) -> None:
        """`stalled`: while true, the receivers send no REMB (see `hold_remb_while`)."""
        self.participant_id = participant_id
        self.received: dict[tuple[str, str], ReceivedTrack] = {}
        self.frame_log = frame_log
        self.offers = 0
        self._publish_offer = publish_offer
        self._send_answer = send_answer
        self._config = config or PeerConfig()
        self._keep_digests = keep_digests
        self._sample_every = sample_every
        self._estimate_bandwidth = estimate_bandwidth
        self._stalled = stalled
        self._up: RTCPeerConnection | None = None
        self._up_transceivers: dict[str, RTCRtpTransceiver] = {}
        self._down: RTCPeerConnection | None = None
        self._down_generation: int | None = None
        self._mid_sources: dict[str, tuple[str, str]] = {}
        self._tapped: set[int] = set()
        self._down_lock = asyncio.Lock()
        self._up_lock = asyncio.Lock()

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self, tracks: Mapping[str, MediaStreamTrack], codecs: Mapping[str, str] | None = None
    ) -> None:
        """Publish (or replace) tracks by source; `codecs` may force e.g. {"camera": "h264"}."""
        async with self._up_lock:
            if self._up is None:
                self._up = self._new_connection()
            pc = self._up
            for source, track in tracks.items():
                transceiver = self._up_transceivers.get(source)
                if transceiver is None:
                    transceiver = pc.addTransceiver(track, direction="sendonly")
                    self._up_transceivers[source] = transceiver
                else:
                    transceiver.sender.replaceTrack(track)
                    transceiver.direction = "sendonly"
                codec = (codecs or {}).get(source)
                if codec is not None:
                    transceiver.setCodecPreferences(_preferences(track.kind, codec))
                if isinstance(track, ClipTrack):
                    on_keyframe_request(transceiver.sender, track.request_keyframe)
            await self._negotiate_up()

    async def unpublish(self, source: str) -> None:
        """Stop publishing one source (its m-line goes inactive)."""
        async with self._up_lock:
            transceiver = self._up_transceivers.get(source)
            if transceiver is None or transceiver.direction == "inactive":
                return
            transceiver.direction = "inactive"
            transceiver.sender.replaceTrack(None)
            await self._negotiate_up()

    async def _negotiate_up(self) -> None:
        pc = self._up
        assert pc is not None
        offer = await pc.createOffer()
        bind_host_candidates(pc, self._config.udp_host)
        await pc.setLocalDescription(offer)
        sources = {
            t.mid: source
            for source, t in self._up_transceivers.items()
            if t.mid is not None and t.direction != "inactive"
        }
        answer = await self._publish_offer(pc.localDescription.sdp, sources)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    @property
    def up_state(self) -> str:
        return self._up.connectionState if self._up else "new"

    @property
    def down_state(self) -> str:
        return self._down.connectionState if self._down else "new"

    @property
    def down_generation(self) -> int | None:
        """The `connection` number of the relay offer the down connection answers (None: none)."""
        return self._down_generation

    # -- receiving ---------------------------------------------------------------------------

    async def on_offer(self, event: Mapping[str, Any]) -> None:
        """Answer the relay's down offer (an `offer` event)."""
        async with self._down_lock:
            generation = int(event.get("connection", 0))
            if self._down is None or generation != self._down_generation:
                await self._close_down()
                self._down = self._new_connection()
                self._down_generation = generation
            pc = self._down
            await pc.setRemoteDescription(RTCSessionDescription(event["sdp"], "offer"))
            for transceiver in pc.getTransceivers():
                if id(transceiver.receiver) not in self._tapped:
                    self._tap(transceiver)
            self._mid_sources = {
                mid: (t["participant"], t["source"]) for mid, t in event.get("tracks", {}).items()
            }
            answer = await pc.createAnswer()
            bind_host_candidates(pc, self._config.udp_host)
            await pc.setLocalDescription(answer)
            self.offers += 1
            sdp = pc.localDescription.sdp
        await self._send_answer(sdp)

    def _new_connection(self) -> RTCPeerConnection:
        """A peer connection whose SRTP is handled as it is read (no task hop per packet)."""
        pc = self._config.new_peer_connection()

        @pc.on("connectionstatechange")
        def _on_change() -> None:
            dtls = transport_of(pc)
            if pc.connectionState == "connected" and dtls is not None:
                receive_directly(dtls)

        return pc

    def _tap(self, transceiver: RTCRtpTransceiver) -> None:
        receiver = transceiver.receiver
        self._tapped.add(id(receiver))
        if not self._estimate_bandwidth:
            # no REMB: aiortc's estimator is the costliest part of its receive path
            stop_remote_bitrate_estimate(receiver)
        elif self._stalled is not None:
            hold_remb_while(receiver, self._stalled)

        def on_frame(codec: RTCRtpCodecParameters, frame: JitterFrame, arrival: float) -> None:
            mid = transceiver.mid
            key = self._mid_sources.get(mid) if mid is not None else None
            if key is not None:
                self._count(key, codec, frame, arrival)

        tap_client_receiver(receiver, on_frame)

    def _count(
        self, key: tuple[str, str], codec: RTCRtpCodecParameters, frame: JitterFrame, arrival: float
    ) -> None:
        track = self.received.get(key)
        if track is None:
            track = self.received[key] = ReceivedTrack(key[0], key[1])
        track.kind = codec.mimeType.split("/")[0].lower()
        track.codec = codec.name.lower()
        track.frames += 1
        track.bytes += len(frame.data)
        if track.codec == "vp8" and frame.data and not frame.data[0] & 0x01:
            size = vp8.keyframe_size(frame.data)
            if size is not None:
                track.keyframe_sizes.append(size)
        now = time.time()
        if track.first_frame_at is None:
            track.first_frame_at = now
        track.last_frame_at = now
        sample = (
            self._sample_every > 0
            and track.kind == "video"
            and track.frames % self._sample_every == 0
        )
        if sample:
            track.arrivals.append((frame_digest(frame.data), arrival))
        if self._keep_digests or self.frame_log is not None:
            digest = frame_digest(frame.data)
            if self._keep_digests:
                track.digests.append(digest)
            if self.frame_log is not None:
                sent_at = self.frame_log.send_times.get(digest)
                if sent_at is not None and 0 <= arrival - sent_at < 10:
                    track.latencies_ms.append((arrival - sent_at) * 1000)

    def track(self, participant: str, source: str) -> ReceivedTrack:
        """What arrived from `participant`'s `source` so far (empty if nothing yet)."""
        return self.received.get((participant, source)) or ReceivedTrack(participant, source)

    def receiving(self) -> set[tuple[str, str]]:
        """(publisher, source) pairs the latest offer maps to this participant's m-lines."""
        return set(self._mid_sources.values())

    # -- teardown ----------------------------------------------------------------------------

    async def _close_down(self) -> None:
        pc, self._down = self._down, None
        self._tapped.clear()
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()

    async def close(self) -> None:
        async with self._down_lock:
            await self._close_down()
        pc, self._up = self._up, None
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()


def _preferences(kind: str, codec: str) -> list[RTCRtpCodecCapability]:
    """Codec preferences for publishing with `codec` ("vp8", "h264", "opus") only."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [
        c for c in caps
        if c.name.lower() == codec
        and (codec != "h264" or c.parameters.get("profile-level-id") == H264_PROFILE)
    ]
    return chosen + [c for c in caps if is_rtx(c)][:1]
