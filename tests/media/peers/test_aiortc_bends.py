"""Each bend of media/peers/aiortc_bends.py still holds against real aiortc objects (these fail
if an aiortc/aioice/pylibsrtp upgrade breaks one), no other module touches the private names
the bends cover, and the relay neither decodes nor encodes.

A test per bend: `test_the_internals_each_bend_relies_on_exist` names, per bend, what it reads
or replaces on real objects (a rename shows up there first, naming the bend); the behaviour
tests then run the bends over real peer connections on loopback.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import aioice.ice
import aiortc.rtcrtpreceiver as aiortc_receiver_module
import aiortc.rtp
import pytest
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    AnyRtcpPacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from pylibsrtp import Policy, Session

from client.clip import ClipTrack, frame_digest, load_clip, normalized_frame
from client.peer import FrameLog, _preferences
from media.peers import aiortc_bends
from media.peers.aiortc_bends import (
    BENT_PRIVATE_NAMES,
    HeldTrack,
    KernelArrivalClock,
    UplinkRtpTap,
    add_header_extensions,
    bind_host_candidates,
    datagram_sender,
    h264_nal_units,
    has_decoder_thread,
    hold_remb_while,
    install_sink_decoder_threads,
    lean_protect,
    nack_per_ssrc,
    negotiated_codecs,
    negotiated_header_extension_ids,
    on_keyframe_request,
    receive_directly,
    send_pli,
    send_remb,
    send_rtcp_bytes,
    send_sender_report,
    sender_ssrcs,
    set_negotiated_codecs,
    stop_remote_bitrate_estimate,
    tap_client_receiver,
    tap_relay_receiver,
    tap_relay_sender,
    transport_of,
)
from media.peers.codec_match import forwarded_codecs
from media.peers.config import PeerConfig
from media.rtp.twcc import TRANSPORT_CC_URI, TransportFeedback, encode_feedback
from tests.media.relay_harness import clip_tracks, running_relay, wait_until

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("broker", "signaling", "media", "web", "client", "bench")
BENDS = ROOT / "media" / "peers" / "aiortc_bends.py"
BENT_LIBRARIES = ("aiortc", "aioice", "pylibsrtp")


# --- what each bend relies on ----------------------------------------------------------------


@dataclass
class Objects:
    """Real aiortc/aioice/pylibsrtp objects (not connected) to look for the bent names on."""

    receiver: RTCRtpReceiver
    sender: RTCRtpSender
    transceiver: RTCRtpTransceiver
    dtls: RTCDtlsTransport
    connection: aioice.ice.Connection
    session: Session


def has(obj: object, *names: str) -> list[str]:
    """The names `obj` lacks (as instance or class attributes)."""
    return [name for name in names if not hasattr(obj, name)]


def calls(function: Callable[..., object], *names: str) -> list[str]:
    """The names `function`'s code does not use (it must still call/read them)."""
    code = inspect.getsource(function)
    return [name for name in names if name not in code]


RECEIVER_PRIVATES = ("_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__decoder_thread")

