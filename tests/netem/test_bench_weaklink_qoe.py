"""QoE from counters over time (bench.lab.qoe): freezes, audio gaps and concealment, adaptation
and recovery times, counters across resets. Pure: no root, no network."""

from __future__ import annotations

import pytest

from bench.lab import qoe


def steady(start: float, end: float, fps: float, first: float = 0.0) -> list[qoe.Point]:
    """A frame counter sampled every 1/fps s, growing by one each sample."""
    points, n, t = [], first, start
    while t <= end + 1e-9:
        points.append((round(t, 6), n))
        n += 1
        t += 1 / fps
    return points


def with_pause(fps: float, pause_from: float, pause_to: float, end: float) -> list[qoe.Point]:
    """Frames at `fps` over [0, end] except none in (pause_from, pause_to)."""
    before = steady(0.0, pause_from, fps)
    after = steady(pause_to, end, fps, first=before[-1][1] + 1)
    return before + after


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (steady(0, 10, 30), []),
        (with_pause(30, 2.0, 2.4, 10), []),  # 0.4 s is not a freeze
        (with_pause(30, 2.0, 3.0, 10), [(2.0, 1.0)]),
        (steady(0, 3, 30), [(3.0, 7.0)]),  # stops: frozen until the window ends
        ([], [(0.0, 10.0)]),  # nothing at all is one freeze
    ],
    ids=["smooth", "short-pause", "one-second", "stopped", "nothing"],
)
def test_freezes_are_stretches_longer_than_half_a_second_without_a_new_frame(
    points: list[qoe.Point], expected: list[tuple[float, float]]
) -> None:
    found = qoe.freezes(points, 0.0, 10.0)
    assert [(round(f.start, 1), round(f.seconds, 1)) for f in found] == expected


def test_a_slow_but_regular_stream_freezes_at_every_frame() -> None:
    found = qoe.freezes(steady(0, 10, 1.5), 0.0, 10.0)
    assert len(found) == 15
    assert all(f.seconds == pytest.approx(2 / 3, abs=0.01) for f in found)


def test_freezes_only_count_inside_the_window() -> None:
    points = with_pause(30, 2.0, 3.0, 10)
    assert qoe.freezes(points, 4.0, 10.0) == []


@pytest.mark.parametrize(
    ("concealed_steps", "expected_gaps"),
    [
        ([0, 0, 0, 0], 0),
        ([2400, 0, 0, 0], 0),  # 50 ms
        ([4800 + 1, 0, 0, 0], 1),  # just over 100 ms in one interval
        ([3000, 3000, 0, 0], 1),  # 125 ms over two intervals: one gap
        ([6000, 0, 6000, 0], 2),
    ],
)
def test_audio_gaps_join_consecutive_concealment(
    concealed_steps: list[int], expected_gaps: int
) -> None:
    received = [(i * 0.25, i * 12_000.0) for i in range(len(concealed_steps) + 1)]
    concealed, total = [(0.0, 0.0)], 0.0
    for i, step in enumerate(concealed_steps, start=1):
        total += step
        concealed.append((i * 0.25, total))
    gaps, share = qoe.audio_from_concealment(received, concealed, 0.0, received[-1][0])
    assert gaps == expected_gaps
    assert share == pytest.approx(sum(concealed_steps) / received[-1][1])


def test_audio_from_frame_counts_gives_the_missing_share() -> None:
    frames = [(t / 50, float(t)) for t in range(0, 500)]  # 10 s of 20 ms frames
    gaps, share = qoe.audio_from_frame_counts(frames, 0.0, 10.0)
    assert gaps == 0
    assert share == pytest.approx(0.0, abs=0.01)
    holed = [p for p in frames if not 4.0 < p[0] < 5.0]
    holed = [(t, float(i)) for i, (t, _) in enumerate(holed)]
    gaps, share = qoe.audio_from_frame_counts(holed, 0.0, 10.0)
    assert gaps == 1
    assert share == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize(
    ("points", "drop_at", "expected"),
    [
        (steady(0, 20, 30), 5.0, 0.0),  # never stopped playing: adapted at once
        (with_pause(30, 5.0, 8.0, 20), 5.0, 3.0),  # frozen 3 s after the drop, then smooth
        (steady(0, 5, 30) + [(t, 200.0) for t in (6.0, 20.0)], 5.0, None),  # never again
        (steady(0, 20, 2), 5.0, None),  # too slow to count as playing
    ],
    ids=["smooth", "freeze-then-smooth", "stopped", "slideshow"],
)
def test_video_back_after_is_when_the_video_plays_smoothly_again(
    points: list[qoe.Point], drop_at: float, expected: float | None
) -> None:
    got = qoe.video_back_after(points, drop_at, 20.0)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=0.1)


