"""Quality of experience from what a receiver saw over time (pure).

Inputs are cumulative counters sampled over time, `(t, value)` points in time order: frames
decoded, bytes received, audio samples received and concealed (a browser's `getStats()` every
250 ms), or a received-frame count polled every 50 ms (an aiortc receiver, which does not decode).
Definitions (docs/measuring.md): a video freeze is no new frame for more than 0.5 s; an audio gap is
more than 0.1 s without audio (concealed by the decoder, or no frame arriving); the share of
time concealed is concealed samples over samples played. Adaptation timing:
- video back = the first moment after the link drops from which the camera plays at least
  `min_fps` for `hold_s` without a freeze (`video_back_after`);
- adapted = the first moment after the drop from which, for `hold_s`, the audio is concealed
  at most `audio_max` of the time and the camera either plays so or the page says it is
  paused (`adapted_after`): the state the very-weak goal accepts, "video >= 5 fps or audio
  only with the notice shown", reached on the new link;
- recovered = the first moment after it lifts when the frame rate and picture height are
  back to what they were before the drop.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Point = tuple[float, float]
"""(seconds, cumulative counter value)."""

FREEZE_S = 0.5
AUDIO_GAP_S = 0.1
AUDIO_FRAME_S = 0.02
AUDIO_RATE = 48_000


@dataclass(frozen=True, slots=True)
class Freeze:
    """A stretch without a new frame."""

    start: float
    seconds: float


def within(points: Sequence[Point], start: float, end: float) -> list[Point]:
    """The points in [start, end], preceded by the last one before `start` (the baseline)."""
    before = [p for p in points if p[0] < start]
    inside = [p for p in points if start <= p[0] <= end]
    return ([before[-1]] if before else []) + inside


def value_at(points: Sequence[Point], t: float) -> float:
    """The counter's value at `t`: the last point at or before it (0 before the first)."""
    value = 0.0
    for at, v in points:
        if at > t:
            break
        value = v
    return value


def increase_times(points: Sequence[Point]) -> list[float]:
    """The times at which the counter grew."""
    return [t for (_, a), (t, b) in itertools.pairwise(points) if b > a]


def freezes(
    points: Sequence[Point], start: float, end: float, threshold_s: float = FREEZE_S
) -> list[Freeze]:
    """Stretches in [start, end] longer than `threshold_s` without the frame counter growing
    (one still running at `end` counts up to `end`; before the first frame counts from
    `start`)."""
    found: list[Freeze] = []
    last = start
    for t in increase_times(within(points, start, end)):
        if t < start:
            continue
        if t - last > threshold_s:
            found.append(Freeze(last, t - last))
        last = t
    if end - last > threshold_s:
        found.append(Freeze(last, end - last))
    return found


def rate_per_s(points: Sequence[Point], start: float, end: float) -> float:
    """The counter's growth per second over [start, end]."""
    if end <= start:
        return 0.0
    return (value_at(points, end) - value_at(points, start)) / (end - start)


def audio_from_concealment(
    received: Sequence[Point],
    concealed: Sequence[Point],
    start: float,
    end: float,
    gap_s: float = AUDIO_GAP_S,
    rate: int = AUDIO_RATE,
) -> tuple[int, float]:
    """(gaps longer than `gap_s`, share of time concealed) from a browser's cumulative
    totalSamplesReceived and concealedSamples sampled at the same times. Consecutive sample
    intervals with concealment form one gap."""
    points = within(concealed, start, end)
    gaps, run = 0, 0.0
    for (_, a), (_, b) in itertools.pairwise(points):
        if b > a:
            run += (b - a) / rate
            continue
        if run > gap_s:
            gaps += 1
        run = 0.0
    if run > gap_s:
        gaps += 1
    total = value_at(received, end) - value_at(received, start)
    hidden = value_at(concealed, end) - value_at(concealed, start)
    share = min(1.0, hidden / total) if total > 0 else (1.0 if end > start else 0.0)
    return gaps, share


def audio_from_frame_counts(
    frames: Sequence[Point],
    start: float,
    end: float,
    gap_s: float = AUDIO_GAP_S,
    frame_s: float = AUDIO_FRAME_S,
) -> tuple[int, float]:
    """(gaps longer than `gap_s`, share of time missing) from a count of received audio
    frames of `frame_s` each: a gap is the count not growing for `gap_s`; the share is the
    audio time that did not arrive (what a receiver has to conceal)."""
    if end <= start:
        return 0, 0.0
    gaps = len(freezes(frames, start, end, gap_s))
    got = (value_at(frames, end) - value_at(frames, start)) * frame_s
    return gaps, min(1.0, max(0.0, 1.0 - got / (end - start)))