# bend -> (what it checks on the objects, the private names that check covers)
BEND_INTERNALS: dict[str, tuple[Callable[[Objects], list[str]], frozenset[str]]] = {
    "install_sink_decoder_threads": (
        lambda o: has(o.receiver, "_RTCRtpReceiver__decoder_queue")
        + calls(RTCRtpReceiver.receive, "threading.Thread(", "target=", "name=", "args=")
        + calls(RTCRtpReceiver.__init__, "threading.Event()"),
        frozenset({"_RTCRtpReceiver__decoder_queue"}),
    ),
    "has_decoder_thread": (
        lambda o: has(o.receiver, "_RTCRtpReceiver__decoder_thread"),
        frozenset({"_RTCRtpReceiver__decoder_thread"}),
    ),
    "stop_remote_bitrate_estimate": (
        lambda o: has(o.receiver, "_RTCRtpReceiver__remote_bitrate_estimator")
        + calls(RTCRtpReceiver._handle_rtp_packet, "self.__remote_bitrate_estimator is not None"),
        frozenset({"_RTCRtpReceiver__remote_bitrate_estimator"}),
    ),
    "hold_remb_while": (
        lambda o: has(o.receiver, "_send_rtcp", "_RTCRtpReceiver__remote_bitrate_estimator")
        + calls(RTCRtpReceiver._handle_rtp_packet, "await self._send_rtcp(rtcp_packet)"),
        frozenset({"_send_rtcp", "_RTCRtpReceiver__remote_bitrate_estimator"}),
    ),
    "tap_relay_receiver": (
        lambda o: has(o.receiver, *RECEIVER_PRIVATES, "_RTCRtpReceiver__jitter_buffer")
        + calls(RTCRtpReceiver._handle_rtp_packet, "self.__jitter_buffer.add(packet)"),
        frozenset({"_RTCRtpReceiver__jitter_buffer"}),
    ),
    "UplinkRtpTap": (
        lambda o: has(o.dtls, "_handle_rtp_data", "_rtp_header_extensions_map", "_rtp_router")
        + has(o.dtls._rtp_router, "route_rtp", "ssrc_table")
        + has(o.receiver, "_handle_rtp_packet"),
        frozenset({"_handle_rtp_data", "_rtp_header_extensions_map", "_rtp_router",
                   "_handle_rtp_packet"}),
    ),
    "nack_per_ssrc": (
        lambda o: has(o.receiver, "_RTCRtpReceiver__nack_generator")
        + calls(RTCRtpReceiver._handle_rtp_packet, "self.__nack_generator.add(packet)",
                "sorted(self.__nack_generator.missing)"),
        frozenset({"_RTCRtpReceiver__nack_generator"}),
    ),
    "add_header_extensions": (
        lambda o: has(o.dtls._rtp_header_extensions_map, "configure")
        + calls(aiortc.rtp.HeaderExtensionsMap.configure, "rtp-stream-id",
                "repaired-rtp-stream-id", TRANSPORT_CC_URI)
        + has(aiortc.rtp.HeaderExtensions(), "transport_sequence_number"),
        frozenset({"_rtp_header_extensions_map"}),
    ),
    "send_pli": (
        lambda o: has(o.receiver, "_send_rtcp_pli"),
        frozenset({"_send_rtcp_pli"}),
    ),
    "send_remb": (
        lambda o: has(o.receiver, "_RTCRtpReceiver__rtcp_ssrc", "_send_rtcp"),
        frozenset({"_RTCRtpReceiver__rtcp_ssrc", "_send_rtcp"}),
    ),
    "send_rtcp_bytes": (
        lambda o: has(o.receiver, "_RTCRtpReceiver__rtcp_ssrc", "transport")
        + has(o.dtls, "_send_rtp"),
        frozenset({"_RTCRtpReceiver__rtcp_ssrc", "_send_rtp"}),
    ),
    "sender_ssrcs": (
        lambda o: has(o.sender, "_ssrc", "_rtx_ssrc"),
        frozenset({"_ssrc", "_rtx_ssrc"}),
    ),
    "tap_relay_sender": (
        lambda o: has(o.sender, "_send_rtcp", "_handle_rtcp_packet", "_ssrc")
        + calls(RTCRtpSender._run_rtcp, "await self._send_rtcp(packets)"),
        frozenset({"_send_rtcp", "_handle_rtcp_packet"}),
    ),
    "send_sender_report": (
        lambda o: has(o.sender, "_send_rtcp", "_ssrc"),
        frozenset({"_send_rtcp"}),
    ),
    "on_keyframe_request": (
        lambda o: has(o.sender, "_send_keyframe")
        + calls(RTCRtpSender._handle_rtcp_packet, "self._send_keyframe()"),
        frozenset({"_send_keyframe"}),
    ),
    "negotiated_codecs / set_negotiated_codecs": (
        lambda o: has(o.transceiver, "_codecs")
        + calls(RTCPeerConnection.setRemoteDescription, "transceiver._codecs = common"),
        frozenset({"_codecs"}),
    ),
    "negotiated_header_extension_ids": (
        lambda o: has(o.transceiver, "_headerExtensions"),
        frozenset({"_headerExtensions"}),
    ),
    "lean_protect": (
        lambda o: has(o.session, "_srtp"),
        frozenset({"_srtp"}),
    ),
    "datagram_sender": (
        lambda o: has(o.dtls, "_state", "_tx_srtp", "_send_rtp", "transport")
        + has(o.dtls.transport, "_connection")
        + has(o.connection, "_nominated")
        + calls(aioice.ice.StunProtocol.send_data, "self.transport.sendto("),
        frozenset({"_tx_srtp", "_send_rtp", "_connection", "_nominated", "_sock"}),
    ),
    "receive_directly": (
        lambda o: has(o.dtls, "_state", "_rx_srtp", "_handle_rtp_data", "_handle_rtcp_data")
        + has(aioice.ice.StunProtocol, "datagram_received"),
        frozenset({"_rx_srtp", "_handle_rtcp_data"}),
    ),
    "receive_raw": (
        lambda o: has(o.dtls, "_state", "_rx_srtp", "transport")
        + has(o.dtls.transport, "_connection")
        + has(o.connection, "_nominated")
        + has(aioice.ice.StunProtocol, "datagram_received"),
        frozenset({"_rx_srtp", "_connection", "_nominated"}),
    ),
    "rtcp_sender": (
        lambda o: has(o.dtls, "_state", "_tx_srtp", "_send_rtp", "transport")
        + has(o.session, "protect_rtcp")
        + calls(aioice.ice.StunProtocol.send_data, "self.transport.sendto("),
        frozenset({"_tx_srtp", "_send_rtp", "_sock"}),
    ),
    "bind_host_candidates": (
        lambda o: has(o.connection, "_local_candidates_start", "_local_candidates",
                      "_local_candidates_end", "_components", "gather_candidates",
                      "get_component_candidates"),
        frozenset({"_local_candidates_start", "_local_candidates", "_local_candidates_end",
                   "_components"}),
    ),
    "tap_client_receiver": (
        lambda o: has(o.receiver, "_RTCRtpReceiver__decoder_queue",
                      "_RTCRtpReceiver__timestamp_mapper", "_handle_rtp_packet", "receive")
        + has(o.receiver._RTCRtpReceiver__timestamp_mapper, "map")  # type: ignore[attr-defined]
        + has(o.dtls._rtp_router, "ssrc_table"),
        frozenset({"_RTCRtpReceiver__timestamp_mapper"}),
    ),
    "h264_nal_units": (
        lambda o: has(H264Encoder, "_split_bitstream")
        + calls(H264Encoder.pack, "self._split_bitstream("),
        frozenset({"_split_bitstream"}),
    ),
}


