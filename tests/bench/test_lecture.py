"""`tongxin bench lecture`: the lean receiver's per-packet bookkeeping and reports, the result
maths and the table (tables), and one tiny real run over an origin and two edges (its shape
and that every edge delivered something; never a measured figure)."""

from __future__ import annotations

import argparse
import struct
from typing import Any

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RtcpPacket, RtcpPsfbPacket, RtcpRrPacket, unpack_remb_fci

from bench import lecture as bench_lecture
from bench.lean_receiver import (
    PacketCounter,
    StreamCount,
    extend_sequence,
    fraction_lost,
    payload_offset,
    rtcp_reports,
)
from bench.lecture_figures import (
    checks,
    delivered,
    edge_vs_single,
    marginal,
    node_cpu,
    origin_flatness,
    pct,
    percentile,
    redis_load,
    render,
    roster_pushes,
    rungs,
    window_counts,
)
from bench.processes import redis_server_binary

# --- the lean receiver ---------------------------------------------------------------------------


@pytest.mark.parametrize(("highest", "seq", "extended"), [
    (100, 101, 101),
    (100, 99, 99),  # late, not a wrap
    (65535, 0, 65536),  # wrapped forward
    (65536, 65535, 65535),  # late across the wrap
    (65536 + 10, 5, 65536 + 5),
    (3 * 65536 + 65000, 200, 4 * 65536 + 200),
])
def test_sequence_numbers_extend_across_the_wrap(highest: int, seq: int, extended: int) -> None:
    assert extend_sequence(highest, seq) == extended


@pytest.mark.parametrize(("expected", "received", "fraction"), [
    (100, 100, 0), (100, 90, 25), (100, 0, 255), (0, 0, 0), (10, 12, 0), (4, 3, 64),
])
def test_the_loss_fraction_is_rfc_3550s(expected: int, received: int, fraction: int) -> None:
    assert fraction_lost(expected, received) == fraction


def rtp(seq: int, ssrc: int, pt: int, marker: bool = False, payload: bytes = b"\x10\x00\x00",
        csrcs: int = 0, extension: bytes | None = None) -> bytes:
    b0 = 0x80 | csrcs | (0x10 if extension is not None else 0)
    head = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, 1000, ssrc)
    head += b"\x00" * 4 * csrcs
    if extension is not None:
        head += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    return head + payload


@pytest.mark.parametrize(("packet", "offset"), [
    (rtp(1, 1, 96), 12),
    (rtp(1, 1, 96, csrcs=2), 20),
    (rtp(1, 1, 96, extension=b"\x10\x01\x00\x00"), 20),
    (rtp(1, 1, 96, csrcs=1, extension=b"\x00" * 8), 28),
])
def test_the_payload_starts_after_csrcs_and_extension(packet: bytes, offset: int) -> None:
    assert payload_offset(packet) == offset


def test_the_counter_counts_frames_loss_and_keyframes_per_ssrc() -> None:
    counter = PacketCounter()
    counter.kinds = {96: ("video", "vp8"), 97: ("rtx", "rtx"), 111: ("audio", "opus")}
    # a VP8 keyframe start: descriptor S bit, then a payload header with the P bit clear
    counter.on_rtp(rtp(10, 1, 96, payload=b"\x10\x00\x9d\x01\x2a"))
    counter.on_rtp(rtp(11, 1, 96, marker=True))
    counter.on_rtp(rtp(13, 1, 96, marker=True))  # 12 lost
    counter.on_rtp(rtp(5, 2, 111))
    counter.on_rtp(rtp(6, 2, 111))
    counter.on_rtp(rtp(1, 3, 97))  # RTX: not a stream
    counter.on_rtp(b"\x80\x60")  # too short
    totals = counter.totals()
    assert (totals["video_packets"], totals["video_frames"]) == (3, 2)
    assert (totals["audio_packets"], totals["audio_frames"]) == (2, 2)
    assert (totals["lost"], totals["expected"]) == (1, 6)
    assert totals["keyframe"] is True
    assert totals["first_video_at"] is not None
    assert counter.rtx_packets == 1


