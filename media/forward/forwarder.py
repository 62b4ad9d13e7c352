"""RTP-level forwarding: one published track fanned out to its subscribers' outbound streams.

Per incoming packet the `InboundTrack` does the shared work once (keyframe detection,
history for NACKs, the abs-send-time tail); per subscriber the `OutboundStream` rewrites
sequence number (`SeqMap`), timestamp, payload type and SSRC, prepends its extension head and
hands the bytes to its `DatagramSink` (SRTP + `sendto`). No task, coroutine or log line per
packet. Payloads are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
)

from media.forward.keyframe_requests import KeyframeRequests
from media.peers.codec_match import has_rtx, media_codec, payload_types
from media.rtp import h264, red, vp8
from media.rtp.header import FIXED_HEADER, SEQUENCE, ExtensionLayout, extension_tail
from media.rtp.rtcp_feedback import KeyframeRequest, Nack, Remb, ReportBlock, parse_feedback
from media.rtp.seqmap import SeqMap
from media.rtp.timing import abs_send_time, continuation_offset, ntp_timestamp

logger = logging.getLogger(__name__)

HISTORY_SIZE = 1024  # power of two: about 10 s of 1 Mbit/s video
HISTORY_MASK = HISTORY_SIZE - 1
MASK32 = 0xFFFFFFFF
RETRANSMIT_MAX_AGE_S = 1.0
"""A NACKed packet this much older than the track's newest is not sent again: the subscriber's
jitter buffer has moved on, and after a cut, retransmitting the cut's seconds of packets
flooded the link as it came back (the pacer trimmed half of it for 5 s); a keyframe
repairs it instead."""
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


def _drop(data: bytes) -> None:
    pass


class LinkFeedback(Protocol):
    """What a subscriber's reports about its streams feed (`adaptation.DownlinkAdaptation`)."""

    def on_report(self, report: ReportBlock, clock_rate: int, first_seq: int) -> None: ...

    def on_remb(self, bps: float) -> None: ...

    def on_sender_report(self, ntp_timestamp: int) -> None: ...


class DatagramSink:
    """Where one downlink's packets go: SRTP + UDP once connected, nowhere before or after."""

    __slots__ = ("send",)

    def __init__(self) -> None:
        self.send: Callable[[bytes], None] = _drop

    @property
    def connected(self) -> bool:
        return self.send is not _drop

    def connect(self, send: Callable[[bytes], None]) -> None:
        self.send = send

    def disconnect(self) -> None:
        self.send = _drop


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
        self.low_rendition: SharedRendition | None = None
        """The shared low rendition of this track once someone needed it (`media.adapt.transcode`);
        closed with the track."""

    def __repr__(self) -> str:
        return f"InboundTrack({self.participant_id}/{self.source} {self.codec.mimeType})"

    # -- the hot path ------------------------------------------------------------------------

    def on_packet(self, packet: RtpPacket) -> None:
        """Forward one decrypted packet from the publisher to every outbound stream."""
        payload = packet.payload
        if not payload:
            return  # padding-only bandwidth probe
        self.packets += 1
        if self.taps:
            for tap in self.taps:
                tap(packet)
        seq = packet.sequence_number
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
            self._history[seq & HISTORY_MASK] = packet
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
        if self._keyframe_requests.want(self._clock()):
            self._pli()
        self._schedule_retry()

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

    def _on_retry(self) -> None:
        self._retry = None
        if self._keyframe_requests.due(self._clock()):
            self._pli()
        self._schedule_retry()

    def close(self) -> None:
        """Stop forwarding: every outbound stream is detached."""
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for stream in self.streams:
            stream.detach()
        self.streams = ()
        self.taps = ()
        rendition, self.low_rendition = self.low_rendition, None
        if rendition is not None:
            rendition.close()


