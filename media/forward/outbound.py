"""One subscriber's copy of one forwarded track: `OutboundStream`.

The stream keeps what the subscriber negotiated (payload types, extension layout, RED), which
source feeds it (the track, or its low rendition, taken over at a keyframe: make before
break) and whether it is paused, and puts the parts together:

- `Continuity`: sequence numbers and timestamps, continuous across sources and pauses;
- `LayerDropper`: the temporal layers left out, picture ids renumbered;
- `PacketWriter`: the one place a packet is assembled and sent, whichever path built it
  (`forward`, `forward_red`, `forward_layer`, `send_padding`, `retransmit`);
- `answer_nack`: what a NACK gets back;
- `StreamReports`: sender reports, and what the subscriber reports;
- `feedback.dispatch`: the one way RTCP reaches a stream.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket

from media.forward.continuity import Continuity
from media.forward.emit import PADDING_BIT, DatagramSink, PacketWriter, padding_payload
from media.forward.feedback import dispatch, from_aiortc
from media.forward.layers import LayerDropper
from media.forward.reports import StreamReports, sender_info
from media.forward.retransmit import RETRANSMIT_BACKLOG_MAX_S, answer_nack, rtx_payload
from media.peers.codec_match import payload_types
from media.rtp import red, vp8
from media.rtp.header import ExtensionLayout, TailVariant, extension_tail
from media.rtp.rtcp_feedback import ReportBlock
from media.rtp.timing import MASK32, abs_send_time

if TYPE_CHECKING:
    from media.forward.forwarder import InboundTrack


class LinkFeedback(Protocol):
    """What a subscriber's reports about its streams feed (`adaptation.DownlinkAdaptation`)."""

    def on_report(self, report: ReportBlock, clock_rate: int, first_seq: int) -> None: ...

    def on_remb(self, bps: float) -> None: ...

    def on_sender_report(self, ntp_timestamp: int) -> None: ...