def video_back_after(
    frames: Sequence[Point],
    drop_at: float,
    end: float,
    min_fps: float = 5.0,
    hold_s: float = 2.0,
) -> float | None:
    """Seconds from `drop_at` until the video plays at least `min_fps` for `hold_s` with no
    freeze (0 when it never stopped doing so), or None if that never happens before `end`."""
    times = [t for t in increase_times(within(frames, drop_at, end)) if t >= drop_at]
    for i, t in enumerate(times):
        if t + hold_s > end:
            break
        if plays_through(frames, t, hold_s, min_fps):
            started = t if i > 0 or t - drop_at > FREEZE_S else drop_at
            return max(0.0, started - drop_at)
    return None


def plays_through(
    frames: Sequence[Point], start: float, hold_s: float, min_fps: float = 5.0
) -> bool:
    """Whether the video plays at least `min_fps` over [start, start + hold_s] without a
    freeze."""
    end = start + hold_s
    enough = value_at(frames, end) - value_at(frames, start) >= min_fps * hold_s
    return enough and not freezes(frames, start, end)


def covered(spans: Sequence[tuple[float, float]], start: float, end: float) -> bool:
    """Whether one of `spans` ([from, to] pairs) covers [start, end]."""
    return any(a <= start and end <= b for a, b in spans)


def adapted_after(
    frames: Sequence[Point],
    audio_share: Callable[[float, float], float],
    paused: Sequence[tuple[float, float]],
    drop_at: float,
    end: float,
    min_fps: float = 5.0,
    hold_s: float = 2.0,
    audio_max: float = 0.02,
    step_s: float = 0.25,
) -> float | None:
    """Seconds from `drop_at` until the subscriber is adapted to the new link for `hold_s`:
    `audio_share(a, b)` (the share of [a, b] concealed) at most `audio_max`, and the camera
    playing `min_fps` without a freeze or within a span of `paused` (the page saying the
    camera is paused); None if that never happens before `end`. Playing is counted from a
    frame (or the drop), as in `video_back_after`; the rest every `step_s`."""
    frame_times = {t for t in increase_times(within(frames, drop_at, end)) if t > drop_at}
    grid = {drop_at + i * step_s for i in range(int((end - drop_at) / step_s) + 1)}
    for t in sorted(frame_times | grid):
        if t + hold_s > end:
            break
        playing = (t == drop_at or t in frame_times) and plays_through(frames, t, hold_s, min_fps)
        camera_fine = playing or covered(paused, t, t + hold_s)
        if camera_fine and audio_share(t, t + hold_s) <= audio_max:
            return t - drop_at
    return None


def recovered_after(
    frames: Sequence[Point],
    heights: Sequence[Point],
    lift_at: float,
    end: float,
    target_fps: float,
    target_height: float,
    window_s: float = 1.0,
    fps_share: float = 0.8,
) -> float | None:
    """Seconds from `lift_at` until the frame rate over `window_s` reaches `fps_share` of
    `target_fps` and the picture is `target_height` again, or None before `end`."""
    for t, _ in within(frames, lift_at, end):
        if t < lift_at or t + window_s > end:
            continue
        fps = rate_per_s(frames, t, t + window_s)
        if fps >= fps_share * target_fps and value_at(heights, t + window_s) >= target_height:
            return t - lift_at
    return None


def resumed_after(frames: Sequence[Point], restore_at: float, end: float) -> float | None:
    """Seconds from `restore_at` until the next new frame, or None before `end`."""
    for t in increase_times(within(frames, restore_at, end)):
        if t >= restore_at:
            return t - restore_at
    return None


def flowing_at_end(points: Sequence[Point], end: float, last_s: float = 5.0) -> bool:
    """Whether the counter grew during the last `last_s` seconds before `end`."""
    return value_at(points, end) > value_at(points, end - last_s)


def monotonic(points: Sequence[Point]) -> list[Point]:
    """A counter made cumulative across resets (a rebuilt peer connection starts again at 0):
    a fall counts as a reset, so the value after it is all new."""
    out: list[Point] = []
    total, last = 0.0, None
    for t, v in points:
        if last is not None:
            total += v - last if v >= last else v
        else:
            total = v
        last = v
        out.append((t, total))
    return out


def max_freeze_after(found: Sequence[Freeze], after: float) -> float:
    """The longest freeze starting at or after `after` (0 if none)."""
    return max((f.seconds for f in found if f.start >= after), default=0.0)