class OutboundStream:
    """One subscriber's view of one forwarded track (one relay sender on its downlink)."""

    def __init__(self, kind: str, ssrc: int, rtx_ssrc: int, sink: DatagramSink) -> None:
        self.kind = kind
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.sink = sink
        self.track: InboundTrack | None = None
        """The published track this stream stands for."""
        self.source: InboundTrack | None = None
        """What feeds it now: `track`, or its low rendition's track (`switch_source`)."""
        self.pending: InboundTrack | None = None
        """The source it switches to at that source's next keyframe (meanwhile `source` goes
        on)."""
        self.first_seq = random.randrange(0, 0x8000)
        """The sequence number of the first packet sent: a receiver's first report counts
        its loss from there."""
        self.seqmap = SeqMap(self.first_seq)
        self.waiting = True
        self.pt: int | None = None
        self.rtx_pt: int | None = None
        self.clock_rate = 90000 if kind == "video" else 48000
        self.ts_offset = 0
        self.layout = ExtensionLayout()
        self.head = b""
        self.first_byte = 0x80
        self.variant: tuple[int, int] = (0, 0)
        self.negotiated: list[RTCRtpCodecParameters] = []
        self.rtx_seq = random.randrange(0, 0x8000)
        self.red_pt: int | None = None
        """Audio: the subscriber accepted RED (RFC 2198) with this payload type."""
        self.red_on = False
        """Audio goes as RED packets carrying the previous packets too (lossy link)."""
        self.red_packets = 0
        # counters (sender reports) and what the subscriber reports (for adaptation)
        self.packets = 0
        self.octets = 0
        self.last_ts: int | None = None
        self.last_at: float | None = None
        self.nacks = 0
        self.retransmitted = 0
        self.retransmitted_octets = 0
        """Payload bytes of the retransmissions (not in `octets`, which the sender reports
        give for the media SSRC alone), for what the downlink is sent."""
        self.keyframe_requests = 0
        self.fraction_lost = 0
        self.packets_lost = 0
        self.jitter = 0
        self.rtt: float | None = None
        self.remb_bps: int | None = None
        self._reports_sent: dict[int, float] = {}
        self.link: LinkFeedback | None = None
        """Where the subscriber's reports about this stream also go (adaptation)."""
        # temporal-layer dropping (VP8 L1T3): the layers wanted, the layers sent now, and the
        # offsets that keep picture ids and TL0PICIDX continuous for the subscriber
        self.layered = False
        self.target_tid = 2
        self.max_tid = 2
        self.paused = False
        self.pid_delta = 0
        self.tl0_delta = 0
        self.frames_dropped = 0
        self._picture: int | None = None
        self._dropping = False
        self._last_out_pid: int | None = None
        self._last_out_tl0: int | None = None
        self._sent_pictures: dict[int, int] = {}  # source picture id -> ours (recent frames)

    def __repr__(self) -> str:
        return f"OutboundStream({self.kind} ssrc={self.ssrc} <- {self.track})"

    # -- negotiation ---------------------------------------------------------------------------

    def configure(self, layout: ExtensionLayout, negotiated: list[RTCRtpCodecParameters]) -> None:
        """What the subscriber's answer says: extension ids, MID and payload types."""
        self.layout = layout
        self.head = layout.head()
        self.first_byte = layout.first_byte
        self.variant = layout.variant
        self.negotiated = negotiated
        self._map_payload_types()

    def attach(self, track: InboundTrack) -> None:
        """Start forwarding `track` here, from its next keyframe, continuing our sequence."""
        if self.track is track:
            return
        self.detach()
        self.track = track
        self.source = track
        track.subscribers.add(self)
        self.waiting = True
        self.seqmap.restart()
        self.clock_rate = track.codec.clockRate
        self._map_payload_types()
        if self.paused:
            return
        track.add_stream(self)
        track.request_keyframe()

    def detach(self) -> None:
        if self.source is not None:
            self.source.remove_stream(self)
        self._drop_pending()
        track = self.track
        if track is not None and track.low_rendition is not None:
            track.low_rendition.release(self)
        if track is not None:
            track.subscribers.discard(self)
        self.track = None
        self.source = None

    def switch_source(self, source: InboundTrack) -> None:
        """Forward `source` (the track itself or its low rendition, same codec) from its next
        keyframe on, continuing our sequence numbers, timestamps and picture ids. Until that
        keyframe the current source goes on (make before break: no freeze at a switch)."""
        if self.track is None or source is self.pending:
            return
        if source is self.source:
            self._drop_pending()
            return
        old = self.source
        if old is not None and not self.layered:
            last = old.last_layer
            if not self.waiting and last is not None:
                # it forwarded every packet unchanged: its last ids are the source's
                self._last_out_pid, self._last_out_tl0 = last[2], last[4]
        self.layered = True  # renumber picture ids from here on
        self._drop_pending()
        if self.paused or self.waiting or old is None:
            # nothing on the subscriber's screen to keep: switch now
            if old is not None:
                old.remove_stream(self)
            self.source = source
            if self.paused:
                return
            self.waiting = True
            self.seqmap.restart()
        else:
            self.pending = source
        source.add_stream(self)
        source.request_keyframe()

    def take_over(self, source: InboundTrack) -> None:
        """The pending `source` has a keyframe: it replaces the current source now."""
        old = self.source
        if old is not None and old is not source:
            old.remove_stream(self)
        self.pending = None
        self.source = source
        self.waiting = True
        self.seqmap.restart()

    def _drop_pending(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None and pending is not self.source:
            pending.remove_stream(self)

    def _map_payload_types(self) -> None:
        mapped = payload_types(self.track.codec, self.negotiated) if self.track else None
        if mapped is None:
            self.pt = self.rtx_pt = None
        else:
            self.pt, self.rtx_pt = mapped

    # -- the hot path ------------------------------------------------------------------------

    def forward(
        self, seq: int, ts: int, marker: int, body: bytes, size: int, keyframe: bool, now: float
    ) -> None:
        if self.waiting:
            if not keyframe or self.pt is None:
                return
            self.waiting = False
            self.ts_offset = continuation_offset(
                self.last_ts, self.last_at, now, self.clock_rate, ts
            )
        out = self.seqmap.map(seq)
        if out is None:
            return
        ts = (ts + self.ts_offset) & MASK32
        self.sink.send(
            FIXED_HEADER.pack(self.first_byte, marker | self.pt, out, ts, self.ssrc)  # type: ignore[operator]
            + self.head
            + body
        )
        self.packets += 1
        self.octets += size
        self.last_ts = ts
        self.last_at = now

    def forward_red(
        self,
        seq: int,
        ts: int,
        marker: int,
        payload: bytes,
        previous: list[tuple[int, bytes]],
        tail: bytes,
        now: float,
    ) -> None:
        """Forward one audio packet as RED: the previous packets' payloads, then this one."""
        pt, red_pt = self.pt, self.red_pt
        if pt is None or red_pt is None:
            return
        if self.waiting:
            self.waiting = False
            self.ts_offset = continuation_offset(
                self.last_ts, self.last_at, now, self.clock_rate, ts
            )
        out = self.seqmap.map(seq)
        if out is None:
            return
        offset = self.ts_offset
        ts = (ts + offset) & MASK32
        body = red.red_payload(pt, ts, payload, [((t + offset) & MASK32, d) for t, d in previous])
        self.sink.send(
            FIXED_HEADER.pack(self.first_byte, marker | red_pt, out, ts, self.ssrc)
            + self.head
            + tail
            + body
        )
        self.packets += 1
        self.red_packets += 1
        self.octets += len(body)
        self.last_ts = ts
        self.last_at = now

    def set_red(self, on: bool) -> None:
        """Send audio as RED (when the subscriber accepted it) or plain."""
        self.red_on = on and self.red_pt is not None and self.kind == "audio"

    def forward_layer(
        self,
        seq: int,
        ts: int,
        marker: int,
        payload: bytes,
        layer: vp8.TemporalLayer,
        keyframe: bool,
        now: float,
        bodies: dict[tuple[int, ...], bytes],
        abs_time: int,
        level: tuple[bool, int] | None,
    ) -> None:
        """Forward one packet of a layered VP8 track: frames above `max_tid` are left out of
        the sequence, picture ids and TL0PICIDX rewritten so the subscriber sees no gap."""
        tid, sync, pid, bits, tl0 = layer
        if self.waiting:
            if not keyframe or self.pt is None:
                return
            self._picture = None
            if self._last_out_pid is not None and self._last_out_tl0 is not None:
                self.pid_delta = pid - self._last_out_pid - 1
                self.tl0_delta = tl0 - self._last_out_tl0 - 1
            else:
                self.pid_delta = self.tl0_delta = 0
        if pid != self._picture:  # the first packet of a new frame: change layers here
            self._picture = pid
            target = self.target_tid
            if keyframe:
                self.max_tid = target
            elif target < self.max_tid:
                self.max_tid = target
            elif sync and tid == self.max_tid + 1 and tid <= target:
                self.max_tid = tid
            self._dropping = tid > self.max_tid
            if self._dropping:
                self.pid_delta += 1
                self.frames_dropped += 1
            else:
                sent = self._sent_pictures
                sent[pid] = (pid - self.pid_delta) & (0x7FFF if bits == 15 else 0x7F)
                if len(sent) > 64:
                    del sent[next(iter(sent))]
        if self._dropping:
            if not self.seqmap.drop(seq) and not self.waiting:
                # packets before this one were lost: they keep their place (a NACK may
                # repair them), this one still leaves no hole
                self.seqmap.map((seq - 1) & 0xFFFF)
                self.seqmap.drop(seq)
            return
        out_pid = (pid - self.pid_delta) & (0x7FFF if bits == 15 else 0x7F)
        out_tl0 = (tl0 - self.tl0_delta) & 0xFF
        self._last_out_pid = out_pid
        self._last_out_tl0 = out_tl0
        variant = self.variant
        key = (*variant, out_pid, out_tl0)
        body = bodies.get(key)
        if body is None:
            if out_pid == pid and out_tl0 == tl0:
                rewritten = payload
            else:
                rewritten = vp8.rewrite_ids(payload, out_pid, out_tl0)
            body = bodies[key] = extension_tail(variant, abs_time, level) + rewritten
        self.forward(seq, ts, marker, body, len(payload), keyframe, now)

    def set_temporal_layers(self, layers: int) -> None:
        """Send this many temporal layers (1: 7.5 fps, 2: 15 fps, 3: all of an L1T3 source).

        Going down takes effect at the next frame; going up at the next layer-sync frame or
        keyframe. Once a stream has left a layer out it keeps rewriting ids for good."""
        self.target_tid = max(0, min(2, layers - 1))
        if self.target_tid < 2:
            self.layered = True

    def pause(self) -> None:
        """Send no media on this stream (audio only) while keeping it negotiated (the
        adaptation may still send padding on it, `send_padding`)."""
        if self.paused:
            return
        self.paused = True
        if self.source is not None:
            self.source.remove_stream(self)
        pending = self.pending
        if pending is not None:  # the switch it waited for happens now (nothing is sent)
            pending.remove_stream(self)
            self.pending = None
            self.source = pending

    def send_padding(self, count: int, size: int, abs_time: int) -> None:
        """While paused, send `count` padding-only packets of `size` padding bytes (1..255):
        the subscriber's receiver keeps reporting on this stream (receiver reports every
        second and REMB, which a receiver sends only about streams that carry abs-send-time,
        not audio), so the relay is not blind to its link while the video is off. They take
        sequence numbers of their own and repeat the last timestamp; a decoder skips them."""
        if not self.paused or self.pt is None or self.last_ts is None:
            return
        size = max(1, min(size, 255))
        padding = b"\x00" * (size - 1) + bytes([size])
        body = self.head + extension_tail(self.variant, abs_time, None) + padding
        for _ in range(count):
            header = FIXED_HEADER.pack(
                self.first_byte | 0x20, self.pt, self.seqmap.take(), self.last_ts, self.ssrc
            )
            self.sink.send(header + body)
            self.packets += 1
            self.octets += size

    def resume(self) -> None:
        """Forward again from the source's next keyframe, continuing our sequence."""
        if not self.paused:
            return
        self.paused = False
        track = self.source
        if track is not None:
            self.waiting = True
            self.seqmap.restart()
            track.add_stream(self)
            track.request_keyframe()

    # -- feedback from the subscriber ----------------------------------------------------------

    def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        """RTCP about this stream as aiortc parsed it (when the fast path is not installed)."""
        if isinstance(packet, RtcpRtpfbPacket):
            if packet.fmt == RTCP_RTPFB_NACK and packet.media_ssrc == self.ssrc:
                self.retransmit(packet.lost)
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.keyframe_wanted()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if self.ssrc in ssrcs:
                    self.on_remb(bitrate)
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for r in packet.reports:
                if r.ssrc == self.ssrc:
                    self.on_report(
                        ReportBlock(
                            r.ssrc, r.fraction_lost, r.packets_lost, r.highest_sequence,
                            r.jitter, r.lsr, r.dlsr,
                        )
                    )

    def on_report(self, report: ReportBlock) -> None:
        """A reception report about this stream: loss, jitter and (from LSR/DLSR) RTT."""
        self.fraction_lost = report.fraction_lost
        self.packets_lost = report.packets_lost
        self.jitter = report.jitter
        sent_at = self._reports_sent.get(report.lsr)
        if sent_at is not None and report.dlsr:
            self.rtt = max(0.0, time.time() - sent_at - report.dlsr / 65536)
        if self.link is not None:
            self.link.on_report(report, self.clock_rate, self.first_seq)

    def on_remb(self, bps: int) -> None:
        """The subscriber's REMB covers this stream."""
        self.remb_bps = bps
        if self.link is not None:
            self.link.on_remb(bps)

    def keyframe_wanted(self) -> None:
        """The subscriber sent PLI or FIR."""
        self.keyframe_requests += 1
        if self.source is not None:
            self.source.request_keyframe()

    def retransmit(self, lost: Iterable[int]) -> None:
        """Answer a NACK from the source track's history (as RTX when negotiated); packets
        older than `RETRANSMIT_MAX_AGE_S`, or gone from the history, are repaired by a
        keyframe instead."""
        track = self.source
        if track is None or self.pt is None or self.paused:
            # paused: nothing is played until `resume`'s keyframe, and what a retransmission
            # would repair is the overflow that paused it (the flap's dip: the classroom's
            # NACKs of the lost video kept the link full and its audio broken for 2 s)
            return
        unrepaired = False
        tail = extension_tail(self.variant, abs_send_time(time.time()), None)
        for out in lost:
            self.nacks += 1
            out &= 0xFFFF
            seq = self.seqmap.reverse(out)
            packet = track.from_history(seq) if seq is not None else None
            if packet is None or track.age_s(packet) > RETRANSMIT_MAX_AGE_S:
                unrepaired = True
                continue
            payload = packet.payload
            if self.layered:
                layer = vp8.temporal_layer(payload)
                if layer is not None:
                    out_pid = self._sent_pictures.get(layer[2])
                    if out_pid is None:
                        continue  # a frame we left out (or too old to place)
                    payload = vp8.rewrite_ids(payload, out_pid, layer[4] - self.tl0_delta)
            ts = (packet.timestamp + self.ts_offset) & MASK32
            marker = 0x80 if packet.marker else 0
            if self.rtx_pt is not None:
                header = FIXED_HEADER.pack(
                    self.first_byte, marker | self.rtx_pt, self.rtx_seq, ts, self.rtx_ssrc
                )
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                data = header + self.head + tail + SEQUENCE.pack(out) + payload
            else:
                header = FIXED_HEADER.pack(self.first_byte, marker | self.pt, out, ts, self.ssrc)
                data = header + self.head + tail + payload
            self.sink.send(data)
            self.retransmitted += 1
            self.retransmitted_octets += len(payload) + (2 if self.rtx_pt is not None else 0)
        if unrepaired:
            track.request_keyframe()

    def fill_sender_report(self, report: RtcpSrPacket) -> None:
        """Our counters and clock pair, in place of aiortc's (which never saw a packet)."""
        now = time.time()
        rtp_ts = 0
        if self.last_ts is not None and self.last_at is not None:
            rtp_ts = (self.last_ts + int((now - self.last_at) * self.clock_rate)) & MASK32
        ntp = ntp_timestamp(now)
        report.sender_info = RtcpSenderInfo(
            ntp_timestamp=ntp,
            rtp_timestamp=rtp_ts,
            packet_count=self.packets & MASK32,
            octet_count=self.octets & MASK32,
        )
        self._reports_sent[(ntp >> 16) & MASK32] = now
        if self.link is not None:
            self.link.on_sender_report(ntp)
        if len(self._reports_sent) > 8:
            del self._reports_sent[next(iter(self._reports_sent))]


def deliver_feedback(data: bytes, streams: Mapping[int, OutboundStream]) -> None:
    """Hand each piece of a subscriber's (decrypted) RTCP to the stream it is about."""
    for item in parse_feedback(data):
        if type(item) is ReportBlock:
            stream = streams.get(item.ssrc)
            if stream is not None:
                stream.on_report(item)
        elif type(item) is Remb:
            for ssrc in item.ssrcs:
                stream = streams.get(ssrc)
                if stream is not None:
                    stream.on_remb(item.bitrate)
        elif type(item) is Nack:
            stream = streams.get(item.media_ssrc)
            if stream is not None:
                stream.retransmit(item.lost)
        elif type(item) is KeyframeRequest:
            stream = streams.get(item.media_ssrc)
            if stream is not None:
                stream.keyframe_wanted()
