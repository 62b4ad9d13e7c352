"""The one place where Tongxin bends aiortc 1.16 / aioice 0.13 / pylibsrtp, and why.

aiortc decodes every received track in a thread and encodes every sent track per sender. A
relay must do neither, and its hot path must stay a few operations per packet. Every use of a
private attribute of an aiortc, aioice or pylibsrtp object (and every monkeypatch of one) in
Tongxin is a named function or class here, whose docstring says which internal it relies on
and why the public API is not enough; `BENT_PRIVATE_NAMES` lists them all, and
tests/media/peers/test_aiortc_bends.py has a test per bend (and fails if a name listed here is
used anywhere else). What changes:

1. Decoder threads (`RTCRtpReceiver.receive` starts one): a receiver whose decoder queue is an
   `EncodedFrameSink` gets the sink as its "thread" instead, so complete encoded frames from
   aiortc's jitter buffer go to a callback and nothing is decoded (the relay's receivers and
   the Python client's). Other receivers are untouched.
2. Decrypted RTP on a relay's uplink (`RTCDtlsTransport._handle_rtp_data`): `UplinkRtpTap`
   parses each packet once, unwraps RTX itself (aiortc drops RTX when two video tracks share
   the RTX payload type), hands the packet to the forwarder, then lets aiortc's receiver keep
   its statistics, receiver reports and NACKs with a jitter buffer that keeps nothing. It sends
   no REMB of its own: aiortc's delay-based estimate is computed from when the relay's event
   loop handled each packet, so on a busy relay it read queueing as congestion and held a
   Chromium teacher at ~60 kbit/s and 1-3 fps on a clean link (measured by
   `tongxin bench weaklink`). A publisher is capped only by `media.adapt.publisher_cap`'s REMB
   (`send_remb`), and otherwise by its own congestion control, fed with transport-cc feedback
   when negotiated (`UplinkRtpTap.on_transport_sequence`, `send_rtcp_bytes`,
   `media.peers.twcc_feedback`); the forwarder asks for keyframes with `send_pli`.
3. Relay senders: they get a `HeldTrack` whose `recv()` never returns, so aiortc's encoder
   loop never encodes; their sender reports are filled from the forwarder's counters (aiortc
   would report zeros) and the RTCP a subscriber sends about them goes to the forwarder. The
   forwarder writes their SSRCs (`sender_ssrcs`) and reads what was negotiated
   (`negotiated_codecs`, `negotiated_header_extension_ids`); an uplink answers with only the
   forwarded codec (`set_negotiated_codecs`).
4. The datagram path of a downlink: `datagram_sender` binds SRTP protect and the UDP
   socket's `sendto` once, instead of aiortc's per-packet coroutine chain (`_send_rtp` ->
   `Connection.send` -> `StunProtocol.send_data`); `receive_directly` decrypts incoming
   SRTP/SRTCP in the socket callback, instead of aioice's queue and a DTLS task wake-up per
   packet (and hands a downlink's RTCP to the forwarder without aiortc's RTCP objects).
5. ICE host candidates: aioice gathers on every interface except 127.0.0.1;
   `bind_host_candidates` gathers on one chosen address (loopback in tests).
6. Client receivers: aiortc maps RTP timestamps to start at zero; `tap_client_receiver` keeps
   them as sent, records when each timestamp's last packet arrived (for latency), and routes
   RTX by SSRC (aiortc routes it by payload type, ambiguous with several video m-lines);
   `stop_remote_bitrate_estimate` spares a load-test client aiortc's costliest receive step,
   and `hold_remb_while` keeps one whose process was starved from reporting the stall as
   the link; `receive_raw` and `rtcp_sender` let the lean load-test receiver
   (bench/lean_receiver.py) count decrypted packets and send its own reports without
   aiortc's receive path at all.
7. Codecs: `h264_nal_units` splits H.264 the way aiortc's packetizer does, so the client can
   name a frame by the bytes a receiver reassembles.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from types import SimpleNamespace
from typing import Any, Protocol, cast

import aiortc.rtcrtpreceiver as aiortc_receiver_module
import pylibsrtp
from aioice.ice import Connection, StunProtocol
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import is_rtx
from aiortc.codecs.h264 import H264Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unwrap_rtx,
)
from av.frame import Frame
from av.packet import Packet
from av.stream import Stream
from pylibsrtp._binding import ffi
from pylibsrtp._binding import lib as srtp_lib

from media.rtp.rid import LayerKey, identify

LEAN_BUFFER_SIZE = 2048
NTP_EPOCH_OFFSET = 2208988800  # aiortc's millisecond clock counts from 1900

EncodedFrameCallback = Callable[[RTCRtpCodecParameters, JitterFrame], None]
PacketCallback = Callable[[RtpPacket], None]

BENT_PRIVATE_NAMES: frozenset[str] = frozenset({
    # RTCRtpReceiver
    "_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__decoder_thread",
    "_RTCRtpReceiver__jitter_buffer", "_RTCRtpReceiver__remote_bitrate_estimator",
    "_RTCRtpReceiver__timestamp_mapper", "_RTCRtpReceiver__rtcp_ssrc",
    "_RTCRtpReceiver__nack_generator",
    "_handle_rtp_packet", "_send_rtcp_pli",
    # RTCRtpSender (and the receiver's `_send_rtcp`)
    "_ssrc", "_rtx_ssrc", "_send_rtcp", "_handle_rtcp_packet", "_send_keyframe",
    # RTCRtpTransceiver
    "_codecs", "_headerExtensions",
    # RTCDtlsTransport
    "_handle_rtp_data", "_handle_rtcp_data", "_rtp_header_extensions_map", "_rtp_router",
    "_tx_srtp", "_rx_srtp", "_send_rtp",
    # aioice Connection and the UDP transport under StunProtocol
    "_connection", "_nominated", "_local_candidates_start", "_local_candidates",
    "_local_candidates_end", "_components", "_sock",
    # pylibsrtp Session
    "_srtp",
    # aiortc's H.264 packetizer
    "_split_bitstream",
})
"""Every private name of aiortc/aioice/pylibsrtp this module reads, calls or replaces; only this
module may use them (tests/media/peers/test_aiortc_bends.py scans the code for that)."""


# --- 1. no decoder threads -------------------------------------------------------------------


class EncodedFrameSink:
    """Stands in for a receiver's decoder queue *and* its decoder thread.

    aiortc puts `(codec, encoded_frame)` into the queue and `None` at the end; the sink calls
    `on_frame` instead of decoding. `start`/`join` make it pass for the thread.
    """

    def __init__(self, on_frame: EncodedFrameCallback | None = None) -> None:
        self.on_frame = on_frame
        self.ended = False

    def put(self, item: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        if item is None:
            self.ended = True
        elif self.on_frame is not None:
            self.on_frame(item[0], item[1])

    def start(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return False


class _ThreadLike(Protocol):
    """What rtcrtpreceiver does with its decoder thread."""

    def start(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


def _decoder_thread(
    *, target: Callable[..., object], name: str, args: tuple[object, ...]
) -> _ThreadLike:
    """`threading.Thread` as rtcrtpreceiver calls it: no thread for a sink's receiver."""
    queue = args[1]
    if isinstance(queue, EncodedFrameSink):
        return queue
    return threading.Thread(target=target, name=name, args=args)