@pytest.fixture
async def objects() -> Objects:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="sendrecv")
    key = os.urandom(30)
    session = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    dtls = transceiver.sender.transport
    found = Objects(
        transceiver.receiver, transceiver.sender, transceiver, dtls,
        dtls.transport._connection, session,
    )
    await pc.close()
    return found


@pytest.mark.parametrize("bend", sorted(BEND_INTERNALS))
def test_the_internals_each_bend_relies_on_exist(bend: str, objects: Objects) -> None:
    check, _ = BEND_INTERNALS[bend]
    missing = check(objects)
    assert missing == [], f"aiortc changed under {bend}: {missing} no longer there"


def test_every_bent_private_name_is_checked_by_a_bend() -> None:
    covered = frozenset().union(*(names for _, names in BEND_INTERNALS.values()))
    assert covered == BENT_PRIVATE_NAMES


# --- no one else touches them ----------------------------------------------------------------


def private_uses(source: str, where: str) -> list[str]:
    """Where a module reaches into aiortc/aioice/pylibsrtp: a bent private name on anything
    but `self`/`cls`, a private (or name-mangled) attribute through a name imported from those
    libraries, such a name in getattr/setattr/hasattr, or an assignment to an attribute of an
    imported library module or class (a monkeypatch)."""
    tree = ast.parse(source, where)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BENT_LIBRARIES:
                    imported.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in BENT_LIBRARIES:
                imported.update(alias.asname or alias.name for alias in node.names)

    def private(name: str) -> bool:
        return name in BENT_PRIVATE_NAMES or (
            name.startswith("_") and "__" in name[1:] and not name.endswith("__")
        )

    found: list[str] = []
    for node in ast.walk(tree):
        at = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute):
            base = node.value
            base_name = base.id if isinstance(base, ast.Name) else None
            if base_name in ("self", "cls"):
                continue
            if private(node.attr):
                found.append(f"{at} .{node.attr}")
            elif base_name in imported and node.attr.startswith("_") and not (
                node.attr.startswith("__") and node.attr.endswith("__")
            ):
                found.append(f"{at} {base_name}.{node.attr}")
            elif base_name in imported and isinstance(node.ctx, ast.Store):
                found.append(f"{at} {base_name}.{node.attr} = ...")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and private(node.args[1].value)
        ):
            found.append(f"{at} {node.func.id}(…, {node.args[1].value!r})")
    return found


