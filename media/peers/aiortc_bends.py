"""The one place where Tongxin bends aiortc 1.16 / aioice 0.13, and why.

aiortc decodes every received track in a thread and encodes every sent track per sender. A
relay must do neither, and its hot path must stay a few operations per packet. What changes:

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
   `tongxin bench weaklink`). A publisher is capped only by `media.adapt.publisher_cap`'s REMB, and
   otherwise by its own loss-based control.
3. Relay senders: they get a `HeldTrack` whose `recv()` never returns, so aiortc's encoder
   loop never encodes; their sender reports are filled from the forwarder's counters (aiortc
   would report zeros) and the RTCP a subscriber sends about them goes to the forwarder.
4. The datagram path of a downlink: `datagram_sender` binds SRTP protect and the UDP
   socket's `sendto` once, instead of aiortc's per-packet coroutine chain (`_send_rtp` ->
   `Connection.send` -> `StunProtocol.send_data`); `receive_directly` decrypts incoming
   SRTP/SRTCP in the socket callback, instead of aioice's queue and a DTLS task wake-up per
   packet (and hands a downlink's RTCP to the forwarder without aiortc's RTCP objects).
5. ICE host candidates: aioice gathers on every interface except 127.0.0.1;
   `bind_host_candidates` gathers on one chosen address (loopback in tests).
6. Client receivers: aiortc maps RTP timestamps to start at zero; `tap_client_receiver` keeps
   them as sent, records when each timestamp's last packet arrived (for latency), and routes
   RTX by SSRC (aiortc routes it by payload type, ambiguous with several video m-lines).

tests/media/peers/test_aiortc_bends.py fails if an aiortc upgrade breaks any of these.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from types import SimpleNamespace
from typing import Any

import aiortc.rtcrtpreceiver as aiortc_receiver_module
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket, RtpPacket, unwrap_rtx
from pylibsrtp._binding import ffi
from pylibsrtp._binding import lib as srtp_lib

LEAN_BUFFER_SIZE = 2048
NTP_EPOCH_OFFSET = 2208988800  # aiortc's millisecond clock counts from 1900

EncodedFrameCallback = Callable[[RTCRtpCodecParameters, JitterFrame], None]
PacketCallback = Callable[[RtpPacket], None]


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


def _decoder_thread(*, target: Callable[..., None], name: str, args: tuple[Any, ...]) -> Any:
    """`threading.Thread` as rtcrtpreceiver calls it: no thread for a sink's receiver."""
    queue = args[1]
    if isinstance(queue, EncodedFrameSink):
        return queue
    return threading.Thread(target=target, name=name, args=args)


# rtcrtpreceiver uses `threading.Thread` for the decoder and `threading.Event` for its errors.
aiortc_receiver_module.threading = SimpleNamespace(  # type: ignore[assignment]
    Thread=_decoder_thread, Event=threading.Event
)


def has_decoder_thread(receiver: RTCRtpReceiver) -> bool:
    """Whether the receiver runs a real decoder thread."""
    thread = receiver._RTCRtpReceiver__decoder_thread  # type: ignore[attr-defined]
    return isinstance(thread, threading.Thread) and thread.is_alive()


class _KeepNothingJitterBuffer:
    """A jitter buffer for the relay's receivers: the forwarder already has the packets."""

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        return False, None


def tap_relay_receiver(receiver: RTCRtpReceiver) -> EncodedFrameSink:
    """Before `receive()`: no decoder thread, no frame reassembly and no REMB of its own."""
    sink = EncodedFrameSink()
    receiver._RTCRtpReceiver__decoder_queue = sink  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__jitter_buffer = _KeepNothingJitterBuffer()  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
    return sink


# --- 2. decrypted RTP on the uplink ----------------------------------------------------------


class UplinkRtpTap:
    """Replaces one DTLS transport's RTP handling: parse once, forward, then let aiortc count."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._routes: dict[RTCRtpReceiver, PacketCallback] = {}
        # RTX SSRC -> (receiver, primary SSRC, {rtx payload type: original payload type})
        self._rtx: dict[int, tuple[RTCRtpReceiver, int, dict[int, int]]] = {}
        dtls._handle_rtp_data = self._handle_rtp_data  # type: ignore[method-assign]

    @classmethod
    def on(cls, dtls: RTCDtlsTransport) -> UplinkRtpTap:
        """The tap of this transport, installed on first use."""
        tap = getattr(dtls, "_tongxin_tap", None)
        if tap is None:
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
            apts = {
                c.payloadType: int(c.parameters["apt"])
                for c in codecs
                if is_rtx(c) and "apt" in c.parameters
            }
            self._rtx[rtx_ssrc] = (receiver, primary_ssrc, apts)

    def unroute(self, receiver: RTCRtpReceiver) -> None:
        self._routes.pop(receiver, None)
        for ssrc in [s for s, (r, _, _) in self._rtx.items() if r is receiver]:
            del self._rtx[ssrc]

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        try:
            packet = RtpPacket.parse(data, self._dtls._rtp_header_extensions_map)
        except ValueError:
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
            receiver = routed  # type: ignore[assignment]
        on_packet = self._routes.get(receiver)
        if on_packet is not None:
            on_packet(packet)
        await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)


# --- 3. relay senders ------------------------------------------------------------------------


class HeldTrack(MediaStreamTrack):
    """A track whose `recv()` never returns: the sender's encoder loop waits forever."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Future()


SenderReportFiller = Callable[[RtcpSrPacket], None]
RtcpCallback = Callable[[AnyRtcpPacket], None]


