"""The lean load-test receiver: a subscriber that counts what arrives and nothing else.

aiortc negotiates ICE and DTLS as for any subscriber; from then on, decrypted datagrams skip
aiortc's receive path (`receive_raw` in media/peers/aiortc_bends.py): no packet parsing into
objects, no jitter buffer, no NACK generator, no statistics, no decoder. Per packet it reads
the fixed RTP header and keeps, per SSRC: packets, bytes, frames (video: packets ending a
frame, the marker bit; audio: every packet), the extended highest sequence number (so loss is
`expected - received`), first-packet time and whether a keyframe start has been seen.

It still sends the RTCP a relay's adaptation needs to see a healthy receiver, built here
(`rtcp_reports`) and sent every `REPORT_INTERVAL_S`: a receiver report per SSRC (loss
fraction, cumulative loss, highest sequence, LSR/DLSR from the relay's sender reports, so
RTT is measured) and a REMB of `REMB_BPS`. No NACK and no PLI: a lost packet stays lost and
shows as loss.

`LeanPeer` is one participant's down connection, answering the relay's `offer` events like
client/peer.py's `PeerClient`; `LeanParticipant` joins through a join link with
client/ws.py's `SignalingClient`, follows a `redirect` to the node that serves it, and builds
a new peer there.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSrPacket,
    pack_remb_fci,
)
from aiortc.sdp import SessionDescription

from client.ws import SignalingClient
from media.peers.aiortc_bends import (
    bind_host_candidates,
    receive_raw,
    rtcp_sender,
    tap_relay_receiver,
    transport_of,
)
from media.peers.config import PeerConfig
from media.rtp import h264, vp8

REPORT_INTERVAL_S = 0.5
"""Receiver reports and REMB, twice a second (a browser sends about one RR a second and
REMB on change)."""
FIRST_REPORT_S = 1.0
"""The first report waits this long after the connection, as a browser's does: a report on
a stream's first packets reads like a weak link to the relay (its estimate still at its
starting guess), which then starts the viewer on the low rung and transcodes for it."""
REMB_BPS = 8_000_000
"""What the REMB says: far above any rung, so the relay's estimate never caps a lean receiver
(loss and RTT, from its reports, still would)."""
RECEIVE_BUFFER = 2 * 1024 * 1024
"""SO_RCVBUF of a lean viewer's socket: about 8 s of the lecture, so a load generator the
machine starves for a moment (other work on a shared 2-core machine) drops nothing; the
default 208 KB held under a second, and the kernel dropped what the relay had sent."""
RTP_HEADER = struct.Struct("!BBHII")
SEQ_MOD = 1 << 16
NTP_EPOCH_OFFSET = 2208988800

SendAnswer = Callable[[str], Awaitable[None]]


@dataclass
class StreamCount:
    """What arrived on one SSRC."""

    kind: str
    packets: int = 0
    bytes: int = 0
    frames: int = 0
    first_at: float | None = None
    base_seq: int | None = None
    highest_seq: int = 0
    """Extended (with wrap count) highest sequence number seen."""
    keyframe_seen: bool = False
    reported_expected: int = 0
    reported_received: int = 0

    @property
    def expected(self) -> int:
        return 0 if self.base_seq is None else self.highest_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets)


def extend_sequence(highest: int, seq: int) -> int:
    """The extended sequence number of `seq` (16 bits) given the extended `highest` so far:
    the candidate in the wrap cycle nearest to `highest`."""
    cycle = highest - (highest % SEQ_MOD)
    candidate = cycle + seq
    if candidate - highest > SEQ_MOD // 2:
        candidate -= SEQ_MOD
    elif highest - candidate > SEQ_MOD // 2:
        candidate += SEQ_MOD
    return candidate


def payload_offset(packet: bytes) -> int:
    """Where the payload of an RTP packet starts (after CSRCs and the header extension)."""
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10 and len(packet) >= offset + 4:
        offset += 4 + 4 * int.from_bytes(packet[offset + 2:offset + 4], "big")
    return offset


def is_keyframe_start(codec: str, payload: bytes) -> bool:
    if codec == "vp8":
        return vp8.is_keyframe_start(payload)
    if codec == "h264":
        return h264.is_keyframe_start(payload)
    return False


def fraction_lost(expected: int, received: int) -> int:
    """RFC 3550's 8-bit loss fraction of an interval."""
    if expected <= 0 or received >= expected:
        return 0
    return min(255, ((expected - received) << 8) // expected)


def compact_ntp(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (what LSR carries)."""
    return (ntp >> 16) & 0xFFFFFFFF


def rtcp_reports(rtcp_ssrc: int, streams: Mapping[int, StreamCount],
                 lsr: Mapping[int, tuple[int, float]], now: float, remb_bps: int) -> bytes:
    """One compound RTCP packet: a receiver report with a block per SSRC that has delivered
    anything, then a REMB for the video SSRCs. Updates each stream's interval counters."""
    blocks = []
    for ssrc, stream in streams.items():
        if stream.base_seq is None:
            continue
        expected = stream.expected - stream.reported_expected
        received = stream.packets - stream.reported_received
        stream.reported_expected, stream.reported_received = stream.expected, stream.packets
        last_sr, at = lsr.get(ssrc, (0, 0.0))
        dlsr = int((now - at) * 65536) if last_sr else 0
        blocks.append(RtcpReceiverInfo(
            ssrc=ssrc, fraction_lost=fraction_lost(expected, received),
            packets_lost=min(stream.lost, 0x7FFFFF),
            highest_sequence=stream.highest_seq % (1 << 32), jitter=0, lsr=last_sr,
            dlsr=max(0, min(dlsr, 0xFFFFFFFF))))
    data = bytes(RtcpRrPacket(ssrc=rtcp_ssrc, reports=blocks[:31]))
    video = [ssrc for ssrc, stream in streams.items() if stream.kind == "video"]
    if video:
        data += bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                     fci=pack_remb_fci(remb_bps, video)))
    return data


