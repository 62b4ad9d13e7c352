"""RTP-level forwarding: one published track fanned out to its subscribers' outbound streams.

Per incoming packet the `InboundTrack` (here) does the shared work once: keyframe detection,
the history NACKs are answered from, layer rates, what RED repeats, and the extension tail and
body shared by every subscriber with the same extension variant. Per subscriber it picks the
stream's path (plain, RED, or layer dropping) and hands the packet to its `OutboundStream`
(`media.forward.outbound`), which rewrites sequence number, timestamp, payload type and SSRC
and sends through its `PacketWriter` (`media.forward.emit`). No task, coroutine or log line
per packet. Payloads are never touched (but for VP8 picture ids when layers are dropped).

The names callers use live on here: `OutboundStream`, `DatagramSink`, `deliver_feedback`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.forward.emit import DatagramSink
from media.forward.feedback import deliver_feedback
from media.forward.keyframe_requests import KeyframeRequests
from media.forward.outbound import LinkFeedback, OutboundStream
from media.peers.codec_match import has_rtx, media_codec
from media.rtp import h264, red, vp8
from media.rtp.header import extension_tail
from media.rtp.timing import MASK32, abs_send_time

__all__ = [
    "PACKET_OVERHEAD",
    "DatagramSink",
    "InboundTrack",
    "LinkFeedback",
    "OutboundStream",
    "SharedRendition",
    "deliver_feedback",
    "keyframe_detector",
]

logger = logging.getLogger(__name__)

HISTORY_SIZE = 1024  # power of two: about 10 s of 1 Mbit/s video
HISTORY_MASK = HISTORY_SIZE - 1
PACKET_OVERHEAD = 60
"""Bytes a forwarded packet costs beyond its payload: RTP header and extensions, SRTP tag,
UDP and IPv4 (bitrates for adaptation count them)."""
RATE_WINDOW_S = 1.0
RATE_SMOOTHING = 0.35
"""Weight of the newest window in a track's measured layer rates."""

KeyframeDetector = Callable[[bytes], bool]
PacketTap = Callable[[RtpPacket], None]
"""Sees every packet of a published track (a transcoder's input)."""


class SharedRendition(Protocol):
    """A rendition of a track shared by several outbound streams (`transcode.LowRendition`)."""

    @property
    def track(self) -> InboundTrack: ...

    @property
    def running(self) -> bool: ...

    def release(self, stream: OutboundStream) -> None: ...

    def close(self) -> None: ...


def keyframe_detector(codec: RTCRtpCodecParameters) -> KeyframeDetector | None:
    """How to spot the first packet of a keyframe; None for audio (every packet will do)."""
    name = codec.name.lower()
    if name == "vp8":
        return vp8.is_keyframe_start
    if name == "h264":
        return h264.is_keyframe_start
    return None


def _smoothed(old: float, new: float) -> float:
    if new <= 0.0 or old <= 0.0:
        return new
    return RATE_SMOOTHING * new + (1.0 - RATE_SMOOTHING) * old