def test_only_aiortc_bends_uses_aiortc_internals() -> None:
    found = [
        use
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != BENDS and "vendor" not in path.parts
        for use in private_uses(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == [], "aiortc internals outside media/peers/aiortc_bends.py:\n" + "\n".join(
        found
    )


def test_the_scan_finds_what_it_looks_for() -> None:
    sample = (
        "import aiortc.rtcrtpreceiver as m\n"
        "from aiortc.codecs.h264 import H264Encoder\n"
        "def f(self, sender, receiver, t):\n"
        "    a = sender._ssrc\n"
        "    b = getattr(receiver, '_RTCRtpReceiver__rtcp_ssrc', None)\n"
        "    c = H264Encoder._other_private\n"
        "    m.threading = None\n"
        "    d = t._codecs + self._codecs\n"
    )
    found = {use.split(" ", 1)[1] for use in private_uses(sample, "probe.py")}
    assert found == {
        "._ssrc",
        "getattr(…, '_RTCRtpReceiver__rtcp_ssrc')",
        "H264Encoder._other_private",
        "m.threading = ...",
        "._codecs",
    }


# --- 1. decoder threads ----------------------------------------------------------------------


@pytest.mark.parametrize("tapped", [True, False], ids=["sink", "stock"])
async def test_only_a_sink_receiver_goes_without_a_decoder_thread(tapped: bool) -> None:
    install_sink_decoder_threads()  # idempotent: already done at import
    assert aiortc_receiver_module.threading.Thread is aiortc_bends._decoder_thread  # type: ignore[attr-defined]
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        sink = tap_relay_receiver(receiver) if tapped else None
        if sink is not None:
            assert tap_relay_receiver(receiver) is sink, "tapping twice keeps the sink"
        receiver._track = RemoteStreamTrack(kind="video")
        params = RTCRtpReceiveParameters(
            codecs=[RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)]
        )
        await receiver.receive(params)
        assert has_decoder_thread(receiver) is not tapped
        if sink is not None:
            assert receiver._RTCRtpReceiver__decoder_thread is sink  # type: ignore[attr-defined]
        await receiver.stop()
        assert sink is None or sink.ended
    finally:
        await pc.close()


async def test_stop_remote_bitrate_estimate(objects: Objects) -> None:
    receiver = objects.receiver
    assert receiver._RTCRtpReceiver__remote_bitrate_estimator is not None  # type: ignore[attr-defined]
    stop_remote_bitrate_estimate(receiver)
    assert receiver._RTCRtpReceiver__remote_bitrate_estimator is None  # type: ignore[attr-defined]


async def test_a_held_receiver_sends_no_remb_then_estimates_afresh(objects: Objects) -> None:
    receiver = objects.receiver
    sent: list[object] = []

    async def record(packet: object) -> None:
        sent.append(packet)

    receiver._send_rtcp = record  # type: ignore[method-assign]
    stalled = [True]
    hold_remb_while(receiver, lambda: stalled[0])
    remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(1000, [2]))
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=2)
    before = receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
    await receiver._send_rtcp(remb)
    await receiver._send_rtcp(pli)
    assert sent == [pli], "held: no REMB, other RTCP as usual"
    stalled[0] = False
    await receiver._send_rtcp(remb)  # the first after the hold: dropped, estimator replaced
    assert receiver._RTCRtpReceiver__remote_bitrate_estimator is not before  # type: ignore[attr-defined]
    await receiver._send_rtcp(remb)
    assert sent == [pli, remb]


async def test_a_sender_report_sent_now_is_filled_by_the_tap(objects: Objects) -> None:
    """`send_sender_report` goes through the tapped `_send_rtcp`: the forwarder fills it (and
    remembers it for RTT), and a sender not connected drops it as aiortc does."""
    sender = objects.sender
    filled: list[RtcpSrPacket] = []
    tap_relay_sender(sender, filled.append, lambda packet: None)
    send_sender_report(sender)
    for _ in range(3):
        await asyncio.sleep(0)
    assert [report.ssrc for report in filled] == [sender_ssrcs(sender)[0]]


async def test_send_remb_needs_an_rtcp_ssrc(objects: Objects) -> None:
    """A peer connection gives its receivers the RTCP SSRC of their transceiver's sender; a
    receiver without one sends nothing."""
    assert objects.receiver._RTCRtpReceiver__rtcp_ssrc == sender_ssrcs(objects.sender)[0]  # type: ignore[attr-defined]
    bare = RTCRtpReceiver("video", objects.dtls)
    assert send_remb(bare, 100_000, [1]) is False
    assert send_rtcp_bytes(bare, lambda ssrc: [b"never built"]) is False


# --- 7. codecs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "units"),
    [
        (b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x68cd", [b"\x67ab", b"\x68cd"]),
        (b"\x00\x00\x01\x65" + b"x" * 40, [b"\x65" + b"x" * 40]),
        (b"no start code", []),
    ],
)
def test_h264_nal_units_split_as_aiortc_packetizes(stream: bytes, units: list[bytes]) -> None:
    assert list(h264_nal_units(stream)) == units


def test_lean_protect_matches_pylibsrtp_and_decrypts() -> None:
    key = os.urandom(44)

    def session(direction: int) -> Session:
        policy = Policy(
            key=key, ssrc_type=direction, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM
        )
        policy.allow_repeat_tx = True
        policy.window_size = 1024
        return Session(policy)

    reference, lean = session(Policy.SSRC_ANY_OUTBOUND), session(Policy.SSRC_ANY_OUTBOUND)
    receiver = session(Policy.SSRC_ANY_INBOUND)
    protect = lean_protect(lean)
    for seq in range(65530, 65540):
        packet = struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * 3000, 1234) + os.urandom(1200)
        protected = protect(packet)
        assert protected == reference.protect(packet)
        assert receiver.unprotect(protected) == packet


async def test_host_candidates_are_gathered_on_the_chosen_address_only() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(HeldTrack("audio"), direction="sendonly")
        bind_host_candidates(pc, "127.0.0.1")
        bind_host_candidates(pc, "127.0.0.1")  # a second call changes nothing
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line.split()[4] for line in pc.localDescription.sdp.splitlines()
            if line.startswith("a=candidate:")
        ]
        assert candidates and set(candidates) == {"127.0.0.1"}
    finally:
        await pc.close()


