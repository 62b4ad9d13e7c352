"""SeqMap keeps each outbound sequence continuous across drops, loss and source switches."""

from __future__ import annotations

import itertools

import pytest

from media.rtp.seqmap import SeqMap


def run(ops: list[tuple[str, int]], first_out: int = 1000) -> list[object]:
    """Apply ('map'|'drop'|'reverse'|'restart'|'take', n) operations and collect their
    results."""
    m = SeqMap(first_out)
    out: list[object] = []
    for op, n in ops:
        if op == "map":
            out.append(m.map(n))
        elif op == "drop":
            out.append(m.drop(n))
        elif op == "reverse":
            out.append(m.reverse(n))
        elif op == "take":
            out.append(m.take())
        else:
            m.restart()
            out.append(None)
    return out


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        # the first packet lands on first_out; in-order packets follow one by one
        ([("map", 500), ("map", 501), ("map", 502)], [1000, 1001, 1002]),
        # loss upstream leaves the same hole downstream (the subscriber NACKs it)
        ([("map", 500), ("map", 503)], [1000, 1003]),
        # a late packet fills its hole
        ([("map", 500), ("map", 502), ("map", 501)], [1000, 1002, 1001]),
        # a dropped packet leaves no hole
        ([("map", 500), ("drop", 501), ("map", 502)], [1000, True, 1001]),
        # several drops in a row
        ([("map", 7), ("drop", 8), ("drop", 9), ("map", 10)], [1000, True, True, 1001]),
        # only the next in-order packet can be dropped
        ([("map", 500), ("drop", 502), ("map", 502)], [1000, False, 1002]),
        ([("drop", 5)], [False]),
        # a late packet from before a drop keeps its original place
        ([("map", 500), ("map", 502), ("drop", 503), ("map", 501), ("map", 504)],
         [1000, 1002, True, 1001, 1003]),
        # wrap-around of the source sequence
        ([("map", 65534), ("map", 65535), ("map", 0), ("map", 1)], [1000, 1001, 1002, 1003]),
        # a source switch continues right after the last outbound number
        ([("map", 500), ("map", 501), ("restart", 0), ("map", 9000), ("map", 9001)],
         [1000, 1001, None, 1002, 1003]),
        # a restart before anything was mapped changes nothing
        ([("restart", 0), ("map", 42)], [None, 1000]),
        # a huge forward jump is a source reset: keep counting, no giant hole
        ([("map", 100), ("map", 30000)], [1000, 1001]),
        # a packet far older than anything mapped cannot be placed
        ([("map", 30000), ("map", 29000)], [1000, None]),
        # reverse: outbound -> source, across a drop
        ([("map", 500), ("drop", 501), ("map", 502), ("reverse", 1000), ("reverse", 1001)],
         [1000, True, 1001, 500, 502]),
        # reverse of a number never sent, and before anything was sent
        ([("map", 500), ("reverse", 1005)], [1000, None]),
        ([("reverse", 1000)], [None]),
        # reverse after a source switch only knows the new source
        ([("map", 500), ("restart", 0), ("map", 7), ("reverse", 1001), ("reverse", 1000)],
         [1000, None, 1001, 7, None]),
        # numbers taken for the relay's own packets (padding while paused) follow the last
        # one sent, and the next source continues after them
        ([("map", 500), ("take", 0), ("take", 0), ("restart", 0), ("map", 9000)],
         [1000, 1001, 1002, None, 1003]),
        ([("take", 0), ("map", 42), ("map", 43)], [1000, 1001, 1002]),
        # the source before the padding is closed: its packets are no longer placed
        ([("map", 500), ("take", 0), ("map", 501), ("reverse", 1000)], [1000, 1001, 1002, None]),
    ],
)
def test_seqmap_maps_drops_and_reverses(ops: list[tuple[str, int]], expected: list[object]) -> None:
    assert run(ops) == expected


def test_seqmap_outbound_sequence_wraps_around() -> None:
    assert run([("map", 10), ("map", 11), ("reverse", 0)], first_out=65535) == [65535, 0, 11]


def test_seqmap_next_out_follows_the_last_packet() -> None:
    m = SeqMap(7)
    assert m.next_out == 7
    m.map(100)
    m.map(101)
    assert m.next_out == 9
    m.drop(102)
    assert m.next_out == 9
    m.restart()
    assert m.next_out == 9


def test_seqmap_reverse_is_the_inverse_of_map_over_a_long_run() -> None:
    m = SeqMap(60000)
    sent: dict[int, int] = {}
    for seq in range(65000, 65000 + 3000):
        seq &= 0xFFFF
        if seq % 7 == 3 and m.drop(seq):
            continue
        out = m.map(seq)
        assert out is not None
        sent[out] = seq
    outs = sorted(sent, key=lambda o: (o - 60000) & 0xFFFF)
    assert all(((b - a) & 0xFFFF) == 1 for a, b in itertools.pairwise(outs))
    for out, seq in list(sent.items())[-200:]:
        assert m.reverse(out) == seq