def install_sink_decoder_threads() -> None:
    """Make `RTCRtpReceiver.receive` use an `EncodedFrameSink` decoder queue as its thread.

    Relies on aiortc 1.16's rtcrtpreceiver module calling `threading.Thread(target=...,
    name=..., args=(loop, queue, ...))` for the decoder and `threading.Event` for its errors:
    the module's `threading` name is replaced by a namespace with both. No public API lets a
    receiver skip decoding; done once, at import of this module.
    """
    current = getattr(aiortc_receiver_module, "threading", None)
    if getattr(current, "Thread", None) is _decoder_thread:
        return
    aiortc_receiver_module.threading = SimpleNamespace(  # type: ignore[attr-defined, assignment]
        Thread=_decoder_thread, Event=threading.Event
    )


install_sink_decoder_threads()


def has_decoder_thread(receiver: RTCRtpReceiver) -> bool:
    """Whether the receiver runs a real decoder thread.

    Reads `RTCRtpReceiver.__decoder_thread` (aiortc has no public view of it).
    """
    thread = receiver._RTCRtpReceiver__decoder_thread  # type: ignore[attr-defined]
    return isinstance(thread, threading.Thread) and thread.is_alive()


def _sink_of(receiver: RTCRtpReceiver) -> EncodedFrameSink | None:
    queue = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
    return queue if isinstance(queue, EncodedFrameSink) else None


class _KeepNothingJitterBuffer:
    """A jitter buffer for the relay's receivers: the forwarder already has the packets."""

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        return False, None


def stop_remote_bitrate_estimate(receiver: RTCRtpReceiver) -> None:
    """The receiver sends no REMB and spends nothing estimating it.

    Sets `RTCRtpReceiver.__remote_bitrate_estimator` to None (what aiortc does for audio);
    aiortc has no switch for it. Its estimate is the costliest part of aiortc's receive path,
    and on a relay it reads event-loop queueing as congestion (see the module docstring).
    """
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]