# --- over loopback ---------------------------------------------------------------------------


async def both_connected(*pcs: RTCPeerConnection) -> None:
    await wait_until(
        lambda: all(pc.connectionState == "connected" for pc in pcs), 20, "both connected"
    )


def extmap_ids(sdp: str) -> dict[str, int]:
    """URI -> id of the first m-line's `a=extmap` lines."""
    ids: dict[str, int] = {}
    for line in sdp.splitlines():
        if line.startswith("a=extmap:"):
            number, uri = line[len("a=extmap:"):].split()[:2]
            ids.setdefault(uri, int(number.split("/")[0]))
    return ids


@pytest.mark.timeout(60)
async def test_a_relay_sender_feeds_a_relay_receiver_over_loopback() -> None:
    """`down` plays a relay downlink (held sender, datagram path), `up` a relay uplink (tapped
    receiver): what one writes, the other's tap gets; feedback goes back through the bends."""
    down, up = PeerConfig().new_peer_connection(), PeerConfig().new_peer_connection()
    try:
        transceiver = down.addTransceiver(HeldTrack("video"), direction="sendonly")
        sender = transceiver.sender
        ssrc, rtx_ssrc = sender_ssrcs(sender)
        reports: list[RtcpSrPacket] = []
        feedback: list[AnyRtcpPacket] = []
        keyframe_requests: list[float] = []

        def fill_report(report: RtcpSrPacket) -> None:
            report.sender_info.packet_count = 4242
            reports.append(report)

        tap_relay_sender(sender, fill_report, feedback.append)
        on_keyframe_request(sender, lambda: keyframe_requests.append(time.time()))
        bind_host_candidates(down, "127.0.0.1")
        await down.setLocalDescription(await down.createOffer())
        assert f"a=ssrc-group:FID {ssrc} {rtx_ssrc}" in down.localDescription.sdp

        await up.setRemoteDescription(down.localDescription)
        up_transceiver = up.getTransceivers()[0]
        receiver = up_transceiver.receiver
        sink = tap_relay_receiver(receiver)
        offered = negotiated_codecs(up_transceiver)
        assert len(offered) > 2, "VP8 and H.264, each with RTX"
        codecs = forwarded_codecs(offered)
        set_negotiated_codecs(up_transceiver, codecs)
        assert negotiated_codecs(up_transceiver) == codecs
        dtls_up = transport_of(up)
        assert dtls_up is not None
        tap = UplinkRtpTap.on(dtls_up)
        assert UplinkRtpTap.on(dtls_up) is tap
        packets: list[RtpPacket] = []
        tap.route(receiver, packets.append, ssrc, rtx_ssrc, codecs)
        answer = await up.createAnswer()
        bind_host_candidates(up, "127.0.0.1")
        await up.setLocalDescription(answer)
        rtpmaps = [ln for ln in up.localDescription.sdp.splitlines() if ln.startswith("a=rtpmap:")]
        assert len(rtpmaps) == 2, f"answered with the forwarded codec and its RTX only: {rtpmaps}"
        await down.setRemoteDescription(up.localDescription)
        await both_connected(down, up)

        negotiated = negotiated_codecs(transceiver)
        assert [c.mimeType for c in negotiated] == ["video/VP8", "video/rtx"]
        assert negotiated_header_extension_ids(transceiver) == extmap_ids(
            up.localDescription.sdp
        )

        dtls_down = transport_of(down)
        assert dtls_down is not None
        send = datagram_sender(dtls_down)
        assert send is not None and send.__name__ == "send", "straight to the UDP socket"
        assert receive_directly(dtls_down)  # RTCP still goes to aiortc (tap_relay_sender)
        assert not receive_directly(dtls_down), "installed once"
        raw_rtcp: list[bytes] = []
        assert receive_directly(dtls_up, raw_rtcp.append)

        pt, rtx_pt = negotiated[0].payloadType, negotiated[1].payloadType
        assert pt is not None and rtx_pt is not None
        sent = [
            RtpPacket(payload_type=pt, sequence_number=100 + i, timestamp=3000 * i, ssrc=ssrc,
                      payload=b"\x10" + bytes([i]) * 60)
            for i in range(10)
        ]
        for packet in sent:
            send(packet.serialize())
        # the RTX copy of packet 3, as a retransmission
        rtx = RtpPacket(payload_type=rtx_pt, sequence_number=7, timestamp=sent[3].timestamp,
                        ssrc=rtx_ssrc, payload=struct.pack("!H", 103) + sent[3].payload)
        send(rtx.serialize())
        await wait_until(lambda: len(packets) >= 11, 10, "packets at the uplink's tap")
        assert [p.sequence_number for p in packets[:11]] == [*range(100, 110), 103]
        assert all(p.ssrc == ssrc and p.payload_type == pt for p in packets[:11])
        assert packets[10].payload == sent[3].payload, "RTX unwrapped by the tap"
        assert not has_decoder_thread(receiver) and not sink.ended

        assert send_remb(receiver, 300_000, [ssrc])
        send_pli(receiver, ssrc)

        def remb_and_pli() -> bool:
            psfb = [p for p in feedback if isinstance(p, RtcpPsfbPacket)]
            return any(p.fmt == RTCP_PSFB_PLI and p.media_ssrc == ssrc for p in psfb) and any(
                p.fmt == RTCP_PSFB_APP and unpack_remb_fci(p.fci) == (300_000, [ssrc])
                for p in psfb
            )

        await wait_until(remb_and_pli, 10, "REMB and PLI at the relay sender")

        twcc = TransportFeedback(0, ssrc, 5, 1, 0, (1, 0, 1), (10, 8))
        assert send_rtcp_bytes(
            receiver, lambda rtcp_ssrc: [encode_feedback(replace(twcc, sender_ssrc=rtcp_ssrc))]
        )
        await wait_until(
            lambda: any(isinstance(p, RtcpRtpfbPacket) and p.fmt == 15 for p in feedback), 10,
            "transport-cc feedback at the relay sender",
        )
        assert keyframe_requests, "the PLI reached on_keyframe_request"
        await wait_until(lambda: bool(reports) and bool(raw_rtcp), 10, "a sender report")
        received = [
            p for data in raw_rtcp for p in RtcpPacket.parse(data) if isinstance(p, RtcpSrPacket)
        ]
        assert received and received[0].ssrc == ssrc
        assert received[0].sender_info.packet_count == 4242, "filled from the forwarder"
    finally:
        await down.close()
        await up.close()