def payload_kinds(sdp: str) -> dict[int, tuple[str, str]]:
    """Payload type -> (kind, codec name) from an offer; RTX as ("rtx", "rtx")."""
    kinds: dict[int, tuple[str, str]] = {}
    for media in SessionDescription.parse(sdp).media:
        for codec in media.rtp.codecs:
            if codec.payloadType is None:
                continue
            name = codec.name.lower()
            kinds[codec.payloadType] = ("rtx", "rtx") if name == "rtx" else (media.kind, name)
    return kinds


class PacketCounter:
    """The per-packet work of the lean receiver, and the RTCP it answers."""

    def __init__(self) -> None:
        self.streams: dict[int, StreamCount] = {}
        self.kinds: dict[int, tuple[str, str]] = {}
        self.rtx_packets = 0
        self.lsr: dict[int, tuple[int, float]] = {}
        """SSRC -> (LSR of its latest sender report, when it arrived)."""

    def on_rtp(self, packet: bytes) -> None:
        if len(packet) < 12:
            return
        _, b1, seq, _ts, ssrc = RTP_HEADER.unpack_from(packet)
        stream = self.streams.get(ssrc)
        if stream is None:
            kind, codec = self.kinds.get(b1 & 0x7F, ("", ""))
            if kind == "rtx" or not kind:
                self.rtx_packets += 1
                return
            stream = self.streams[ssrc] = StreamCount(kind)
            stream.first_at = time.time()
            stream.base_seq = stream.highest_seq = seq
        else:
            ext = extend_sequence(stream.highest_seq, seq)
            if ext > stream.highest_seq:
                stream.highest_seq = ext
        stream.packets += 1
        stream.bytes += len(packet)
        if stream.kind == "audio" or b1 & 0x80:
            stream.frames += 1
        if not stream.keyframe_seen and stream.kind == "video":
            codec = self.kinds.get(b1 & 0x7F, ("", ""))[1]
            stream.keyframe_seen = is_keyframe_start(codec, packet[payload_offset(packet):])

    def on_rtcp(self, data: bytes) -> None:
        with contextlib.suppress(ValueError):
            for packet in RtcpPacket.parse(data):
                if isinstance(packet, RtcpSrPacket):
                    self.lsr[packet.ssrc] = (compact_ntp(packet.sender_info.ntp_timestamp),
                                             time.time())

    def totals(self) -> dict[str, Any]:
        """Per kind: packets, frames, bytes, lost; first video packet time; keyframe seen."""
        out: dict[str, Any] = {"video_packets": 0, "audio_packets": 0, "video_frames": 0,
                               "audio_frames": 0, "bytes": 0, "lost": 0, "expected": 0,
                               "first_video_at": None, "keyframe": False}
        for stream in self.streams.values():
            out[f"{stream.kind}_packets"] += stream.packets
            out[f"{stream.kind}_frames"] += stream.frames
            out["bytes"] += stream.bytes
            out["lost"] += stream.lost
            out["expected"] += stream.expected
            if stream.kind == "video":
                out["keyframe"] = out["keyframe"] or stream.keyframe_seen
                if stream.first_at is not None and (
                        out["first_video_at"] is None or stream.first_at < out["first_video_at"]):
                    out["first_video_at"] = stream.first_at
        return out