def tap_relay_sender(
    sender: RTCRtpSender, fill_report: SenderReportFiller, on_rtcp: RtcpCallback
) -> None:
    """Fill the sender's reports from the forwarder; give the forwarder the subscriber's RTCP."""
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


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` when the remote side asks this sender for a keyframe (PLI/FIR)."""
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        callback()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


# --- 4. the datagram path --------------------------------------------------------------------


def lean_protect(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """`session.protect` without pylibsrtp's per-call checks and allocations.

    Same libsrtp call on the same session (so the same output), with the length cell and the
    buffer allocated once. Packets must fit the buffer, which forwarded RTP always does.
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
            return session.protect(data)
        view[0:size] = data
        length[0] = size
        status = srtp_protect(context, buffer, length)
        if status:
            raise pylibsrtp.Error(f"srtp_protect failed ({status})")
        return view[0 : length[0]]

    protect.session = session  # type: ignore[attr-defined]  # keeps the session alive
    return protect


def datagram_sender(dtls: RTCDtlsTransport) -> Callable[[bytes], None] | None:
    """A function that SRTP-protects one RTP packet and writes it to the UDP socket.

    None while the transport is not connected. A datagram the socket cannot take right now is
    dropped (the subscriber NACKs it) rather than queued without bound as asyncio would.
    Through a TURN relay (or any protocol other than a plain `StunProtocol`) it falls back to
    aiortc's own send path.
    """
    if dtls._state != State.CONNECTED or dtls._tx_srtp is None:
        return None
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        return None
    protect = lean_protect(dtls._tx_srtp)
    protocol = pair.protocol
    sock = getattr(getattr(protocol, "transport", None), "_sock", None)
    if type(protocol).send_data is StunProtocol.send_data and isinstance(sock, socket.socket):
        sendto = sock.sendto
        addr = pair.remote_addr

        def send(data: bytes) -> None:
            try:
                sendto(protect(data), addr)
            except OSError:  # EAGAIN (socket buffer full), unreachable, closed: drop it
                pass

        return send

    def send_slow(data: bytes) -> None:
        task = asyncio.ensure_future(_send_quietly(dtls, data))
        _pending_sends.add(task)
        task.add_done_callback(_pending_sends.discard)

    return send_slow


def run_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion right here if it never has to wait (aiortc's packet
    handlers almost never do); if it does, a task finishes it once what it awaits is done."""
    try:
        awaited = coro.send(None)
    except StopIteration:
        return
    task = asyncio.ensure_future(_resume(coro, awaited))
    _pending_sends.add(task)
    task.add_done_callback(_pending_sends.discard)


async def _resume(coro: Coroutine[Any, Any, None], awaited: Any) -> None:
    while True:
        if awaited is not None:
            await asyncio.wait({awaited})
        else:
            await asyncio.sleep(0)  # a bare `yield` asks for one loop turn
        try:
            awaited = coro.send(None)  # an awaited future's result or error goes into coro
        except StopIteration:
            return


def receive_directly(
    dtls: RTCDtlsTransport, on_rtcp: Callable[[bytes], None] | None = None
) -> bool:
    """Decrypt and handle SRTP/SRTCP in the socket callback, as each datagram is read.

    aiortc parses every datagram as STUN first (an exception per media packet), queues it,
    and wakes the DTLS task for it: a task hop per packet. Here RTP goes straight to the
    transport's `_handle_rtp_data` (driven by `run_now`), and RTCP to `on_rtcp` when given
    (the relay's downlinks read subscribers' feedback themselves), else to aiortc. STUN and
    DTLS still take aiortc's path. False if not installed (not connected, or not plain UDP).
    """
    if dtls._state != State.CONNECTED or dtls._rx_srtp is None:
        return False
    pair = dtls.transport._connection._nominated.get(1)
    protocol = pair.protocol if pair is not None else None
    if not isinstance(protocol, StunProtocol) or getattr(protocol, "_tongxin_direct", False):
        return False
    protocol._tongxin_direct = True  # type: ignore[attr-defined]
    original = protocol.datagram_received
    unprotect = dtls._rx_srtp.unprotect
    unprotect_rtcp = dtls._rx_srtp.unprotect_rtcp
    handle_rtcp = on_rtcp or (lambda plain: run_now(dtls._handle_rtcp_data(plain)))

    def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
        if len(data) > 1 and 127 < data[0] < 192:  # type: ignore[operator]
            try:
                if 191 < data[1] < 209:  # type: ignore[operator]
                    handle_rtcp(unprotect_rtcp(data))  # type: ignore[arg-type]
                else:
                    plain = unprotect(data)  # type: ignore[arg-type]
                    arrival_ms = int((time.time() + NTP_EPOCH_OFFSET) * 1000)
                    run_now(dtls._handle_rtp_data(plain, arrival_time_ms=arrival_ms))
            except pylibsrtp.Error:
                pass
            return
        original(data, addr)

    protocol.datagram_received = datagram_received  # type: ignore[method-assign]
    return True


_pending_sends: set[asyncio.Future[None]] = set()


async def _send_quietly(dtls: RTCDtlsTransport, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        await dtls._send_rtp(data)


def transport_of(pc: RTCPeerConnection) -> RTCDtlsTransport | None:
    """The (bundled) DTLS transport carrying a peer connection's media."""
    for transceiver in pc.getTransceivers():
        return transceiver.sender.transport
    return None


# --- 5. ICE host candidates ------------------------------------------------------------------


def bind_host_candidates(pc: RTCPeerConnection, host: str | None) -> None:
    """Make the connection's not-yet-gathered ICE transports gather host candidates on `host`.

    Call before `setLocalDescription`. STUN/TURN candidates are gathered as usual.
    """
    if host is None:
        return
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        if connection._local_candidates_start or getattr(connection, "_tongxin_host", None):
            continue
        connection._tongxin_host = host

        async def gather_candidates(connection: Any = connection) -> None:
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

        connection.gather_candidates = gather_candidates


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