def test_reports_carry_a_block_per_stream_and_a_remb_for_video() -> None:
    video = StreamCount("video", packets=9, base_seq=0, highest_seq=9)  # 10 expected, 1 lost
    audio = StreamCount("audio", packets=5, base_seq=100, highest_seq=104)
    silent = StreamCount("video")
    data = rtcp_reports(7, {1: video, 2: audio, 3: silent}, {1: (0x12345678, 99.0)}, 100.0,
                        3_000_000)
    rr, remb = RtcpPacket.parse(data)
    assert isinstance(rr, RtcpRrPacket) and rr.ssrc == 7
    blocks = {b.ssrc: b for b in rr.reports}
    assert set(blocks) == {1, 2}
    assert (blocks[1].packets_lost, blocks[1].highest_sequence, blocks[1].lsr) == (1, 9,
                                                                                   0x12345678)
    assert blocks[1].dlsr == 65536  # one second
    assert blocks[1].fraction_lost == 25
    assert (blocks[2].packets_lost, blocks[2].lsr, blocks[2].dlsr) == (0, 0, 0)
    assert isinstance(remb, RtcpPsfbPacket) and remb.fmt == RTCP_PSFB_APP
    assert unpack_remb_fci(remb.fci) == (3_000_000, [1, 3])
    # the next report's loss fraction is over the new interval only
    video.packets, video.highest_seq = 19, 19
    rr2 = RtcpPacket.parse(rtcp_reports(7, {1: video}, {}, 101.0, 3_000_000))[0]
    assert isinstance(rr2, RtcpRrPacket) and rr2.reports[0].fraction_lost == 0