class LeanPeer:
    """One participant's down connection with the relay, counted by a `PacketCounter`."""

    def __init__(self, send_answer: SendAnswer, config: PeerConfig | None = None,
                 remb_bps: int = REMB_BPS) -> None:
        self.counter = PacketCounter()
        self.offers = 0
        self._send_answer = send_answer
        self._config = config or PeerConfig()
        self._remb_bps = remb_bps
        self._pc: RTCPeerConnection | None = None
        self._generation: int | None = None
        self._reports: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._rtcp_ssrc = secrets.randbits(32) or 1

    async def on_offer(self, event: Mapping[str, Any]) -> None:
        async with self._lock:
            generation = int(event.get("connection", 0))
            if self._pc is None or generation != self._generation:
                await self._close_pc()
                self._pc = self._new_connection()
                self._generation = generation
            pc = self._pc
            self.counter.kinds.update(payload_kinds(event["sdp"]))
            await pc.setRemoteDescription(RTCSessionDescription(event["sdp"], "offer"))
            for transceiver in pc.getTransceivers():
                tap_relay_receiver(transceiver.receiver)  # no decoder thread
            answer = await pc.createAnswer()
            bind_host_candidates(pc, self._config.udp_host)
            await pc.setLocalDescription(answer)
            self.offers += 1
            sdp = pc.localDescription.sdp
        await self._send_answer(sdp)

    def _new_connection(self) -> RTCPeerConnection:
        pc = self._config.new_peer_connection()

        @pc.on("connectionstatechange")
        def _on_change() -> None:
            dtls = transport_of(pc)
            if pc.connectionState != "connected" or dtls is None:
                return
            if receive_raw(dtls, self.counter.on_rtp, self.counter.on_rtcp, RECEIVE_BUFFER):
                send = rtcp_sender(dtls)
                if send is not None and self._reports is None:
                    self._reports = asyncio.get_running_loop().create_task(self._report(send))

        return pc

    async def _report(self, send: Callable[[bytes], None]) -> None:
        await asyncio.sleep(FIRST_REPORT_S - REPORT_INTERVAL_S)
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            send(rtcp_reports(self._rtcp_ssrc, self.counter.streams, self.counter.lsr,
                              time.time(), self._remb_bps))

    @property
    def state(self) -> str:
        return self._pc.connectionState if self._pc else "new"

    async def _close_pc(self) -> None:
        task, self._reports = self._reports, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pc, self._pc = self._pc, None
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()

    async def close(self) -> None:
        async with self._lock:
            await self._close_pc()


class LeanParticipant:
    """A receive-only participant joined through a join link, media counted by `LeanPeer`s
    (a new one after each move to another node; the old ones' counts are kept)."""

    def __init__(self, base_url: str, config: PeerConfig | None = None,
                 signaling: SignalingClient | None = None) -> None:
        self.signaling = signaling or SignalingClient(base_url)
        self._config = config or PeerConfig()
        self.peer = LeanPeer(self._send_answer, self._config)
        self.retired: list[PacketCounter] = []
        self.moves = 0
        self.offer_errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def join_token(self, token: str) -> dict[str, Any]:
        await self.signaling.exchange(token)
        self.signaling.listeners.append(self._on_frame)
        return await self.signaling.connect()

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "offer":
            self._spawn(self._answer(self.peer, frame))
        elif frame["type"] == "_moved":
            old, self.peer = self.peer, LeanPeer(self._send_answer, self._config)
            self.retired.append(old.counter)
            self.moves += 1
            self._spawn(old.close())

    async def _answer(self, peer: LeanPeer, frame: dict[str, Any]) -> None:
        try:
            await peer.on_offer(frame)
        except Exception as exc:  # reported by the bench
            self.offer_errors.append(exc)

    async def _send_answer(self, sdp: str) -> None:
        await self.signaling.send({"type": "answer", "sdp": sdp})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def totals(self) -> dict[str, Any]:
        """`PacketCounter.totals` summed over every peer this participant had."""
        parts = [c.totals() for c in (*self.retired, self.peer.counter)]
        out = dict(parts[-1])
        for part in parts[:-1]:
            for key in ("video_packets", "audio_packets", "video_frames", "audio_frames",
                        "bytes", "lost", "expected"):
                out[key] += part[key]
            out["keyframe"] = out["keyframe"] or part["keyframe"]
            firsts = [t for t in (out["first_video_at"], part["first_video_at"]) if t is not None]
            out["first_video_at"] = min(firsts) if firsts else None
        return out

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.peer.close()
        await self.signaling.close()
