"""The aiortc bends of media/peers/aiortc_bends.py still hold (these fail if an aiortc upgrade
breaks them), and the relay neither decodes nor encodes."""

from __future__ import annotations

import asyncio
import os
import struct
import threading

import aioice.ice
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from pylibsrtp import Policy, Session

from client.peer import FrameLog
from media.peers.aiortc_bends import (
    EncodedFrameSink,
    HeldTrack,
    bind_host_candidates,
    has_decoder_thread,
    lean_protect,
)
from media.service import MediaService
from tests.media.relay_harness import RelayHarness, clip_tracks, wait_until


def test_the_aiortc_internals_the_taps_rely_on_still_exist() -> None:
    """Names the taps read or replace; a rename in aiortc/aioice shows up here first."""
    for name in ("_handle_rtp_data", "_rtp_router", "_rtp_header_extensions_map", "_tx_srtp",
                 "_send_rtp", "_state"):
        init_names = RTCDtlsTransport.__init__.__code__.co_names
        assert name in RTCDtlsTransport.__dict__ or name in init_names, name
    for name in ("_handle_rtp_packet", "_send_rtcp_pli", "receive"):
        assert hasattr(RTCRtpReceiver, name), name
    for name in ("_send_rtcp", "_handle_rtcp_packet", "_send_keyframe", "_run_rtcp"):
        assert hasattr(RTCRtpSender, name), name
    receiver_init = RTCRtpReceiver.__init__.__code__.co_names
    for name in ("_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__decoder_thread",
                 "_RTCRtpReceiver__jitter_buffer", "_RTCRtpReceiver__timestamp_mapper",
                 "_RTCRtpReceiver__remote_bitrate_estimator"):
        assert name in receiver_init, name
    for name in ("_nominated", "_local_candidates_start", "_local_candidates",
                 "_local_candidates_end", "_components"):
        assert name in aioice.ice.Connection.__init__.__code__.co_names, name
    assert hasattr(aioice.ice.Connection, "get_component_candidates")
    assert aioice.ice.StunProtocol.send_data.__code__.co_names[-1] == "sendto"


async def test_a_sink_receiver_gets_no_decoder_thread() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        receiver = transceiver.receiver
        sink = EncodedFrameSink()
        receiver._RTCRtpReceiver__decoder_queue = sink  # type: ignore[attr-defined]
        receiver._track = RemoteStreamTrack(kind="video")
        params = RTCRtpReceiveParameters(
            codecs=[RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)]
        )
        await receiver.receive(params)
        assert receiver._RTCRtpReceiver__decoder_thread is sink  # type: ignore[attr-defined]
        assert not has_decoder_thread(receiver)
        await receiver.stop()
        assert sink.ended
    finally:
        await pc.close()


async def test_host_candidates_are_gathered_on_the_chosen_address_only() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(HeldTrack("audio"), direction="sendonly")
        bind_host_candidates(pc, "127.0.0.1")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line.split()[4] for line in pc.localDescription.sdp.splitlines()
            if line.startswith("a=candidate:")
        ]
        assert candidates and set(candidates) == {"127.0.0.1"}
    finally:
        await pc.close()


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
    service = MediaService(0)
    await service.start()
    relay = RelayHarness(service)
    try:
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
    finally:
        await relay.close()
        await service.stop()


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