class OutboundStream:
    """One subscriber's view of one forwarded track (one relay sender on its downlink)."""

    def __init__(
        self,
        kind: str,
        ssrc: int,
        rtx_ssrc: int,
        sink: DatagramSink,
        padding_sink: DatagramSink | None = None,
    ) -> None:
        self.kind = kind
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.track: InboundTrack | None = None
        """The published track this stream stands for."""
        self.source: InboundTrack | None = None
        """What feeds it now: `track`, or its low rendition's track (`switch_source`)."""
        self.pending: InboundTrack | None = None
        """The source it switches to at that source's next keyframe (meanwhile `source` goes
        on)."""
        self.paused = False
        self.share_bps: float | None = None
        """What the subscriber's adaptation offered this stream's track at its last decision
        (`TrackAllocation.share_bps`; None before the first): dynacast sets a simulcast top
        layer's bitrate ceiling from it (`media.adapt.dynacast.top_ceiling`)."""
        self.first_seq = random.randrange(0, 0x8000)
        """The sequence number of the first packet sent: a receiver's first report counts
        its loss from there."""
        self.continuity = Continuity(self.first_seq, 90000 if kind == "video" else 48000)
        self.writer = PacketWriter(sink)
        self._write = self.writer.write
        self.padding_writer = PacketWriter(padding_sink or sink)
        """RTX padding beside the video (`send_rtx_padding`): the pacer's padding lane."""
        """`writer.write`, bound once (the hot path calls it per packet)."""
        self.layers = LayerDropper()
        self.layered = False
        """Frames go through `layers` (picture ids renumbered): set once a layer was left out
        or the source switched, for good."""
        self.reports = StreamReports()
        self.link: LinkFeedback | None = None
        """Where the subscriber's reports about this stream also go (adaptation)."""
        # negotiation
        self.layout = ExtensionLayout()
        self.variant: TailVariant = (0, 0)
        self.negotiated: list[RTCRtpCodecParameters] = []
        self.pt: int | None = None
        self.rtx_pt: int | None = None
        self.rtx_seq = random.randrange(0, 0x8000)
        self.red_pt: int | None = None
        """Audio: the subscriber accepted RED (RFC 2198) with this payload type."""
        self.red_on = False
        """Audio goes as RED packets carrying the previous packets too (lossy link)."""
        # counters: media SSRC (sender reports), retransmissions, feedback
        self.packets = 0
        self.octets = 0
        self.red_packets = 0
        self.nacks = 0
        self.retransmitted = 0
        self.retransmitted_octets = 0
        """Payload bytes of the retransmissions (not in `octets`, which the sender reports
        give for the media SSRC alone), for what the downlink is sent."""
        self.probe_packets = 0
        """Padding-only packets sent on the RTX stream beside the video (`send_rtx_padding`)."""
        self.probe_octets = 0
        """Their padding bytes (not in `octets` either), for what the downlink is sent."""
        self.keyframe_requests = 0
        self.resends_held = 0
        """NACKed packets not answered while the pacer was behind (`RETRANSMIT_BACKLOG_MAX_S`)."""
        self.backlog: Callable[[], float] | None = None
        """Seconds of video waiting in the downlink's pacer (`Pacer.backlog_s`), set by the
        downlink; None: no pacer."""

    def __repr__(self) -> str:
        return f"OutboundStream({self.kind} ssrc={self.ssrc} <- {self.track})"

    # -- state the parts own -----------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        """Nothing forwarded since the last (re)start: waiting for the source's keyframe."""
        return self.continuity.waiting

    @property
    def clock_rate(self) -> int:
        return self.continuity.clock_rate

    @property
    def target_tid(self) -> int:
        return self.layers.target_tid

    @property
    def max_tid(self) -> int:
        return self.layers.max_tid

    @property
    def frames_dropped(self) -> int:
        return self.layers.frames_dropped

    @property
    def rtt(self) -> float | None:
        return self.reports.rtt

    @property
    def remb_bps(self) -> int | None:
        return self.reports.remb_bps

    # -- negotiation ---------------------------------------------------------------------------

    def configure(self, layout: ExtensionLayout, negotiated: list[RTCRtpCodecParameters]) -> None:
        """What the subscriber's answer says: extension ids, MID and payload types."""
        self.layout = layout
        self.writer.configure(layout)
        self.padding_writer.configure(layout)
        self.variant = layout.variant
        self.negotiated = negotiated
        self._map_payload_types()

    def _map_payload_types(self) -> None:
        mapped = payload_types(self.track.codec, self.negotiated) if self.track else None
        if mapped is None:
            self.pt = self.rtx_pt = None
        else:
            self.pt, self.rtx_pt = mapped

    def set_red(self, on: bool) -> None:
        """Send audio as RED (when the subscriber accepted it) or plain."""
        self.red_on = on and self.red_pt is not None and self.kind == "audio"

    def set_temporal_layers(self, layers: int) -> None:
        """Send this many temporal layers (1: 7.5 fps, 2: 15 fps, 3: all of an L1T3 source).

        Going down takes effect at the next frame; going up at the next layer-sync frame or
        keyframe. Once a stream has left a layer out it keeps rewriting ids for good."""
        self.layers.set_layers(layers)
        if self.layers.target_tid < 2:
            self.layered = True

    # -- sources -------------------------------------------------------------------------------

    def attach(self, track: InboundTrack, source: InboundTrack | None = None) -> None:
        """Start forwarding `track` here, from its next keyframe, continuing our sequence;
        from `source` (one of a simulcast track's layers) rather than the track itself if
        given."""
        if self.track is track:
            return
        self.detach()
        self.track = track
        self.source = source if source is not None else track
        track.subscribers.add(self)
        self.continuity.restart()
        self.continuity.clock_rate = track.codec.clockRate
        self._map_payload_types()
        if self.paused:
            return
        self.source.add_stream(self)
        self.source.request_keyframe()

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
                self.layers.continue_from(last)
        self.layered = True  # renumber picture ids from here on
        self._drop_pending()
        if self.paused or self.waiting or old is None:
            # nothing on the subscriber's screen to keep: switch now
            if old is not None:
                old.remove_stream(self)
            self.source = source
            if self.paused:
                return
            self.continuity.restart()
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
        self.continuity.restart()

    def _drop_pending(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None and pending is not self.source:
            pending.remove_stream(self)

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

    def resume(self) -> None:
        """Forward again from the source's next keyframe, continuing our sequence."""
        if not self.paused:
            return
        self.paused = False
        track = self.source
        if track is not None:
            self.continuity.restart()
            track.add_stream(self)
            track.request_keyframe()

    # -- the hot path: what `InboundTrack.on_packet` calls, all sent by `writer.write` ---------

    def forward(
        self, seq: int, ts: int, marker: int, body: bytes, size: int, keyframe: bool, now: float
    ) -> None:
        """Forward one packet whose `body` (extension tail + payload of `size` bytes) is
        built."""
        continuity = self.continuity
        if continuity.waiting:
            if not keyframe or self.pt is None:
                return
            continuity.start(ts, now)
        # `continuity.place`, inlined: a call per packet per subscriber costs 4% of this path
        out = continuity.seqmap.map(seq)
        if out is None:
            return
        ts = (ts + continuity.offset) & MASK32
        continuity.last_ts = ts
        continuity.last_at = now
        self._write(marker | self.pt, out, ts, self.ssrc, body)  # type: ignore[operator]
        self.packets += 1
        self.octets += size

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
        continuity = self.continuity
        if continuity.waiting:
            continuity.start(ts, now)
        out = continuity.place(seq, ts, now)
        if out is None:
            return
        offset = continuity.offset
        ts = continuity.out_ts
        body = red.red_payload(pt, ts, payload, [((t + offset) & MASK32, d) for t, d in previous])
        self.writer.write(marker | red_pt, out, ts, self.ssrc, tail + body)
        self.packets += 1
        self.red_packets += 1
        self.octets += len(body)

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
        """Forward one packet of a layered VP8 track: frames above the layers wanted are left
        out of the sequence, picture ids and TL0PICIDX rewritten so the subscriber sees no
        gap."""
        waiting = self.continuity.waiting
        if waiting:
            if not keyframe or self.pt is None:
                return
            self.layers.restart(layer[2], layer[4])
        ids = self.layers.place(layer, keyframe)
        if ids is None:
            seqmap = self.continuity.seqmap
            if not seqmap.drop(seq) and not waiting:
                # packets before this one were lost: they keep their place (a NACK may
                # repair them), this one still leaves no hole
                seqmap.map((seq - 1) & 0xFFFF)
                seqmap.drop(seq)
            return
        variant = self.variant
        key = (*variant, *ids)
        body = bodies.get(key)
        if body is None:
            out_pid, out_tl0 = ids
            if out_pid == layer[2] and out_tl0 == layer[4]:
                rewritten = payload
            else:
                rewritten = vp8.rewrite_ids(payload, out_pid, out_tl0)
            body = bodies[key] = extension_tail(variant, abs_time, level) + rewritten
        self.forward(seq, ts, marker, body, len(payload), keyframe, now)

    def send_padding(self, count: int, size: int, abs_time: int) -> None:
        """While paused, send `count` padding-only packets of `size` padding bytes (1..255):
        the subscriber's receiver keeps reporting on this stream (receiver reports every
        second and REMB, which a receiver sends only about streams that carry abs-send-time,
        not audio), so the relay is not blind to its link while the video is off. They take
        sequence numbers of their own and repeat the last timestamp; a decoder skips them."""
        continuity = self.continuity
        pt, ts = self.pt, continuity.last_ts
        if not self.paused or pt is None or ts is None:
            return
        padding = padding_payload(size)
        body = extension_tail(self.variant, abs_time, None) + padding
        for _ in range(count):
            self.writer.write(pt, continuity.seqmap.take(), ts, self.ssrc, body, PADDING_BIT)
            self.packets += 1
            self.octets += len(padding)

    def send_rtx_padding(self, count: int, size: int, abs_time: int) -> bool:
        """While forwarding, send `count` padding-only packets of `size` padding bytes (1..255)
        on the RTX stream, beside the video, as libwebrtc pads its probes: a bandwidth probe
        that puts no picture at stake and no sequence number into the video's (a receiver
        drops an RTX packet without a payload once its link estimate has counted it). Whether
        they were sent: not while paused (`send_padding` pads the stream itself), nor without
        RTX or before the first packet."""
        rtx_pt, ts = self.rtx_pt, self.continuity.last_ts
        if self.paused or rtx_pt is None or ts is None:
            return False
        body = extension_tail(self.variant, abs_time, None) + padding_payload(size)
        write = self.padding_writer.write
        for _ in range(count):
            write(rtx_pt, self.rtx_seq, ts, self.rtx_ssrc, body, PADDING_BIT)
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        self.probe_packets += count
        self.probe_octets += count * size
        return True

    # -- feedback from the subscriber ----------------------------------------------------------

    def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        """RTCP about this stream as aiortc parsed it (when the fast path is not installed)."""
        dispatch(from_aiortc(packet), {self.ssrc: self})

    def on_report(self, report: ReportBlock) -> None:
        """A reception report about this stream: loss, jitter and (from LSR/DLSR) RTT."""
        self.reports.received(report, time.time())
        if self.link is not None:
            self.link.on_report(report, self.clock_rate, self.first_seq)

    def on_remb(self, bps: int) -> None:
        """The subscriber's REMB covers this stream."""
        self.reports.remb_bps = bps
        if self.link is not None:
            self.link.on_remb(bps)

    def keyframe_wanted(self) -> None:
        """The subscriber sent PLI or FIR (not passed on while paused: `resume` asks for a
        keyframe anyway, and a paused subscriber's browser keeps asking)."""
        self.keyframe_requests += 1
        if self.source is not None and not self.paused:
            self.source.request_keyframe()

    def retransmit(self, lost: Iterable[int]) -> None:
        """Answer a NACK from the source track's history (as RTX when negotiated); packets
        too old, or gone from the history, are repaired by a keyframe instead."""
        track = self.source
        pt = self.pt
        if track is None or pt is None or self.paused:
            # paused: nothing is played until `resume`'s keyframe, and what a retransmission
            # would repair is the overflow that paused it (the flap's dip: the classroom's
            # NACKs of the lost video kept the link full and its audio broken for 2 s)
            return
        if self.backlog is not None and self.backlog() > RETRANSMIT_BACKLOG_MAX_S:
            held = len(list(lost))  # asked again an RTT later, answered once the queue drained
            self.nacks += held
            self.resends_held += held
            return
        continuity = self.continuity
        answer = answer_nack(
            lost, continuity.seqmap.reverse, track,
            self.layers.resent_payload if self.layered else None,
        )
        self.nacks += answer.asked
        if answer.resend:
            tail = extension_tail(self.variant, abs_send_time(time.time()), None)
            write, rtx_pt = self.writer.write, self.rtx_pt
            for out, packet, payload in answer.resend:
                ts = continuity.timestamp(packet.timestamp)
                marker = 0x80 if packet.marker else 0
                if rtx_pt is not None:
                    body = tail + rtx_payload(out, payload)
                    write(marker | rtx_pt, self.rtx_seq, ts, self.rtx_ssrc, body)
                    self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                    self.retransmitted_octets += len(payload) + 2
                else:
                    write(marker | pt, out, ts, self.ssrc, tail + payload)
                    self.retransmitted_octets += len(payload)
                self.retransmitted += 1
        if answer.unrepaired:
            track.request_keyframe()

    def fill_sender_report(self, report: RtcpSrPacket) -> None:
        """Our counters and clock pair, in place of aiortc's (which never saw a packet)."""
        now = time.time()
        ntp = self.reports.sent(now)
        report.sender_info = sender_info(
            ntp, self.continuity.rtp_timestamp_at(now), self.packets, self.octets
        )
        if self.link is not None:
            self.link.on_sender_report(ntp)