def hold_remb_while(receiver: RTCRtpReceiver, stalled: Callable[[], bool]) -> None:
    """Send none of this receiver's REMBs while `stalled()` is true, and give it a fresh
    estimator when that ends (a load-test client whose own event loop was starved).

    Wraps `RTCRtpReceiver._send_rtcp` and replaces `__remote_bitrate_estimator`: aiortc
    computes its delay-based REMB from the times its event loop handled each packet, so in a
    process starved of CPU for 100-600 ms (a load generator on a shared machine) the backlog
    read as a queue on the link, the REMB fell to 0.6-0.8 of what it received, stayed there
    while the estimator climbed back, and the relay stepped healthy subscribers down. A
    browser estimates on its network thread, which a busy page does not stall.
    """
    original = receiver._send_rtcp
    held = [False]

    async def send_rtcp(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            if stalled():
                held[0] = True
                return
            if held[0]:  # the estimator's history is the stall's: start again
                held[0] = False
                receiver._RTCRtpReceiver__remote_bitrate_estimator = (  # type: ignore[attr-defined]
                    RemoteBitrateEstimator()
                )
                return
        await original(packet)

    receiver._send_rtcp = send_rtcp  # type: ignore[method-assign]


def tap_relay_receiver(receiver: RTCRtpReceiver) -> EncodedFrameSink:
    """Before `receive()`: no decoder thread, no frame reassembly and no REMB of its own.

    Replaces `RTCRtpReceiver.__decoder_queue` (with a sink, so `install_sink_decoder_threads`
    starts no thread), `__jitter_buffer` (with one that keeps nothing) and
    `__remote_bitrate_estimator`. aiortc's receiver has no public way to take encoded frames
    or to skip the jitter buffer. Idempotent: a tapped receiver keeps its sink.
    """
    sink = _sink_of(receiver)
    if sink is not None:
        return sink
    sink = EncodedFrameSink()
    receiver._RTCRtpReceiver__decoder_queue = sink  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__jitter_buffer = _KeepNothingJitterBuffer()  # type: ignore[attr-defined]
    stop_remote_bitrate_estimate(receiver)
    return sink


# --- 2. decrypted RTP on the uplink, and the uplink's own RTCP -------------------------------


_SimulcastRoute = tuple[RTCRtpReceiver, dict[str, PacketCallback], dict[int, int]]


class UplinkRtpTap:
    """Replaces one DTLS transport's RTP handling: parse once, forward, then let aiortc count.

    Replaces `RTCDtlsTransport._handle_rtp_data` and reads its `_rtp_header_extensions_map`
    and `_rtp_router`, then calls `RTCRtpReceiver._handle_rtp_packet`: aiortc hands decrypted
    RTP to nobody but its receivers, and routes RTX by payload type only.
    """

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._routes: dict[RTCRtpReceiver, PacketCallback] = {}
        # RTX SSRC -> (receiver, primary SSRC, {rtx payload type: original payload type})
        self._rtx: dict[int, tuple[RTCRtpReceiver, int, dict[int, int]]] = {}
        # simulcast: mid -> (receiver, rid -> callback, {rtx pt: original pt})
        self._simulcast: dict[str, _SimulcastRoute] = {}
        self._simulcast_rids: dict[str, tuple[str, ...]] = {}
        self._learned: dict[int, LayerKey] = {}
        """SSRC -> the simulcast layer stream it carries (learned from its first packets)."""
        self._layer_ssrcs: dict[tuple[str, str], int] = {}
        """(mid, rid) -> the media SSRC of that layer (what its RTX repairs)."""
        self.on_transport_sequence: Callable[[int, int], None] | None = None
        """Called `(transport-wide sequence number, ssrc)` for every packet that carries one
        (RTX and padding probes included), before anything else: transport-cc feedback."""
        dtls._handle_rtp_data = self._handle_rtp_data  # type: ignore[method-assign]

    @classmethod
    def on(cls, dtls: RTCDtlsTransport) -> UplinkRtpTap:
        """The tap of this transport, installed on first use."""
        tap = getattr(dtls, "_tongxin_tap", None)
        if not isinstance(tap, UplinkRtpTap):
            tap = cls(dtls)
            dtls._tongxin_tap = tap  # type: ignore[attr-defined]
        return tap

    def route(
        self,
        receiver: RTCRtpReceiver,
        on_packet: PacketCallback,
        primary_ssrc: int | None = None,
        rtx_ssrc: int | None = None,
        codecs: Iterable[RTCRtpCodecParameters] = (),
    ) -> None:
        """Send this receiver's packets (RTX unwrapped) to `on_packet`."""
        self._routes[receiver] = on_packet
        if primary_ssrc is not None and rtx_ssrc is not None:
            self._rtx[rtx_ssrc] = (receiver, primary_ssrc, _rtx_apts(codecs))

    def route_simulcast(
        self,
        receiver: RTCRtpReceiver,
        mid: str,
        layers: dict[str, PacketCallback],
        codecs: Iterable[RTCRtpCodecParameters] = (),
    ) -> None:
        """Send each simulcast layer (by RID) of the m-line `mid` to its callback, RTX
        unwrapped; aiortc's receiver still sees every layer (statistics, reports, NACKs)."""
        self.unroute(receiver)
        apts = _rtx_apts(codecs)
        self._simulcast[mid] = (receiver, dict(layers), apts)
        self._simulcast_rids[mid] = tuple(layers)
        nack_per_ssrc(receiver)

    def unroute(self, receiver: RTCRtpReceiver) -> None:
        self._routes.pop(receiver, None)
        for ssrc in [s for s, (r, _, _) in self._rtx.items() if r is receiver]:
            del self._rtx[ssrc]
        for mid in [m for m, (r, _, _) in self._simulcast.items() if r is receiver]:
            del self._simulcast[mid]
            del self._simulcast_rids[mid]
            for ssrc in [s for s, key in self._learned.items() if key.mid == mid]:
                del self._learned[ssrc]
                self._dtls._rtp_router.ssrc_table.pop(ssrc, None)
            for layer in [k for k in self._layer_ssrcs if k[0] == mid]:
                del self._layer_ssrcs[layer]

    def _layer_packet(self, key: LayerKey, packet: RtpPacket) -> RtpPacket | None:
        """The packet of a simulcast layer for its callback and aiortc's receiver (RTX
        unwrapped), or None to drop it; remembers a newly seen SSRC."""
        route = self._simulcast.get(key.mid)
        if route is None:
            return None
        receiver, _, apts = route
        ssrc = packet.ssrc
        if ssrc not in self._learned:
            self._learned[ssrc] = key
            if not key.repair:
                self._layer_ssrcs[(key.mid, key.rid)] = ssrc
                # RTCP (the publisher's sender reports) about it reaches the receiver too
                self._dtls._rtp_router.ssrc_table[ssrc] = receiver
        if not key.repair:
            return packet
        primary = self._layer_ssrcs.get((key.mid, key.rid))
        apt = apts.get(packet.payload_type)
        if primary is None or apt is None or len(packet.payload) < 2:
            return None  # RTX before its layer, or a padding-only probe
        return unwrap_rtx(packet, payload_type=apt, ssrc=primary)

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        try:
            packet = RtpPacket.parse(data, self._dtls._rtp_header_extensions_map)
        except ValueError:
            return
        on_transport_sequence = self.on_transport_sequence
        if on_transport_sequence is not None:
            seq = packet.extensions.transport_sequence_number
            if seq is not None:
                on_transport_sequence(seq, packet.ssrc)
        if self._simulcast:
            ext = packet.extensions
            key = identify(
                self._learned, self._simulcast_rids, packet.ssrc, ext.mid, ext.rtp_stream_id,
                ext.repaired_rtp_stream_id,
            )
            if key is not None:
                layer_packet = self._layer_packet(key, packet)
                if layer_packet is None:
                    return
                receiver, layers, _ = self._simulcast[key.mid]
                on_layer = layers.get(key.rid)
                if on_layer is not None:
                    on_layer(layer_packet)
                await receiver._handle_rtp_packet(layer_packet, arrival_time_ms=arrival_time_ms)
                return
        rtx = self._rtx.get(packet.ssrc)
        if rtx is not None:
            receiver, ssrc, apts = rtx
            apt = apts.get(packet.payload_type)
            if apt is None or len(packet.payload) < 2:
                return  # padding-only probe on the RTX stream
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=ssrc)
        else:
            routed = self._dtls._rtp_router.route_rtp(packet)
            if routed is None:
                return
            receiver = cast(RTCRtpReceiver, routed)
        on_packet = self._routes.get(receiver)
        if on_packet is not None:
            on_packet(packet)
        await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)


