"""Table tests for the small parts an `OutboundStream` is made of: the layer switch, picture-id
renumbering, sequence/timestamp continuity, the NACK answer, the packet writer, sender
reports and the RTCP dispatcher."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import pytest
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_remb_fci,
)

import media
from media.forward.continuity import Continuity
from media.forward.emit import PADDING_BIT, DatagramSink, PacketWriter, padding_payload
from media.forward.feedback import deliver_feedback, dispatch, from_aiortc
from media.forward.layers import LayerDropper, next_max_tid
from media.forward.reports import StreamReports, round_trip_s, sender_info
from media.forward.retransmit import answer_nack, rtx_payload
from media.rtp import vp8
from media.rtp.header import ExtensionLayout
from media.rtp.rtcp_feedback import (
    Feedback,
    KeyframeRequest,
    Nack,
    Remb,
    ReportBlock,
    parse_feedback,
)
from media.rtp.timing import ntp_timestamp

# -- layers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_tid", "target", "tid", "sync", "keyframe", "expected"),
    [
        (2, 2, 2, False, False, 2),  # all layers, all sent
        (2, 0, 1, False, False, 0),  # down: at once, at any frame
        (1, 0, 0, False, False, 0),
        (0, 2, 1, False, False, 0),  # up: not at a frame without layer sync
        (0, 2, 1, True, False, 1),  # up one layer at its sync frame
        (0, 2, 2, True, False, 0),  # not two layers at once
        (1, 1, 2, True, False, 1),  # not above the target
        (0, 2, 0, False, True, 2),  # a keyframe: straight to the target
        (2, 0, 0, False, True, 0),
    ],
)
def test_the_layer_sent_changes_down_at_once_and_up_at_sync_or_keyframe(
    max_tid: int, target: int, tid: int, sync: bool, keyframe: bool, expected: int
) -> None:
    assert next_max_tid(max_tid, target, tid, sync, keyframe) == expected


def l1t3(frame: int, pid_base: int = 100) -> vp8.TemporalLayer:
    """Layer fields of an L1T3 frame (pattern 0 2 1 2), layer sync on every TID 1 and 2."""
    tid = (0, 2, 1, 2)[frame % 4]
    return (tid, tid > 0, (pid_base + frame) & 0x7FFF, 15, (frame // 4) & 0xFF)


def test_frames_above_the_layer_wanted_are_left_out_and_ids_stay_continuous() -> None:
    dropper = LayerDropper()
    dropper.set_layers(2)  # TID 0 and 1
    placed = []
    for frame in range(8):
        ids = dropper.place(l1t3(frame), keyframe=frame == 0)
        placed.append(ids)
        # a second packet of the same frame gets the same answer
        assert dropper.place(l1t3(frame), keyframe=False) == ids
    assert placed == [(100, 0), None, (101, 0), None, (102, 1), None, (103, 1), None]
    assert dropper.frames_dropped == 4


def test_a_new_source_continues_the_ids_sent_and_a_resent_packet_gets_its_ids() -> None:
    dropper = LayerDropper()
    dropper.set_layers(1)
    for frame in range(4):
        dropper.place(l1t3(frame), keyframe=frame == 0)  # sends pid 100 (tl0 0) only
    # another source, its own ids, starts at a keyframe
    dropper.restart(pid=5000, tl0=77)
    assert dropper.place((0, False, 5000, 15, 77), keyframe=True) == (101, 1)
    original = b"\x90\xe0\x93\x88\x4d\x00" + b"x" * 10  # pid 5000, tl0 77, TID 0
    assert vp8.temporal_layer(original) == (0, False, 5000, 15, 77)
    resent = dropper.resent_payload(original)
    assert resent is not None and vp8.temporal_layer(resent) == (0, False, 101, 15, 1)
    assert dropper.resent_payload(b"\x90\xe0\x93\x87\x4c\x80" + b"y") is None  # never sent
    assert dropper.resent_payload(b"\x10\x00plain") == b"\x10\x00plain"  # no layer fields


# -- continuity ----------------------------------------------------------------------------


def test_a_new_source_follows_the_last_packet_in_sequence_and_clock() -> None:
    c = Continuity(first_seq=1000, clock_rate=90000)
    assert c.waiting
    c.start(ts=5000, now=10.0)
    assert (c.place(40, 5000, 10.0), c.out_ts) == (1000, 0)
    assert (c.place(41, 8000, 10.1), c.out_ts) == (1001, 3000)
    c.restart()
    assert c.waiting
    c.start(ts=777, now=10.2)  # 0.1 s after the last packet: 9000 ticks on
    assert (c.place(9, 777, 10.2), c.out_ts) == (1002, 12000)
    assert c.timestamp(777 + 90) == 12090
    assert c.rtp_timestamp_at(10.3) == 12000 + 9000


def test_the_clock_reads_zero_before_anything_was_sent() -> None:
    assert Continuity(0, 48000).rtp_timestamp_at(5.0) == 0


# -- retransmissions -----------------------------------------------------------------------


class History:
    def __init__(self, packets: Iterable[RtpPacket], ages: dict[int, float]) -> None:
        self.packets = {p.sequence_number: p for p in packets}
        self.ages = ages

    def from_history(self, seq: int) -> RtpPacket | None:
        return self.packets.get(seq)

    def age_s(self, packet: RtpPacket) -> float:
        return self.ages.get(packet.sequence_number, 0.0)


def packet(seq: int, payload: bytes = b"p") -> RtpPacket:
    return RtpPacket(sequence_number=seq, timestamp=seq * 10, payload=payload)


@pytest.mark.parametrize(
    ("lost", "resent", "unrepaired"),
    [
        ([500, 501], [(500, 100), (501, 101)], False),
        ([0x10000 + 502], [(502, 102)], False),  # outbound numbers are 16 bits
        ([503], [], True),  # gone from the history
        ([504], [], True),  # too old: a keyframe repairs it
        ([999], [], True),  # not a number we sent
        ([500, 504], [(500, 100)], True),
    ],
)
def test_a_nack_is_answered_from_history_or_left_to_a_keyframe(
    lost: list[int], resent: list[tuple[int, int]], unrepaired: bool
) -> None:
    history = History([packet(100), packet(101), packet(102), packet(104)], {104: 1.5})

    def reverse(out: int) -> int | None:
        return out - 400 if 500 <= out < 600 else None

    answer = answer_nack(lost, reverse, history)
    assert [(out, p.sequence_number) for out, p, _ in answer.resend] == resent
    assert answer.unrepaired is unrepaired
    assert answer.asked == len(lost)


def test_a_layer_dropping_stream_resends_with_its_ids_and_never_a_frame_it_left_out() -> None:
    history = History([packet(1, b"sent"), packet(2, b"dropped")], {})
    answer = answer_nack(
        [1, 2], lambda out: out, history, lambda p: None if p == b"dropped" else p.upper()
    )
    assert [(out, payload) for out, _, payload in answer.resend] == [(1, b"SENT")]
    assert not answer.unrepaired  # a frame left out needs no repair
    assert rtx_payload(0x1234, b"abc") == b"\x12\x34abc"


# -- the packet writer ---------------------------------------------------------------------


def test_every_packet_is_fixed_header_extension_head_and_body() -> None:
    sent: list[bytes] = []
    sink = DatagramSink()
    sink.connect(sent.append)
    writer = PacketWriter(sink)
    writer.write(0x80 | 96, 7, 9000, 1234, b"body")
    writer.configure(ExtensionLayout(mid_id=1, mid="0"))
    writer.write(96, 8, 9000, 1234, b"pad", PADDING_BIT)
    assert sent[0] == struct.pack("!BBHII", 0x80, 0x80 | 96, 7, 9000, 1234) + b"body"
    head = ExtensionLayout(mid_id=1, mid="0").head()
    assert sent[1] == struct.pack("!BBHII", 0xB0, 96, 8, 9000, 1234) + head + b"pad"
    sink.disconnect()
    writer.write(96, 9, 0, 1, b"")
    assert len(sent) == 2


@pytest.mark.parametrize(
    ("size", "expected"), [(1, b"\x01"), (4, b"\x00\x00\x00\x04"), (0, b"\x01"), (300, None)]
)
def test_padding_ends_in_its_length(size: int, expected: bytes | None) -> None:
    padding = padding_payload(size)
    if expected is None:
        assert len(padding) == 255 and padding[-1] == 255
    else:
        assert padding == expected


def test_only_the_packet_writer_packs_an_rtp_header() -> None:
    root = Path(media.__file__).parent
    users = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "FIXED_HEADER" in path.read_text() and path.name != "header.py"
    ]
    assert users == ["forward/emit.py"]
    assert (root / "forward" / "emit.py").read_text().count("_pack_header(") == 1


# -- reports -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent_at", "dlsr", "now", "expected"),
    [
        (None, 65536, 10.0, None),  # not a report we remember
        (9.0, 0, 10.0, None),  # no echo
        (9.0, 32768, 10.0, 0.5),
        (9.0, 65536 * 2, 10.0, 0.0),  # the subscriber's clock: never negative
    ],
)
def test_the_round_trip_is_what_the_echo_did_not_spend_at_the_subscriber(
    sent_at: float | None, dlsr: int, now: float, expected: float | None
) -> None:
    assert round_trip_s(sent_at, dlsr, now) == expected


def test_a_report_echoing_one_of_the_last_sender_reports_gives_the_rtt() -> None:
    reports = StreamReports()
    ntps = [reports.sent(100.0 + i) for i in range(10)]
    lsr = (ntps[-1] >> 16) & 0xFFFFFFFF
    reports.received(ReportBlock(1, 12, 3, 0, 40, lsr, 65536 // 4), 109.5)
    assert reports.rtt == pytest.approx(0.25, abs=1e-3)
    assert (reports.fraction_lost, reports.packets_lost, reports.jitter) == (12, 3, 40)
    old = (ntps[0] >> 16) & 0xFFFFFFFF  # forgotten: only the last 8 are kept
    reports.received(ReportBlock(1, 0, 0, 0, 0, old, 65536), 200.0)
    assert reports.rtt == pytest.approx(0.25, abs=1e-3)
    assert ntps[0] == ntp_timestamp(100.0)
    info = sender_info(ntps[0], 5, 2**32 + 3, 7)
    assert (info.rtp_timestamp, info.packet_count, info.octet_count) == (5, 3, 7)


# -- feedback ------------------------------------------------------------------------------


class Target:
    def __init__(self) -> None:
        self.got: list[tuple[str, object]] = []

    def on_report(self, report: ReportBlock) -> None:
        self.got.append(("report", report.fraction_lost))

    def on_remb(self, bps: int) -> None:
        self.got.append(("remb", bps))

    def retransmit(self, lost: Iterable[int]) -> None:
        self.got.append(("nack", tuple(lost)))

    def keyframe_wanted(self) -> None:
        self.got.append(("keyframe", None))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (ReportBlock(1, 9, 0, 0, 0, 0, 0), [("report", 9)]),
        (ReportBlock(3, 9, 0, 0, 0, 0, 0), []),
        (Remb(500_000, (3, 1)), [("remb", 500_000)]),
        (Nack(1, (4, 5)), [("nack", (4, 5))]),
        (Nack(2, (4, 5)), []),
        (KeyframeRequest(1), [("keyframe", None)]),
        (KeyframeRequest(0), []),
    ],
)
def test_each_piece_of_feedback_reaches_the_stream_it_is_about(
    item: Feedback, expected: list[tuple[str, object]]
) -> None:
    target = Target()
    dispatch([item], {1: target})
    assert target.got == expected


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (
            RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=1, lost=[4, 5]),
            [Nack(1, (4, 5))],
        ),
        (RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=1), [KeyframeRequest(1)]),
        (
            RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=9, media_ssrc=0, fci=b"\x00\x00\x00\x01" * 2),
            [KeyframeRequest(1)],
        ),
        (
            RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=9, media_ssrc=0, fci=pack_remb_fci(4096, [1])),
            [Remb(4096, (1,))],
        ),
        (RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=9, media_ssrc=0, fci=b"junk"), []),
        (
            RtcpRrPacket(ssrc=9, reports=[RtcpReceiverInfo(1, 7, 2, 300, 4, 5, 6)]),
            [ReportBlock(1, 7, 2, 300, 4, 5, 6)],
        ),
        (RtcpByePacket(sources=[9]), []),
    ],
)
def test_aiortc_packets_become_the_same_feedback_the_fast_path_parses(
    packet: object, expected: list[Feedback]
) -> None:
    assert from_aiortc(packet) == expected  # type: ignore[arg-type]
    assert parse_feedback(bytes(packet)) == expected  # type: ignore[call-overload]


def test_a_compound_packet_is_dispatched_piece_by_piece() -> None:
    compound = b"".join(
        bytes(p)
        for p in (
            RtcpRrPacket(ssrc=9, reports=[RtcpReceiverInfo(1, 7, 2, 300, 4, 5, 6)]),
            RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=1),
            RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=2, lost=[4]),
        )
    )
    target = Target()
    deliver_feedback(compound, {1: target})
    assert target.got == [("report", 7), ("keyframe", None)]