async def test_the_tap_demultiplexes_simulcast_layers_by_mid_and_rid() -> None:
    """Unannounced SSRCs: learned from the MID/RID extensions of their first packets, then
    routed by SSRC alone; RTX by its repaired RID; aiortc's receiver NACKs per SSRC."""
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        receiver = transceiver.receiver
        dtls = transceiver.sender.transport
        tap = UplinkRtpTap.on(dtls)
        uris = {"urn:ietf:params:rtp-hdrext:sdes:mid": 4,
                "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id": 10,
                "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id": 11}
        add_header_extensions(dtls, uris)
        codecs = [RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
                  RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97,
                                        parameters={"apt": 96})]
        got: dict[str, list[RtpPacket]] = {"q": [], "f": []}
        tap.route_simulcast(receiver, "1", {"q": got["q"].append, "f": got["f"].append}, codecs)
        writer = aiortc.rtp.HeaderExtensionsMap()
        writer.configure(RTCRtpParameters(headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in uris.items()]))

        async def send(ssrc: int, seq: int, *, pt: int = 96, mid: str | None = None,
                       rid: str | None = None, rrid: str | None = None,
                       payload: bytes = b"\x10\x00\x00") -> None:
            packet = RtpPacket(payload_type=pt, sequence_number=seq, ssrc=ssrc, payload=payload)
            packet.extensions.mid = mid
            packet.extensions.rtp_stream_id = rid
            packet.extensions.repaired_rtp_stream_id = rrid
            await tap._handle_rtp_data(packet.serialize(writer), 0)

        await send(1111, 10, mid="1", rid="q")
        await send(2222, 500, mid="1", rid="f")
        await send(1111, 11)  # no extensions any more: by SSRC
        await send(3333, 7, mid="1", rid="x")  # a RID the m-line does not send
        await send(4444, 1, pt=97, mid="1", rrid="f", payload=b"\x01\xf5\x10\x00")
        await send(2222, 502)
        assert [p.sequence_number for p in got["q"]] == [10, 11]
        assert [(p.sequence_number, p.ssrc) for p in got["f"]] == [
            (500, 2222), (501, 2222), (502, 2222)]
        assert got["f"][1].payload == b"\x10\x00", "RTX unwrapped onto its layer"
        assert dtls._rtp_router.ssrc_table[1111] is receiver

        nack_per_ssrc(receiver)
        generator = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
        for ssrc, seq in ((1111, 10), (2222, 500), (1111, 11), (2222, 503), (1111, 12)):
            generator.add(RtpPacket(sequence_number=seq, ssrc=ssrc))
            if ssrc == 2222 and seq == 503:
                assert generator.missing == {501, 502}, "only the layer's own gap"
        assert generator.missing == set()

        tap.unroute(receiver)
        await send(1111, 13)
        assert len(got["q"]) == 2 and 1111 not in dtls._rtp_router.ssrc_table
    finally:
        await pc.close()