def _rtx_apts(codecs: Iterable[RTCRtpCodecParameters]) -> dict[int, int]:
    """{RTX payload type: the payload type it repairs}."""
    return {
        c.payloadType: int(str(c.parameters["apt"]))
        for c in codecs
        if is_rtx(c) and c.payloadType is not None and "apt" in c.parameters
    }


class _NackPerSsrc:
    """What aiortc's receiver uses as its NACK generator, one `NackGenerator` per SSRC: the
    receiver calls `add(packet)` then reads `missing` for that packet's SSRC at once."""

    def __init__(self) -> None:
        self._by_ssrc: dict[int, NackGenerator] = {}
        self._last = NackGenerator()

    def add(self, packet: RtpPacket) -> bool:
        generator = self._by_ssrc.get(packet.ssrc)
        if generator is None:
            generator = self._by_ssrc[packet.ssrc] = NackGenerator()
        self._last = generator
        return generator.add(packet)

    @property
    def missing(self) -> set[int]:
        return self._last.missing


def nack_per_ssrc(receiver: RTCRtpReceiver) -> None:
    """The receiver NACKs each SSRC against its own sequence (a simulcast m-line's layers).

    Replaces `RTCRtpReceiver.__nack_generator` (a video receiver's single `NackGenerator`,
    which read the jumps between the layers' sequence numbers as thousands of lost packets);
    aiortc assumes one media SSRC per receiver. Idempotent; audio receivers (no generator)
    are left alone.
    """
    current = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
    if current is None or isinstance(current, _NackPerSsrc):
        return
    receiver._RTCRtpReceiver__nack_generator = _NackPerSsrc()  # type: ignore[attr-defined]


def add_header_extensions(dtls: RTCDtlsTransport, extensions: dict[str, int]) -> None:
    """Parse these header extensions (URI -> id) in the transport's incoming RTP too.

    Configures `RTCDtlsTransport._rtp_header_extensions_map` (which aiortc configures only
    with the extensions it negotiates itself: not the RID ones, which it neither offers nor
    answers, though its parser knows them). aiortc's later `configure` calls only set the
    ids they know, so these stay.
    """
    dtls._rtp_header_extensions_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri)
                for uri, ext_id in extensions.items()
            ]
        )
    )