# --- the figures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("part", "whole", "expected"), [
    (50, 100, 50.0), (101, 100, 100.0), (1, 3, 33.33), (5, 0, None),
])
def test_pct(part: float, whole: float, expected: float | None) -> None:
    assert pct(part, whole) == expected


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None), ([7.0], 95, 7.0), ([1.0, 2.0, 3.0], 50, 2.0), ([0.0, 100.0], 95, 95.0),
])
def test_percentile(values: list[float], q: int, expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_window_counts_take_the_difference_and_name_the_node() -> None:
    before = [{"id": "a", "node": "http://e1", "video_frames": 10, "audio_frames": 5,
               "video_packets": 30, "audio_packets": 5, "lost": 0, "expected": 35}]
    after = [
        {"id": "a", "node": "http://e1/", "video_frames": 40, "audio_frames": 15,
         "video_packets": 120, "audio_packets": 15, "lost": 1, "expected": 136, "rung": "full"},
        {"id": "b", "node": "http://gone", "video_frames": 3, "audio_frames": 1,
         "video_packets": None, "audio_packets": None, "lost": None, "expected": None},
    ]
    out = window_counts(before, after, {"http://e1": "edge-1"})
    assert out[0] == {"id": "a", "node": "edge-1", "rung": "full", "video_frames": 30,
                      "audio_frames": 10, "video_packets": 90, "audio_packets": 10, "lost": 1,
                      "expected": 101, "roster_entries": None, "session_frames": None,
                      "session_bytes_per_entry": None}
    assert out[1]["node"] == "?" and out[1]["video_frames"] == 3 and out[1]["lost"] is None


@pytest.mark.parametrize(("counts", "sent", "expected"), [
    ([{"video_frames": 30, "audio_frames": 50, "lost": 0, "expected": 100}] * 2,
     {"video": 30, "audio": 50}, {"video": 100.0, "audio": 100.0, "packet_loss": 0.0}),
    ([{"video_frames": 30, "audio_frames": 50, "lost": 2, "expected": 100},
      {"video_frames": 15, "audio_frames": 50, "lost": 0, "expected": 100}],
     {"video": 30, "audio": 50}, {"video": 75.0, "audio": 100.0, "packet_loss": 1.0}),
    ([{"video_frames": 30, "audio_frames": 50, "lost": None, "expected": None}],
     {"video": 30, "audio": 50}, {"video": 100.0, "audio": 100.0, "packet_loss": None}),
    ([], {"video": 30, "audio": 50}, {"video": None, "audio": None, "packet_loss": None}),
])
def test_delivered(counts: list[dict[str, Any]], sent: dict[str, int],
                   expected: dict[str, Any]) -> None:
    assert delivered(counts, sent) == expected


def test_node_cpu_per_second_and_per_subscriber_second() -> None:
    out = node_cpu({"origin": 1.0, "edge-1": 2.0}, {"origin": 1.5, "edge-1": 4.0},
                   {"edge-1": 10}, 10.0)
    assert out["origin"] == {"subscribers": 0, "cpu_ms_per_s": 50.0,
                             "cpu_ms_per_subscriber_second": None}
    assert out["edge-1"] == {"subscribers": 10, "cpu_ms_per_s": 200.0,
                             "cpu_ms_per_subscriber_second": 20.0}


def test_rungs_tally_the_last_link_of_each_receiver() -> None:
    assert rungs([{"rung": "full"}, {"rung": "low"}, {"rung": "full"}, {"rung": None}]) == {
        "full": 2, "low": 1, "none": 1}


def step(subscribers: int, nodes: dict[str, tuple[str, int, float]],
         video: float = 100.0) -> dict[str, Any]:
    """A step as `step_figures` makes it: node -> (role, subscribers, cpu ms/s)."""
    return {
        "subscribers": subscribers,
        "delivered_pct": {"video": video, "audio": 100.0, "packet_loss": 0.0},
        "join_to_first_frame_ms": {"median": 300.0, "p95": 500.0, "joined": subscribers},
        "receiver_cpu_ms_per_receiver_second": 3.0,
        "nodes": {name: {"role": role, "subscribers": subs, "cpu_ms_per_s": cpu,
                         "cpu_ms_per_subscriber_second": round(cpu / subs, 3) if subs else None,
                         "delivered_pct": {"video": video, "audio": 100.0, "packet_loss": 0.0}}
                  for name, (role, subs, cpu) in nodes.items()},
    }


@pytest.mark.parametrize(("origin_cpu", "ratios", "flat"), [
    ([100.0, 110.0, 95.0], [1.0, 1.1, 0.95], True),
    ([100.0, 125.0], [1.0, 1.25], False),
    ([100.0, 79.0], [1.0, 0.79], False),
    ([100.0], [1.0], None),  # one step: nothing doubled
])
def test_origin_flatness(origin_cpu: list[float], ratios: list[float], flat: bool | None) -> None:
    steps = [step(20 * 2 ** i, {"origin": ("origin", 0, c)}) for i, c in enumerate(origin_cpu)]
    out = origin_flatness(steps)
    assert out["ratio_to_first"] == ratios
    assert out["flat"] is flat


@pytest.mark.parametrize(("edge_cpu", "single_cpu", "ratio", "within"), [
    ((100.0, 100.0), 200.0, 1.0, True),  # 10 each on two edges vs 20 on one node
    ((120.0, 130.0), 200.0, 1.25, True),
    ((150.0, 150.0), 200.0, 1.5, False),
    ((70.0, 70.0), 200.0, 0.7, False),
])
def test_edge_vs_single(edge_cpu: tuple[float, float], single_cpu: float, ratio: float,
                        within: bool) -> None:
    lecture = [step(20, {"origin": ("origin", 0, 50.0), "edge-1": ("edge", 10, edge_cpu[0]),
                         "edge-2": ("edge", 10, edge_cpu[1])})]
    single = [step(20, {"single": ("single", 20, single_cpu)})]
    [out] = edge_vs_single(lecture, single)
    assert (out["ratio"], out["within"]) == (ratio, within)


def test_marginal_cost_is_the_added_cpu_per_added_subscriber() -> None:
    steps = [step(20, {"e1": ("edge", 10, 100.0), "e2": ("edge", 10, 110.0)}),
             step(40, {"e1": ("edge", 20, 180.0), "e2": ("edge", 20, 190.0)})]
    assert marginal(steps, "edge") == [
        {"from": 20, "to": 40, "cpu_ms_per_added_subscriber_second": 8.0}]


def test_checks_and_the_table_cover_every_phase_and_node() -> None:
    lecture = [step(20, {"origin": ("origin", 0, 50.0), "edge-1": ("edge", 10, 100.0),
                         "edge-2": ("edge", 10, 100.0)}),
               step(40, {"origin": ("origin", 0, 55.0), "edge-1": ("edge", 20, 190.0),
                         "edge-2": ("edge", 20, 190.0)}, video=98.0)]
    single = [step(20, {"single": ("single", 20, 200.0)}),
              step(40, {"single": ("single", 40, 380.0)})]
    phases = {"lecture": {"receiver": "lean", "steps": lecture},
              "single": {"receiver": "lean", "steps": single}}
    c = checks(phases)
    assert c["delivered_ok"] is False  # 98% video at 40
    assert c["origin"]["flat"] is True
    assert [e["within"] for e in c["edge_vs_single"]] == [True, True]
    text = render({"phases": phases, "checks": c})
    rows = [line.split() for line in text.splitlines()]
    assert sum(1 for r in rows if r[:1] == ["lecture/lean"]) == 2 * 4  # 3 nodes + all, x2
    assert sum(1 for r in rows if r[:1] == ["single/lean"]) == 2 * 2
    assert any("flat within 20%: True" in line for line in text.splitlines())


@pytest.mark.parametrize(("argv", "plan"), [
    ([], [("lecture", 2, "lean"), ("single", None, "lean")]),
    (["--edges", "3", "--no-single"], [("lecture", 3, "lean")]),
    (["--receiver", "aiortc"], [("lecture", 2, "aiortc"), ("single", None, "aiortc")]),
    (["--receiver", "both"], [("lecture", 2, "lean"), ("single", None, "lean"),
                              ("single-aiortc", None, "aiortc")]),
])
def test_the_phases_run_in_order(argv: list[str], plan: list[tuple[str, int | None, str]]
                                 ) -> None:
    parser = argparse.ArgumentParser()
    bench_lecture.configure_parser(parser)
    assert bench_lecture.phase_plan(parser.parse_args(argv)) == plan


@pytest.mark.parametrize("bad", ["0", "40,20", "x", ""])
def test_subscriber_counts_must_increase(bad: str) -> None:
    parser = argparse.ArgumentParser()
    bench_lecture.configure_parser(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--subscribers", bad])


# --- a tiny real run -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")
async def test_a_tiny_lecture_over_an_origin_and_two_edges() -> None:
    parser = argparse.ArgumentParser()
    bench_lecture.configure_parser(parser)
    args = parser.parse_args(["--subscribers", "2,4", "--edges", "2", "--duration", "2",
                              "--warmup", "1", "--receiver-processes", "1", "--no-single"])
    result = await bench_lecture.run(args)
    steps = result["phases"]["lecture"]["steps"]
    assert [s["subscribers"] for s in steps] == [2, 4]
    last = steps[-1]
    assert {n: v["role"] for n, v in last["nodes"].items()} == {
        "origin": "origin", "edge-1": "edge", "edge-2": "edge"}
    assert sum(v["subscribers"] for v in last["nodes"].values()) == 4
    assert last["failures"] == []
    for name, node in last["nodes"].items():
        if node["role"] == "edge" and node["subscribers"]:
            assert node["delivered_pct"]["video"] > 0, name
            assert node["delivered_pct"]["audio"] > 0, name
    assert any(n["subscribers"] for n in last["nodes"].values() if n["role"] == "edge")
    assert set(result["checks"]) >= {"delivered_ok", "origin", "edge_vs_single"}
    assert "origin" in render(result)


def test_every_viewer_has_its_own_loopback_address() -> None:
    addresses = [bench_lecture.viewer_address(i) for i in range(2000)]
    assert len(set(addresses)) == len(addresses)
    assert all(a.startswith("127.") and not a.endswith(".0") for a in addresses)
    assert bench_lecture.viewer_address(0) == "127.1.0.1"


@pytest.mark.parametrize(("counts", "joined", "window", "expected"), [
    ((1000, 3000, 3500), 20, 10.0, {"commands_per_join": 100.0, "commands_per_s": 50.0}),
    ((1000, 1000, 1000), 0, 0.0, {"commands_per_join": None, "commands_per_s": None}),
])
def test_redis_load(counts: tuple[int, int, int], joined: int, window: float,
                    expected: dict[str, float | None]) -> None:
    assert redis_load(*counts, joined, window) == expected


def test_roster_pushes_sum_frames_and_entries() -> None:
    counts = [{"session_frames": 3, "roster_entries": 6, "session_bytes_per_entry": 100.0},
              {"session_frames": 2, "roster_entries": 5, "session_bytes_per_entry": 120.0},
              {"session_frames": None, "roster_entries": None, "session_bytes_per_entry": None}]
    assert roster_pushes(counts) == {"session_frames": 5, "roster_entries": 11,
                                     "bytes_per_entry": 110.0}


def test_udp_drops_are_read_per_socket_inode() -> None:
    text = (
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
        "  timeout inode ref pointer drops\n"
        "  312: 0100007F:8A82 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
        "        0 1590825 2 00000000fc8b4d72 0\n"
        "  459: 0100007F:8B15 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
        "        0 1591923 2 000000007a3cfaea 17\n"
    )
    assert bench_lecture.parse_udp_drops(text) == {1590825: 0, 1591923: 17}
    assert bench_lecture.udp_drops([]) == 0