class InboundTrack:
    """One published track on the relay, and the outbound streams it feeds."""

    def __init__(
        self,
        participant_id: str,
        source: str,
        codecs: list[RTCRtpCodecParameters],
        send_pli: Callable[[int], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        codec = media_codec(codecs)
        if codec is None:
            raise ValueError("a published track needs a media codec")
        self.participant_id = participant_id
        self.source = source
        self.codec = codec
        self.kind = codec.mimeType.split("/")[0].lower()
        self.rtx = has_rtx(codecs)
        self.streams: tuple[OutboundStream, ...] = ()
        self.subscribers: weakref.WeakSet[OutboundStream] = weakref.WeakSet()
        """Every outbound stream standing for this track (paused or on the low rung too)."""
        self.ssrc: int | None = None
        self.closed = False
        self.packets = 0
        self.keyframes_seen = 0
        self.duplicates = 0
        """Packets dropped as copies of one in the history (RTX probes, repeats)."""
        self.plis_sent = 0
        self._detect_keyframe = keyframe_detector(codec)
        self._is_vp8 = codec.name.lower() == "vp8"
        self.layer_octets = [0, 0, 0, 0]
        """Bytes (payload and overhead) per temporal layer; index 3: no layer information."""
        self._rates: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self._rates_from: tuple[float, list[int]] | None = None
        self._history: list[RtpPacket | None] = (
            [None] * HISTORY_SIZE if self._detect_keyframe is not None else []
        )
        self._highest_seq = 0
        self._last_timestamp: int | None = None
        self._send_pli = send_pli
        self._clock = clock
        self._loop = loop
        self._keyframe_requests = KeyframeRequests()
        self._retry: asyncio.TimerHandle | None = None
        self.last_layer: vp8.TemporalLayer | None = None
        """Layer fields of the latest packet (what a stream forwarding all of them sent last)."""
        self.recent: list[tuple[int, bytes]] = []
        """Audio: (timestamp, payload) of the last packets, repeated in RED packets."""
        self.taps: tuple[PacketTap, ...] = ()
        """Callbacks given every packet (the low rendition's transcoder while it runs)."""
        self.trunk: PacketTap | None = None
        """Sends every packet to the room's other nodes (`media.trunk`); unlike a tap, no
        reason for dynacast to keep a layer on (`watched_remotely` is)."""
        self.watched_remotely = False
        """A simulcast layer some other node's subscribers watch (`media.trunk`, WANTS)."""
        self.low_rendition: SharedRendition | None = None
        """The shared low rendition of this track once someone needed it (`media.adapt.transcode`);
        closed with the track."""
        self.rid: str | None = None
        """The simulcast layer (RTP stream id) this track carries, None without simulcast."""
        self.spatial_layers: tuple[InboundTrack, ...] = ()
        """A simulcast publication: every layer's track, lowest resolution first, the last one
        this track itself (the published track that subscribers attach to); each layer is
        a source an `OutboundStream` switches to (`media.forward.simulcast`). Empty for a
        single-layer track; the other layers close with this one."""
        self.held_rates: tuple[float, float, float, float] | None = None
        """A simulcast layer the relay asked the publisher to pause (`media.adapt.dynacast`):
        its rates when it was paused, so subscribers' ladders still offer it (wanting it
        resumes it)."""
        self.publisher_paused = False
        """A simulcast layer the relay asked the publisher to stop sending
        (`set_publisher_paused`): no PLI goes to it until it is asked to send again."""
        self.ceiling_bps: float | None = None
        """A simulcast layer that is the highest the publisher sends, or the lowest under it:
        the bitrate ceiling the relay set it to from its subscribers' budgets
        (`media.adapt.dynacast`); None: the page's own (or neither)."""
        self.ceiling_rising = False
        """That ceiling was raised a moment ago (`media.adapt.dynacast.RAMP_S`): the
        publisher's encoder is still on its way up to it."""

    def __repr__(self) -> str:
        rid = f" rid={self.rid}" if self.rid is not None else ""
        return f"InboundTrack({self.participant_id}/{self.source}{rid} {self.codec.mimeType})"

    # -- the hot path ------------------------------------------------------------------------

    def on_packet(self, packet: RtpPacket) -> None:
        """Forward one decrypted packet from the publisher to every outbound stream."""
        payload = packet.payload
        if not payload:
            return  # padding-only bandwidth probe
        seq = packet.sequence_number
        history = self._history
        if history:
            kept = history[seq & HISTORY_MASK]
            if (
                kept is not None
                and kept.sequence_number == seq
                and kept.timestamp == packet.timestamp
                and kept.ssrc == packet.ssrc
            ):
                # a duplicate: the publisher's RTX of a packet we have (Chromium probes its
                # uplink with RTX copies of recent packets): neither a rate nor a packet to
                # forward again (subscribers' NACKs are answered from the history); a source
                # that restarted its numbering (a new SSRC, a new clock) is not one
                self.duplicates += 1
                return
        self.packets += 1
        if self.taps:
            for tap in self.taps:
                tap(packet)
        trunk = self.trunk
        if trunk is not None:
            trunk(packet)
        if packet.ssrc != self.ssrc:  # the first packet (or a new SSRC): PLI if one is owed
            self.ssrc = packet.ssrc
            self._highest_seq = (seq - 1) & 0xFFFF
            if self._keyframe_requests.wanted:
                self._pli()
        timestamp = packet.timestamp
        detect = self._detect_keyframe
        if detect is None:
            keyframe = True
        else:
            history[seq & HISTORY_MASK] = packet
            # Only the first packet of a frame, arriving in order, can start a keyframe (an
            # H.264 IDR fragment after the SPS packet must not).
            keyframe = False
            if (seq - self._highest_seq) & 0xFFFF < 0x8000:
                keyframe = timestamp != self._last_timestamp and detect(payload)
                self._highest_seq = seq
                self._last_timestamp = timestamp
            if keyframe:
                self.keyframes_seen += 1
                self._keyframe_requests.keyframe_seen()
        size = len(payload)
        layer = vp8.temporal_layer(payload) if self._is_vp8 else None
        self.layer_octets[3 if layer is None else layer[0] & 3] += size + PACKET_OVERHEAD
        self.last_layer = layer
        recent = self.recent
        if detect is None:  # audio: remember what RED repeats
            self.recent = [*recent[1 - red.KEPT:], (timestamp, payload)]
        streams = self.streams
        if not streams:
            return
        now = time.time()
        abs_time = abs_send_time(now)
        level = packet.extensions.audio_level
        marker = 0x80 if packet.marker else 0
        bodies: dict[tuple[int, ...], bytes] = {}
        for stream in streams:
            if stream.source is not self:  # a switch waiting for this source's keyframe
                if not keyframe:
                    continue
                stream.take_over(self)
            variant = stream.variant
            if stream.red_on:
                stream.forward_red(
                    seq, timestamp, marker, payload, recent,
                    extension_tail(variant, abs_time, level), now,
                )
                continue
            if layer is not None and stream.layered:
                stream.forward_layer(
                    seq, timestamp, marker, payload, layer, keyframe, now,
                    bodies, abs_time, level,
                )
                continue
            body = bodies.get(variant)
            if body is None:
                body = bodies[variant] = extension_tail(variant, abs_time, level) + payload
            stream.forward(seq, timestamp, marker, body, size, keyframe, now)

    # -- the rest ------------------------------------------------------------------------------

    def layer_rates(self, now: float) -> tuple[float, float, float, float]:
        """Bits per second per temporal layer (TID 0, 1, 2, no layer information): windows of
        at least `RATE_WINDOW_S`, smoothed (`RATE_SMOOTHING`) so that one keyframe, or the two
        frames a second of a slide share's base layer, do not make the costs jump; a layer
        that stopped reads zero at once, unless a layer above it still flows (then a window
        only missed its frames: a lower layer read as free made its rung look free). Zeros at
        first."""
        start = self._rates_from
        if start is None:
            self._rates_from = (now, list(self.layer_octets))
        elif now - start[0] >= RATE_WINDOW_S:
            elapsed = now - start[0]
            octets = self.layer_octets
            raw = [(octets[i] - start[1][i]) * 8 / elapsed for i in range(4)]
            rates = []
            for i, old in enumerate(self._rates):
                new = raw[i]
                if new <= 0.0 and i < 2 and any(raw[j] > 0.0 for j in range(i + 1, 3)):
                    # a layer above this one flowed, and it needs this one: the window only
                    # missed its frames (an encoder short of CPU skips some), it did not stop
                    new = old
                rates.append(_smoothed(old, new))
            self._rates = tuple(rates)  # type: ignore[assignment]
            self._rates_from = (now, list(octets))
        return self._rates

    @property
    def last_rates(self) -> tuple[float, float, float, float]:
        """What `layer_rates` last measured (zeros before), without measuring again."""
        return self._rates

    def add_tap(self, tap: PacketTap) -> None:
        if tap not in self.taps:
            self.taps = (*self.taps, tap)

    def remove_tap(self, tap: PacketTap) -> None:
        self.taps = tuple(t for t in self.taps if t != tap)

    def add_stream(self, stream: OutboundStream) -> None:
        if stream not in self.streams:
            self.streams = (*self.streams, stream)

    def remove_stream(self, stream: OutboundStream) -> None:
        self.streams = tuple(s for s in self.streams if s is not stream)

    def from_history(self, seq: int) -> RtpPacket | None:
        """The packet with this source sequence number, if still remembered."""
        if not self._history:
            return None
        packet = self._history[seq & HISTORY_MASK]
        if packet is None or packet.sequence_number != seq:
            return None
        return packet

    def age_s(self, packet: RtpPacket) -> float:
        """How much older, in media time, `packet` is than the newest packet of the track."""
        last = self._last_timestamp
        if last is None:
            return 0.0
        behind = (last - packet.timestamp) & MASK32
        return behind / self.codec.clockRate if behind < 0x80000000 else 0.0

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, coalesced with other requests."""
        if self._detect_keyframe is None:
            return
        if self.publisher_paused:
            self._keyframe_requests.defer()
            return
        if self._keyframe_requests.want(self._clock()):
            self._pli()
        self._schedule_retry()

    def set_publisher_paused(self, paused: bool) -> None:
        """The relay asked the publisher to stop sending this simulcast layer (True) or to send
        it again (False). A PLI to a paused layer is not only wasted: Chromium answers it with
        a keyframe of the layers it still sends (a 180p classroom, its subscriber's PLIs
        retried every 0.4 s at the paused 360p, got 49 keyframes in 30 s and played 4 fps).
        A keyframe wanted meanwhile is asked for when the layer is sent again."""
        if paused == self.publisher_paused:
            return
        self.publisher_paused = paused
        if paused:
            self._cancel_retry()
        elif self._keyframe_requests.wanted:
            self.request_keyframe()

    def _pli(self) -> None:
        if self.ssrc is not None:
            self.plis_sent += 1
            self._send_pli(self.ssrc)

    def _schedule_retry(self) -> None:
        if self._retry is not None:
            return
        at = self._keyframe_requests.next_check()
        if at is not None:
            loop = self._loop or asyncio.get_running_loop()
            self._retry = loop.call_later(max(0.0, at - self._clock()), self._on_retry)

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _on_retry(self) -> None:
        self._retry = None
        if self._keyframe_requests.due(self._clock()):
            self._pli()
        self._schedule_retry()

    def close(self) -> None:
        """Stop forwarding: every outbound stream is detached."""
        self.closed = True
        self._cancel_retry()
        for stream in self.streams:
            stream.detach()
        self.streams = ()
        self.taps = ()
        self.trunk = None
        rendition, self.low_rendition = self.low_rendition, None
        if rendition is not None:
            rendition.close()
        layers, self.spatial_layers = self.spatial_layers, ()
        for layer in layers:
            if layer is not self and not layer.closed:
                layer.close()