_pending: set[asyncio.Future[None]] = set()


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the sender of `media_ssrc` for a keyframe (RTCP PLI through this receiver).

    Calls `RTCRtpReceiver._send_rtcp_pli` (in a task): aiortc sends a PLI only when its own
    decoder asks, and the relay has none; no public API sends RTCP.
    """
    _spawn(receiver._send_rtcp_pli(media_ssrc))


def send_rtcp_bytes(receiver: RTCRtpReceiver, build: Callable[[int], list[bytes]]) -> bool:
    """Send the RTCP packets `build(rtcp_sender_ssrc)` returns through this receiver's
    transport. False when the receiver has no RTCP SSRC yet (`build` is not called).

    Reads `RTCRtpReceiver.__rtcp_ssrc` and calls `RTCDtlsTransport._send_rtp` (driven by
    `run_now`, no task unless it must wait): aiortc writes only the RTCP packets it knows,
    and transport-cc feedback is not one of them.
    """
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    if rtcp_ssrc is None:
        return False
    for data in build(rtcp_ssrc):
        run_now(_send_quietly(receiver.transport, data))
    return True


def send_remb(receiver: RTCRtpReceiver, bitrate: int, ssrcs: list[int]) -> bool:
    """Send one REMB of `bitrate` for `ssrcs` through this receiver's RTCP, as aiortc's own
    receiver sends REMB. False when the receiver has no RTCP SSRC yet (not receiving).

    Reads `RTCRtpReceiver.__rtcp_ssrc` and calls `RTCRtpReceiver._send_rtcp` (in a task):
    aiortc's REMB comes only from its own estimator, which the relay turns off.
    """
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    if rtcp_ssrc is None:
        return False
    packet = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)
    )
    _spawn(receiver._send_rtcp(packet))
    return True


# --- 3. relay senders and what was negotiated ------------------------------------------------


class HeldTrack(MediaStreamTrack):
    """A track whose `recv()` never returns: the sender's encoder loop waits forever."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Frame | Packet[Stream]:
        never: asyncio.Future[Frame | Packet[Stream]] = asyncio.get_running_loop().create_future()
        return await never