def concealed_between(hidden: list[tuple[float, float]]) -> object:
    """An audio_share(a, b) for audio concealed during the `hidden` stretches."""

    def share(a: float, b: float) -> float:
        lost = sum(max(0.0, min(b, y) - max(a, x)) for x, y in hidden)
        return lost / (b - a)

    return share


FROZEN_AFTER_5 = steady(0, 5, 30)  # the camera stops at the drop (5 s) and never plays again


@pytest.mark.parametrize(
    ("frames", "hidden", "paused", "expected"),
    [
        # played on through the drop with clear audio: adapted at once
        (steady(0, 20, 30), [], [], 0.0),
        # the camera back at 8 s, the audio clear throughout
        (with_pause(30, 5.0, 8.0, 20), [], [], 3.0),
        # the camera paused with the notice from 6.5 s, the audio clear from 7 s
        (FROZEN_AFTER_5, [(5.0, 7.0)], [(6.5, 20.0)], 2.0),
        # a notice but audio broken up throughout (10% concealed)
        (FROZEN_AFTER_5, [(t, t + 0.1) for t in range(5, 20)], [(6.0, 20.0)], None),
        # neither playing nor the notice shown: not adapted, however clear the audio
        (FROZEN_AFTER_5, [], [], None),
        # a notice that is taken down after 1 s is not a state (a probe of low): later
        (FROZEN_AFTER_5, [], [(5.5, 6.5), (9.0, 20.0)], 4.0),
    ],
    ids=["smooth", "video-back", "notice", "audio-broken", "nothing", "brief-notice"],
)
def test_adapted_after_wants_clear_audio_and_the_camera_playing_or_its_pause_shown(
    frames: list[qoe.Point],
    hidden: list[tuple[float, float]],
    paused: list[tuple[float, float]],
    expected: float | None,
) -> None:
    got = qoe.adapted_after(frames, concealed_between(hidden), paused, 5.0, 20.0)  # type: ignore[arg-type]
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=0.01)


def test_recovered_after_waits_for_the_frame_rate_and_the_height() -> None:
    frames = steady(0, 10, 10) + steady(10.1, 30, 30, first=101)
    heights = [(0.0, 180.0), (14.0, 360.0)]
    got = qoe.recovered_after(frames, heights, 10.0, 30.0, target_fps=30, target_height=360)
    assert got == pytest.approx(3.0, abs=0.2)
    assert qoe.recovered_after(frames, heights, 10.0, 30.0, 30, 720) is None


def test_resumed_after_is_the_first_frame_after_the_link_returns() -> None:
    frames = with_pause(30, 15.0, 21.5, 30)
    assert qoe.resumed_after(frames, 20.0, 30.0) == pytest.approx(1.5, abs=0.05)
    assert qoe.resumed_after(steady(0, 15, 30), 20.0, 30.0) is None


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([(0, 5), (1, 10), (2, 15)], [5, 10, 15]),
        ([(0, 5), (1, 10), (2, 3), (3, 8)], [5, 10, 13, 18]),  # a reset at 2
        ([(0, 0), (1, 0)], [0, 0]),
    ],
)
def test_monotonic_counts_across_resets(
    points: list[qoe.Point], expected: list[float]
) -> None:
    assert [v for _, v in qoe.monotonic(points)] == expected


@pytest.mark.parametrize(
    ("points", "end", "flowing"),
    [
        (steady(0, 30, 30), 30.0, True),
        (steady(0, 20, 30), 30.0, False),
        ([], 30.0, False),
    ],
)
def test_flowing_at_end(points: list[qoe.Point], end: float, flowing: bool) -> None:
    assert qoe.flowing_at_end(points, end) is flowing


def test_rate_and_value_at() -> None:
    points = steady(0, 10, 30)
    assert qoe.rate_per_s(points, 0.0, 10.0) == pytest.approx(30, abs=0.5)
    assert qoe.value_at(points, -1.0) == 0.0
    assert qoe.rate_per_s(points, 5.0, 5.0) == 0.0