def test_the_kernel_arrival_clock_reads_when_a_datagram_arrived() -> None:
    """The ioctl's time is the datagram's arrival, not its (later) read; outside a datagram,
    or before the kernel stamps (the first read enables stamping), it is the current time."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        clock = KernelArrivalClock()
        clock.stamp(receiver.fileno())  # nothing read yet: no stamp
        assert clock.current_ns == 0
        assert abs(clock.now() - time.time_ns()) < 1_000_000_000
        # the kernel turns stamping on a moment after it is first asked (a deferred switch):
        # until then datagrams carry no stamp and the clock reads the current time
        for _ in range(50):
            sender.sendto(b"w", receiver.getsockname())
            receiver.recvfrom(16)
            clock.stamp(receiver.fileno())
            if clock.current_ns:
                break
            time.sleep(0.02)
        assert clock.current_ns, "the kernel never stamped a datagram"
        # the switch may take a little longer to reach every datagram on a loaded machine (a
        # fresh-clone run once read one stamped only 22 ms before its read): a few tries
        readings = []
        for _ in range(5):
            sent_ns = time.time_ns()
            sender.sendto(b"x", receiver.getsockname())
            time.sleep(0.2)  # the datagram waits in the socket, as behind a busy event loop
            receiver.recvfrom(16)
            read_ns = time.time_ns()
            clock.stamp(receiver.fileno())
            readings.append((sent_ns, clock.now(), read_ns))
            if sent_ns - 50_000_000 <= clock.now() < read_ns - 100_000_000:
                break
        else:
            raise AssertionError(f"no datagram read with its arrival time: {readings}")
    finally:
        receiver.close()
        sender.close()


async def test_the_tap_reports_every_transport_sequence_number() -> None:
    """Every packet with the transport-wide sequence number reaches
    `on_transport_sequence` first: routed, unknown and dropped (an RTX padding probe) alike."""
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        receiver = transceiver.receiver
        dtls = transceiver.sender.transport
        tap = UplinkRtpTap.on(dtls)
        add_header_extensions(dtls, {TRANSPORT_CC_URI: 3})
        codecs = [RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
                  RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97,
                                        parameters={"apt": 96})]
        got: list[RtpPacket] = []
        tap.route(receiver, got.append, 1111, 2222, codecs)
        dtls._rtp_router.register_receiver(receiver, ssrcs=[1111], payload_types=[96])
        seen: list[tuple[int, int]] = []
        tap.on_transport_sequence = lambda seq, ssrc: seen.append((seq, ssrc))
        writer = aiortc.rtp.HeaderExtensionsMap()
        writer.configure(RTCRtpParameters(headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=3, uri=TRANSPORT_CC_URI)]))

        async def send(ssrc: int, twcc: int | None, pt: int = 96, payload: bytes = b"\x10\x00"
                       ) -> None:
            packet = RtpPacket(payload_type=pt, sequence_number=1, ssrc=ssrc, payload=payload)
            packet.extensions.transport_sequence_number = twcc
            await tap._handle_rtp_data(packet.serialize(writer), 0)

        await send(1111, 65535)
        await send(2222, 0, pt=97, payload=b"")  # a padding probe on RTX: dropped
        await send(3333, 1, pt=100)  # nobody's SSRC or payload type
        await send(1111, None)
        assert seen == [(65535, 1111), (0, 2222), (1, 3333)]
        assert len(got) == 2
    finally:
        await pc.close()


@dataclass
class Received:
    frames: list[tuple[str, JitterFrame, float]] = field(default_factory=list)


@pytest.mark.timeout(90)
async def test_a_client_receiver_gets_encoded_frames_as_sent() -> None:
    """Two video m-lines (VP8, H.264) from clip tracks: frames reach `tap_client_receiver` as
    sent (RTP timestamps and bytes), RTX is routed by SSRC, and a PLI makes a clip jump."""
    log = FrameLog()
    publisher, subscriber = PeerConfig().new_peer_connection(), PeerConfig().new_peer_connection()
    try:
        tracks = {
            "camera": ClipTrack(load_clip("vp8"), on_frame=log.recorder("camera")),
            "screen": ClipTrack(load_clip("h264"), on_frame=log.recorder("screen")),
        }
        senders: dict[str, RTCRtpSender] = {}
        for source, track in tracks.items():
            transceiver = publisher.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(
                _preferences("video", "vp8" if source == "camera" else "h264")
            )
            on_keyframe_request(transceiver.sender, track.request_keyframe)
            senders[source] = transceiver.sender
        bind_host_candidates(publisher, "127.0.0.1")
        await publisher.setLocalDescription(await publisher.createOffer())
        await subscriber.setRemoteDescription(publisher.localDescription)
        received: dict[str, Received] = {}
        receivers: dict[str, RTCRtpReceiver] = {}
        for source, transceiver in zip(tracks, subscriber.getTransceivers(), strict=True):
            got = received[source] = Received()
            receivers[source] = transceiver.receiver

            def on_frame(codec: RTCRtpCodecParameters, frame: JitterFrame, arrival: float,
                         got: Received = got) -> None:
                got.frames.append((codec.name.lower(), frame, arrival))

            tap_client_receiver(transceiver.receiver, on_frame)
        stop_remote_bitrate_estimate(receivers["screen"])
        answer = await subscriber.createAnswer()
        bind_host_candidates(subscriber, "127.0.0.1")
        await subscriber.setLocalDescription(answer)
        await publisher.setRemoteDescription(subscriber.localDescription)
        await both_connected(publisher, subscriber)
        for pc in (publisher, subscriber):
            dtls = transport_of(pc)
            assert dtls is not None and receive_directly(dtls)
        await wait_until(
            lambda: all(len(r.frames) >= 20 for r in received.values()), 30, "20 frames each"
        )
        dtls = transport_of(subscriber)
        assert dtls is not None
        for source, got in received.items():
            codec = "vp8" if source == "camera" else "h264"
            sent = set(log.sent[source])
            assert {c for c, _, _ in got.frames} == {codec}
            digests = [frame_digest(f.data) for _, f, _ in got.frames]
            assert set(digests) <= sent, f"{source}: frames arrive bit-identical"
            # timestamps as the sender stamped them (aiortc would rebase them to 0)
            last_sent = senders[source]._RTCRtpSender__rtp_timestamp  # type: ignore[attr-defined]
            last = got.frames[-1][1].timestamp
            assert (last_sent - last) % (1 << 32) <= 90000 * 2, (source, last_sent, last)
            steps = {(b[1].timestamp - a[1].timestamp) % 3000 for a, b in zip(
                got.frames, got.frames[1:], strict=False)}
            assert steps == {0}
            assert all(0 <= time.time() - arrival < 60 for *_, arrival in got.frames)
            rtx_ssrc = sender_ssrcs(senders[source])[1]
            assert dtls._rtp_router.ssrc_table.get(rtx_ssrc) is receivers[source], "RTX by SSRC"
            assert not has_decoder_thread(receivers[source])
        camera = tracks["camera"]
        before = camera.keyframe_requests
        send_pli(receivers["camera"], sender_ssrcs(senders["camera"])[0])
        await wait_until(lambda: camera.keyframe_requests > before, 10, "the clip's keyframe")
    finally:
        await publisher.close()
        await subscriber.close()


def test_h264_frames_are_named_by_what_a_receiver_reassembles() -> None:
    clip = load_clip("h264")
    frame = clip.frames[0]
    units = list(h264_nal_units(frame))
    assert units, "a keyframe has NAL units"
    assert normalized_frame("h264", frame) == b"".join(b"\x00\x00\x00\x01" + u for u in units)


# --- the relay as a whole ---------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_the_relay_forwards_without_decoding_or_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encodes: list[str] = []
    for encoder in (Vp8Encoder, OpusEncoder, H264Encoder):
        original = encoder.encode

        def counting(self, frame, force_keyframe=False, _name=encoder.__name__, _orig=original):  # type: ignore[no-untyped-def]
            encodes.append(_name)
            return _orig(self, frame, force_keyframe)

        monkeypatch.setattr(encoder, "encode", counting)
    async with running_relay(0) as (service, relay):
        await service.open_room("c", "consult")
        log = FrameLog()
        doctor = await relay.join("c", "doctor", "doctor", frame_log=log)
        clinic = await relay.join("c", "clinic", "clinic", frame_log=log)
        await doctor.publish(clip_tracks(log, "vp8", ("mic", "camera")))
        await wait_until(
            lambda: clinic.track("doctor", "camera").frames >= 30
            and clinic.track("doctor", "mic").frames >= 30,
            timeout=40, what="frames at the clinic",
        )
        assert encodes == [], "nothing is encoded anywhere, the clip is packetized as is"
        decoders = [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]
        assert decoders == [], "no decoder thread in the process (relay or clients)"
        room = service._local.rooms["c"]  # type: ignore[union-attr]
        for participant in room._participants.values():
            for slot in participant.downlink._slots:
                sender = slot.transceiver.sender
                assert sender._RTCRtpSender__encoder is None  # type: ignore[attr-defined]
                assert isinstance(sender.track, HeldTrack)
            if participant.uplink is not None:
                for transceiver in participant.uplink._pc.getTransceivers():
                    assert not has_decoder_thread(transceiver.receiver)
        # the relay's sender reports carry its counters, not aiortc's zeros
        down = clinic._down
        assert down is not None

        async def reported_packets() -> int:
            stats = await down.getStats()
            return max(
                (s.packetsSent for s in stats.values() if s.type == "remote-outbound-rtp"),
                default=0,
            )

        for _ in range(60):
            if await reported_packets() > 0:
                break
            await asyncio.sleep(0.1)
        assert await reported_packets() > 0