SenderReportFiller = Callable[[RtcpSrPacket], None]
RtcpCallback = Callable[[AnyRtcpPacket], None]


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC) the sender announces and sends with.

    Reads `RTCRtpSender._ssrc` and `_rtx_ssrc`: aiortc picks them at random in the
    constructor and exposes them only in the SDP and in `getStats()` (async, and only once
    sending). The forwarder rewrites forwarded packets to them from the moment the slot exists.
    """
    return sender._ssrc, sender._rtx_ssrc


def tap_relay_sender(
    sender: RTCRtpSender, fill_report: SenderReportFiller, on_rtcp: RtcpCallback
) -> None:
    """Fill the sender's reports from the forwarder; give the forwarder the subscriber's RTCP.

    Wraps `RTCRtpSender._send_rtcp` (its SR for `_ssrc` is filled in before it goes) and
    `RTCRtpSender._handle_rtcp_packet`: aiortc fills sender reports from what its own encoder
    loop sent (nothing, on the relay) and keeps received RTCP to itself.
    """
    original_send_rtcp = sender._send_rtcp
    original_handle = sender._handle_rtcp_packet

    async def send_rtcp(packets: list[AnyRtcpPacket]) -> None:
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and packet.ssrc == sender._ssrc:
                fill_report(packet)
        await original_send_rtcp(packets)

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        on_rtcp(packet)
        await original_handle(packet)

    sender._send_rtcp = send_rtcp  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


def send_sender_report(sender: RTCRtpSender) -> None:
    """Send a sender report on `sender` now, beside aiortc's own every 0.5-1.5 s: through
    `RTCRtpSender._send_rtcp`, so a tapped sender's is filled and remembered for RTT
    (`tap_relay_sender`); a transport that is gone drops it (aiortc's own handling)."""
    report = RtcpSrPacket(
        ssrc=sender._ssrc,
        sender_info=RtcpSenderInfo(ntp_timestamp=0, rtp_timestamp=0, packet_count=0,
                                   octet_count=0),
    )  # fmt: skip
    _spawn(sender._send_rtcp([report]))


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` when the remote side asks this sender for a keyframe (PLI/FIR).

    Wraps `RTCRtpSender._send_keyframe`: aiortc tells only its own encoder, and a
    pre-encoded clip has none (`client.clip.ClipTrack` jumps to its next keyframe instead).
    """
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        callback()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs (with payload types) negotiated on this m-line, media codecs before RTX.

    Reads `RTCRtpTransceiver._codecs`: aiortc has no `getParameters()`, and the SDP would have
    to be parsed and matched again.
    """
    return list(transceiver._codecs)


def set_negotiated_codecs(
    transceiver: RTCRtpTransceiver, codecs: list[RTCRtpCodecParameters]
) -> None:
    """Between `setRemoteDescription(offer)` and `createAnswer`: answer with these codecs.

    Replaces `RTCRtpTransceiver._codecs` (what aiortc found in common with the offer): the
    uplink answers with only the codec it forwards, with fmtp of its own (Opus FEC and DTX).
    `setCodecPreferences` takes capabilities, so it can neither keep the offer's payload types
    and parameters nor change the fmtp.
    """
    transceiver._codecs = list(codecs)


def negotiated_header_extension_ids(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    """URI -> id of the RTP header extensions negotiated on this m-line.

    Reads `RTCRtpTransceiver._headerExtensions`: aiortc exposes them nowhere else.
    """
    return {ext.uri: ext.id for ext in transceiver._headerExtensions}


# --- 4. the datagram path --------------------------------------------------------------------


def lean_protect(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """`session.protect` without pylibsrtp's per-call checks and allocations.

    Same libsrtp call on the same session (so the same output), with the length cell and the
    buffer allocated once. Packets must fit the buffer, which forwarded RTP always does.
    Reads `pylibsrtp.Session._srtp` (the libsrtp context): pylibsrtp allocates a buffer per
    call and has no in-place variant.
    """
    buffer = ffi.new("char[]", LEAN_BUFFER_SIZE)
    view = ffi.buffer(buffer)
    length = ffi.new("int *")
    context = session._srtp[0]
    srtp_protect = srtp_lib.srtp_protect
    limit = LEAN_BUFFER_SIZE - 64  # room for the authentication tag

    def protect(data: bytes) -> bytes:
        size = len(data)
        if size > limit:
            return session.protect(data)  # also keeps the session (and `context`) alive
        view[0:size] = data
        length[0] = size
        status = srtp_protect(context, buffer, length)
        if status:
            raise pylibsrtp.Error(f"srtp_protect failed ({status})")
        protected: bytes = view[0 : length[0]]
        return protected

    return protect


def _nominated_protocol(dtls: RTCDtlsTransport) -> tuple[StunProtocol, tuple[str, int]] | None:
    """(protocol, remote address) of the nominated RTP candidate pair, if any."""
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        return None
    return pair.protocol, pair.remote_addr


def datagram_sender(dtls: RTCDtlsTransport) -> Callable[[bytes], None] | None:
    """A function that SRTP-protects one RTP packet and writes it to the UDP socket.

    None while the transport is not connected. A datagram the socket cannot take right now is
    dropped (the subscriber NACKs it) rather than queued without bound as asyncio would.
    Through a TURN relay (or any protocol other than a plain `StunProtocol`) it falls back to
    aiortc's own send path (`RTCDtlsTransport._send_rtp`).

    Reads `RTCDtlsTransport._state` and `_tx_srtp`, `RTCIceTransport._connection` (aioice),
    `Connection._nominated` and the asyncio transport's `_sock`: aiortc only sends through a
    coroutine chain per packet, with no way to write a datagram synchronously.
    """
    if dtls._state != State.CONNECTED or dtls._tx_srtp is None:
        return None
    nominated = _nominated_protocol(dtls)
    if nominated is None:
        return None
    protocol, addr = nominated
    protect = lean_protect(dtls._tx_srtp)
    sock = getattr(getattr(protocol, "transport", None), "_sock", None)
    if type(protocol).send_data is StunProtocol.send_data and isinstance(sock, socket.socket):
        sendto = sock.sendto

        def send(data: bytes) -> None:
            try:
                sendto(protect(data), addr)
            except OSError:  # EAGAIN (socket buffer full), unreachable, closed: drop it
                pass

        return send

    def send_slow(data: bytes) -> None:
        _spawn(_send_quietly(dtls, data))

    return send_slow


async def _send_quietly(dtls: RTCDtlsTransport, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        await dtls._send_rtp(data)


def run_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion right here if it never has to wait (aiortc's packet
    handlers almost never do); if it does, a task finishes it once what it awaits is done."""
    try:
        awaited = coro.send(None)
    except StopIteration:
        return
    _spawn(_resume(coro, awaited))


async def _resume(coro: Coroutine[Any, Any, None], awaited: asyncio.Future[Any] | None) -> None:
    while True:
        if awaited is not None:
            await asyncio.wait({awaited})
        else:
            await asyncio.sleep(0)  # a bare `yield` asks for one loop turn
        try:
            awaited = coro.send(None)  # an awaited future's result or error goes into coro
        except StopIteration:
            return


SIOCGSTAMPNS = 0x8907
"""Linux ioctl: the kernel's receive time of the last datagram read from a socket."""
_TIMESPEC = struct.Struct("@qq")


class KernelArrivalClock:
    """When the datagram being handled reached the host, by the kernel's receive timestamp.

    `receive_directly(..., arrival_clock=...)` asks the kernel (`SIOCGSTAMPNS`, one ioctl per
    RTP datagram) for the receive time of each datagram it reads and holds it while the
    packet is handled: transport-cc feedback must report when packets arrived, not when a busy
    event loop (another room's forwarding, a transcoder thread holding the GIL) got to them,
    or the publisher's delay-based estimator reads the relay's lateness as congestion, as
    aiortc's REMB did. `now()` is that time in ns (CLOCK_REALTIME), or the current time
    outside a datagram or where the kernel has none.
    """

    __slots__ = ("current_ns",)

    def __init__(self) -> None:
        self.current_ns = 0

    def now(self) -> int:
        return self.current_ns or time.time_ns()

    def stamp(self, fd: int) -> None:
        try:
            sec, nsec = _TIMESPEC.unpack(fcntl.ioctl(fd, SIOCGSTAMPNS, bytes(16)))
        except OSError:  # ENOENT: no timestamp (the first datagrams after enabling)
            self.current_ns = 0
            return
        self.current_ns = sec * 1_000_000_000 + nsec


def receive_directly(
    dtls: RTCDtlsTransport,
    on_rtcp: Callable[[bytes], None] | None = None,
    arrival_clock: KernelArrivalClock | None = None,
) -> bool:
    """Decrypt and handle SRTP/SRTCP in the socket callback, as each datagram is read.

    aiortc parses every datagram as STUN first (an exception per media packet), queues it,
    and wakes the DTLS task for it: a task hop per packet. Here RTP goes straight to the
    transport's `_handle_rtp_data` (driven by `run_now`), and RTCP to `on_rtcp` when given
    (the relay's downlinks read subscribers' feedback themselves), else to aiortc's
    `_handle_rtcp_data`. With `arrival_clock`, each RTP datagram's kernel receive time is
    held in it while the datagram is handled. STUN and DTLS still take aiortc's path. False
    if not installed (not connected, or not plain UDP).

    Reads `RTCDtlsTransport._state` and `_rx_srtp`, the nominated pair (as `datagram_sender`)
    and replaces the pair's `StunProtocol.datagram_received`: aioice offers no hook between
    the socket and its queue.
    """
    protocol = _claim_receiving_socket(dtls)
    if protocol is None:
        return False
    original = protocol.datagram_received
    unprotect = dtls._rx_srtp.unprotect
    unprotect_rtcp = dtls._rx_srtp.unprotect_rtcp
    handle_rtcp_data = dtls._handle_rtcp_data
    handle_rtcp = on_rtcp or (lambda plain: run_now(handle_rtcp_data(plain)))
    sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
    fd = sock.fileno() if arrival_clock is not None and sock is not None else -1
    stamp = arrival_clock.stamp if arrival_clock is not None and fd >= 0 else None

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) > 1 and 127 < data[0] < 192:
            try:
                if 191 < data[1] < 209:
                    handle_rtcp(unprotect_rtcp(data))
                else:
                    if stamp is not None:
                        stamp(fd)
                    plain = unprotect(data)
                    arrival_ms = int((time.time() + NTP_EPOCH_OFFSET) * 1000)
                    # looked up per packet: an `UplinkRtpTap` may replace it later
                    run_now(dtls._handle_rtp_data(plain, arrival_time_ms=arrival_ms))
            except pylibsrtp.Error:
                pass
            finally:
                if arrival_clock is not None:
                    arrival_clock.current_ns = 0
            return
        original(data, addr)

    protocol.datagram_received = datagram_received  # type: ignore[assignment]
    return True


def _claim_receiving_socket(dtls: RTCDtlsTransport) -> StunProtocol | None:
    """The connected transport's nominated plain-UDP `StunProtocol`, marked as taken, for
    `receive_directly` or `receive_raw` to replace its `datagram_received`; None while not
    connected (`_state`, `_rx_srtp`), through anything but plain UDP, or once taken."""
    if dtls._state != State.CONNECTED or dtls._rx_srtp is None:
        return None
    nominated = _nominated_protocol(dtls)
    protocol = nominated[0] if nominated is not None else None
    if not isinstance(protocol, StunProtocol) or getattr(protocol, "_tongxin_direct", False):
        return None
    protocol._tongxin_direct = True  # type: ignore[attr-defined]
    return protocol


def transport_of(pc: RTCPeerConnection) -> RTCDtlsTransport | None:
    """The (bundled) DTLS transport carrying a peer connection's media (public API only)."""
    for transceiver in pc.getTransceivers():
        return transceiver.sender.transport
    return None


# --- 5. ICE host candidates ------------------------------------------------------------------


def bind_host_candidates(pc: RTCPeerConnection, host: str | None) -> None:
    """Make the connection's not-yet-gathered ICE transports gather host candidates on `host`.

    Call before `setLocalDescription`. STUN/TURN candidates are gathered as usual.

    Reads `RTCIceTransport._connection` and replaces its aioice `Connection.gather_candidates`
    with one that gathers on `[host]`, using `_local_candidates_start`, `_components`,
    `_local_candidates` and `_local_candidates_end` as aioice's own does: aiortc's
    `RTCIceGatherer` has no interface filter, and aioice never gathers on 127.0.0.1.
    """
    if host is None:
        return
    for transceiver in pc.getTransceivers():
        connection: Connection = transceiver.receiver.transport.transport._connection
        if connection._local_candidates_start or getattr(connection, "_tongxin_host", None):
            continue
        connection._tongxin_host = host  # type: ignore[attr-defined]

        async def gather_candidates(connection: Connection = connection) -> None:
            if connection._local_candidates_start:
                return
            connection._local_candidates_start = True
            results = await asyncio.gather(
                *(
                    connection.get_component_candidates(component=c, addresses=[host])
                    for c in connection._components
                )
            )
            for candidates in results:
                connection._local_candidates += candidates
            connection._local_candidates_end = True

        connection.gather_candidates = gather_candidates  # type: ignore[method-assign]


# --- 6. client receivers ---------------------------------------------------------------------


class _KeepTimestamp:
    def map(self, timestamp: int) -> int:
        return timestamp


def tap_client_receiver(
    receiver: RTCRtpReceiver,
    on_frame: Callable[[RTCRtpCodecParameters, JitterFrame, float], None],
) -> EncodedFrameSink:
    """Before `receive()`: complete encoded frames go to `on_frame(codec, frame, arrival)`.

    `frame.timestamp` is the RTP timestamp as sent; `arrival` is when the frame's last
    packet arrived (aiortc's jitter buffer hands a frame over one packet later).

    Replaces `RTCRtpReceiver.__decoder_queue` (a sink, see `install_sink_decoder_threads`)
    and `__timestamp_mapper`, wraps `_handle_rtp_packet` and `receive`, and adds the RTX
    SSRCs to the transport's `_rtp_router.ssrc_table`: aiortc has no public access to encoded
    frames, rebases timestamps, and routes RTX by payload type only.
    """
    arrivals: dict[int, float] = {}
    original_handle = receiver._handle_rtp_packet

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        arrivals[packet.timestamp] = time.time()
        if len(arrivals) > 512:
            for ts in list(arrivals)[:256]:
                del arrivals[ts]
        await original_handle(packet, arrival_time_ms)

    def deliver(codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        on_frame(codec, frame, arrivals.pop(frame.timestamp, time.time()))

    original_receive = receiver.receive

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        await original_receive(parameters)
        # aiortc routes RTX by payload type only, which fails when several video m-lines
        # share it: route the announced RTX SSRCs explicitly.
        router = receiver.transport._rtp_router
        for encoding in parameters.encodings:
            if encoding.rtx is not None:
                router.ssrc_table[encoding.rtx.ssrc] = receiver

    sink = EncodedFrameSink(deliver)
    receiver._RTCRtpReceiver__decoder_queue = sink  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__timestamp_mapper = _KeepTimestamp()  # type: ignore[attr-defined]
    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
    receiver.receive = receive  # type: ignore[method-assign]
    return sink


def receive_raw(
    dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None], on_rtcp: Callable[[bytes], None],
    receive_buffer: int | None = None,
) -> bool:
    """A lean load-test receiver: decrypted RTP and RTCP datagrams go straight to `on_rtp` and
    `on_rtcp` in the socket callback; aiortc's receivers (jitter buffer, NACK generator,
    statistics, decoders) never see them. STUN and DTLS still take aiortc's path. False if
    not installed (not connected, not plain UDP, or already installed). `receive_buffer`:
    the socket's SO_RCVBUF in bytes (the kernel caps it at net.core.rmem_max), so a load
    generator the machine starves for a moment drops nothing.

    The same internals as `receive_directly` (`RTCDtlsTransport._state` and `_rx_srtp`, the
    nominated pair's `StunProtocol.datagram_received`): aiortc has no way to hand over
    decrypted packets without its receive path.
    """
    protocol = _claim_receiving_socket(dtls)
    if protocol is None:
        return False
    if receive_buffer is not None:
        sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    original = protocol.datagram_received
    unprotect = dtls._rx_srtp.unprotect
    unprotect_rtcp = dtls._rx_srtp.unprotect_rtcp

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) > 1 and 127 < data[0] < 192:
            try:
                if 191 < data[1] < 209:
                    on_rtcp(unprotect_rtcp(data))
                else:
                    on_rtp(unprotect(data))
            except pylibsrtp.Error:
                pass
            return
        original(data, addr)

    protocol.datagram_received = datagram_received  # type: ignore[assignment]
    return True


def rtcp_sender(dtls: RTCDtlsTransport) -> Callable[[bytes], None] | None:
    """A function that SRTCP-protects one (compound) RTCP packet and writes it to the UDP
    socket, for a receiver that builds its own reports (`receive_raw`). None while the
    transport is not connected; through anything but plain UDP it falls back to aiortc's
    `RTCDtlsTransport._send_rtp` (which protects RTCP as RTCP).

    Reads what `datagram_sender` reads (`_state`, `_tx_srtp`, the nominated pair, `_sock`):
    aiortc sends RTCP only from its own receivers and senders.
    """
    if dtls._state != State.CONNECTED or dtls._tx_srtp is None:
        return None
    nominated = _nominated_protocol(dtls)
    if nominated is None:
        return None
    protocol, addr = nominated
    protect_rtcp = dtls._tx_srtp.protect_rtcp
    sock = getattr(getattr(protocol, "transport", None), "_sock", None)
    if type(protocol).send_data is StunProtocol.send_data and isinstance(sock, socket.socket):
        sendto = sock.sendto

        def send(data: bytes) -> None:
            try:
                sendto(protect_rtcp(data), addr)
            except (OSError, pylibsrtp.Error):
                pass

        return send

    def send_slow(data: bytes) -> None:
        _spawn(_send_quietly(dtls, data))

    return send_slow


# --- 7. codecs -------------------------------------------------------------------------------


def h264_nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B H.264 access unit, split exactly as aiortc's sender does.

    Calls `H264Encoder._split_bitstream` (what `H264Encoder.pack` packetizes an `av.Packet`
    with): a receiver reassembles those units, so naming a sent frame by the bytes received
    needs the same split; aiortc has no public splitter.
    """
    return H264Encoder._split_bitstream(data)
