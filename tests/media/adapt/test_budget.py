"""`allocate` serves audio first (with RED on lossy links, held a while after the loss), then
screen (leaving a waiting camera its cheapest picture), speaker and other video, each video
track on the best rung its share allows, with hysteresis kept per track."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from media.adapt.budget import (
    Allocation,
    BudgetPolicy,
    IncomingTrack,
    Priority,
    allocate,
    red_state,
    unaccounted_bps,
)
from media.adapt.estimator import EstimateBound, LinkEstimate
from media.adapt.rung import Rung, RungCosts, RungReason

CAMERA = RungCosts((400_000.0, 200_000.0, 400_000.0), low_bps=150_000.0)
"""1 Mbit/s L1T3 camera: 400k / 600k / 1M, low 150k."""
SCREEN = RungCosts((150_000.0, 50_000.0, 100_000.0))
"""300k screen share, no low rendition: 7.5 fps 150k, 15 fps 200k."""

TEACHER_MIC = IncomingTrack("teacher-mic", Priority.LEAD_AUDIO, audio_bps=40_000)
CLASS_MIC = IncomingTrack("class-mic", Priority.AUDIO, audio_bps=30_000)
TEACHER_SCREEN = IncomingTrack("teacher-screen", Priority.SCREEN, costs=SCREEN)
TEACHER_CAM = IncomingTrack("teacher-cam", Priority.SPEAKER_VIDEO, costs=CAMERA)


def link(bps: float, loss: float = 0.0, sent: float = 0.0) -> LinkEstimate:
    """An estimate of `bps` with `loss`, while the relay sends `sent` (0: not measured)."""
    return LinkEstimate(bps, loss, 0.05, 0.01, EstimateBound.LOSS, sent, bps)


def rungs(allocation: Allocation) -> dict[str, str]:
    out = {}
    for t in allocation.tracks:
        if t.decision is None:
            out[t.track_id] = "audio"
        elif t.decision.rung is Rung.REDUCED_FPS:
            out[t.track_id] = f"reduced_fps/{t.decision.temporal_layers}"
        else:
            out[t.track_id] = str(t.decision.rung)
    return out


CLASS_VIEW = [TEACHER_CAM, TEACHER_SCREEN, CLASS_MIC, TEACHER_MIC]
"""What a classroom receives from the teacher (given out of order on purpose)."""


@pytest.mark.parametrize(
    ("estimate", "expected"),
    [
        (
            5_000_000,
            {"teacher-screen": "full", "teacher-cam": "full"},
        ),
        # 1M - 70k audio = 930k; screen 300k; camera 630k: 600k > 0.85 x 630k -> 7.5 fps
        (1_000_000, {"teacher-screen": "full", "teacher-cam": "reduced_fps/1"}),
        # 500k - 70k = 430k; the screen leaves the camera its cheapest picture (low, 150k /
        # 0.85 = 176k) and takes 254k: 15 fps (200k <= 0.85 x 254k); camera 230k -> low
        # (150k), where an uncapped screen would have left it 130k: paused
        (500_000, {"teacher-screen": "reduced_fps/2", "teacher-cam": "low"}),
        # 400k - 70k = 330k; screen 154k, raised to its cheapest rung (150k / 0.85 = 176k):
        # 7.5 fps; camera 180k -> low
        (400_000, {"teacher-screen": "reduced_fps/1", "teacher-cam": "low"}),
        # 700k - 70k = 630k; screen at most 454k: full (300k); camera 330k -> low
        (700_000, {"teacher-screen": "full", "teacher-cam": "low"}),
        # 300k - 70k = 230k; screen 15 fps (200k) > 0.85 x 230k -> 7.5 fps; camera 80k: paused
        (300_000, {"teacher-screen": "reduced_fps/1", "teacher-cam": "audio_only"}),
        # 100k: audio only, both videos paused
        (100_000, {"teacher-screen": "audio_only", "teacher-cam": "audio_only"}),
    ],
)
def test_audio_then_screen_then_speaker_video_on_the_best_rung_that_fits(
    estimate: float, expected: dict[str, str]
) -> None:
    allocation = allocate(link(estimate), CLASS_VIEW, None, 0.0)
    assert [t.track_id for t in allocation.tracks] == [
        "teacher-mic",
        "class-mic",
        "teacher-screen",
        "teacher-cam",
    ]
    got = rungs(allocation)
    assert got == {"teacher-mic": "audio", "class-mic": "audio", **expected}
    assert allocation.spent_bps == sum(t.cost_bps for t in allocation.tracks)


def test_audio_is_never_cut_even_over_budget() -> None:
    allocation = allocate(link(50_000), CLASS_VIEW, None, 0.0)
    assert rungs(allocation)["teacher-mic"] == "audio"
    assert allocation.spent_bps == 70_000
    assert "over budget" in allocation.reason


@pytest.mark.parametrize(
    ("losses", "red"),
    [
        ([(0, 0.0)], False),
        ([(0, 0.01)], False),
        ([(0, 0.015)], True),
        ([(0, 0.015), (1, 0.007)], True),  # stays on above red_off_below
        ([(0, 0.015), (20, 0.007)], True),  # ... however long after
        ([(0, 0.015), (16, 0.004)], False),  # off below red_off_below, once the hold is over
        ([(0, 0.008)], False),  # never turned on
    ],
)
def test_red_turns_on_above_1_percent_loss_and_off_below_half_a_percent(
    losses: list[tuple[float, float]], red: bool
) -> None:
    assert allocated_through(losses).red is red


def allocated_through(losses: list[tuple[float, float]]) -> Allocation:
    """The class view's allocation after a 5 Mbit/s link with these (time, loss) readings."""
    previous = None
    for now, loss in losses:
        previous = allocate(link(5_000_000, loss), CLASS_VIEW, previous, now)
    assert previous is not None
    return previous


@pytest.mark.parametrize(
    ("losses", "red"),
    [
        ([(0, 0.03), (1, 0.004)], True),  # a dip below red_off_below: held
        ([(0, 0.03), (14.9, 0.0)], True),
        ([(0, 0.03), (15, 0.0)], False),  # red_hold_s after the last lossy moment
        ([(0, 0.03), (10, 0.03), (20, 0.0)], True),  # the hold runs from the last lossy moment
        ([(0, 0.03), (10, 0.03), (25, 0.0)], False),
        ([(0, 0.03), (10, 0.008), (16, 0.004)], False),  # 0.8% is not lossy: no new hold
        ([(0, 0.03), (1, 0.0), (2, 0.0), (14, 0.03), (28, 0.0)], True),
        ([(0, 0.03), (16, 0.0), (17, 0.008)], False),  # once off, it takes > 1% again
    ],
)
def test_red_stays_on_for_red_hold_s_after_the_loss_last_exceeded_red_on_above(
    losses: list[tuple[float, float]], red: bool
) -> None:
    previous = allocated_through(losses)
    assert previous.red is red
    assert BudgetPolicy().red_hold_s == 15.0
    if red:
        lossy = [now for now, loss in losses if loss > BudgetPolicy().red_on_above]
        assert previous.lossy_at == lossy[-1]
    else:
        assert previous.lossy_at is None


@pytest.mark.parametrize(
    ("loss", "was_on", "lossy_at", "now", "negotiated", "expected"),
    [
        (0.03, False, None, 5.0, True, (True, 5.0)),
        (0.03, False, None, 5.0, False, (False, None)),  # not negotiated: never, no memory
        (0.008, False, None, 5.0, True, (False, None)),
        (0.008, True, 1.0, 5.0, True, (True, 1.0)),  # hysteresis keeps it, the hold unchanged
        (0.0, True, 1.0, 15.9, True, (True, 1.0)),
        (0.0, True, 1.0, 16.0, True, (False, None)),
        (0.0, True, None, 5.0, True, (False, None)),  # no lossy moment known: no hold
    ],
)
def test_red_state_is_the_thresholds_plus_the_hold(
    loss: float,
    was_on: bool,
    lossy_at: float | None,
    now: float,
    negotiated: bool,
    expected: tuple[bool, float | None],
) -> None:
    previous = Allocation((), was_on, 0.0, 0.0, "", lossy_at=lossy_at)
    assert red_state(loss, previous, now, BudgetPolicy(), negotiated) == expected


@pytest.mark.parametrize(
    ("lossy_at", "congested_at", "now", "on"),
    [
        # the loss of an overflow the estimate answered (read within 3 s of the congestion):
        # RED held 3 s after it, not 15
        (10.0, 9.0, 12.9, True),
        (10.0, 9.0, 13.0, False),
        (12.0, 9.0, 14.9, True),
        # the link's own loss: 15 s, whether no congestion came, or long before, or after it
        (10.0, None, 13.0, True),
        (10.0, 5.0, 13.0, True),
        (8.0, 9.0, 13.0, True),
        (10.0, 5.0, 25.0, False),
    ],
)
def test_red_after_a_congestion_is_held_only_briefly(
    lossy_at: float, congested_at: float | None, now: float, on: bool
) -> None:
    previous = Allocation((), True, 0.0, 0.0, "", lossy_at=lossy_at)
    assert red_state(0.0, previous, now, BudgetPolicy(), True, congested_at)[0] is on


def test_red_counts_its_extra_cost_against_the_video_budget() -> None:
    # 450k, the screen alone: without RED, 380k left -> full (300k <= 0.85 x 380k); with RED
    # (half the audio rate again: 105k of audio) 345k left -> 300k > 0.85 x 345k -> 15 fps.
    view = [TEACHER_SCREEN, CLASS_MIC, TEACHER_MIC]
    clean = allocate(link(450_000, 0.0), view, None, 0.0)
    lossy = allocate(link(450_000, 0.03), view, None, 0.0)
    assert BudgetPolicy().red_extra == 0.5
    assert clean.of("teacher-mic") is not None and clean.of("teacher-mic").cost_bps == 40_000
    assert lossy.of("teacher-mic") is not None and lossy.of("teacher-mic").cost_bps == 60_000
    assert lossy.of("class-mic") is not None and lossy.of("class-mic").cost_bps == 45_000
    assert rungs(clean)["teacher-screen"] == "full"
    assert rungs(lossy)["teacher-screen"] == "reduced_fps/2"
    assert "+RED" in lossy.reason and "+RED" not in clean.reason


def test_red_needs_the_subscriber_to_have_negotiated_it() -> None:
    allocation = allocate(link(500_000, 0.05), CLASS_VIEW, None, 0.0, red_negotiated=False)
    assert allocation.red is False


def test_other_classrooms_split_what_the_speaker_leaves_equally() -> None:
    """The teacher's view: three classrooms, one spotlighted."""
    tracks = [
        IncomingTrack("mic-a", Priority.AUDIO, audio_bps=30_000),
        IncomingTrack("cam-a", Priority.SPEAKER_VIDEO, costs=CAMERA),
        IncomingTrack("cam-b", Priority.OTHER_VIDEO, costs=CAMERA),
        IncomingTrack("cam-c", Priority.OTHER_VIDEO, costs=CAMERA),
    ]
    # 2M - 30k audio; speaker full (1M); 970k for two others: 485k each -> 7.5 fps (400k).
    allocation = allocate(link(2_000_000), tracks, None, 0.0)
    assert rungs(allocation) == {
        "mic-a": "audio",
        "cam-a": "full",
        "cam-b": "reduced_fps/1",
        "cam-c": "reduced_fps/1",
    }
    assert allocation.of("cam-b") is not None and allocation.of("cam-b").share_bps == 485_000
    assert allocation.reason == (
        "estimate 2000k loss 0.0%: audio 30k; speaker full; other 2 reduced_fps/1"
    )


def test_each_track_keeps_its_hysteresis_through_previous() -> None:
    previous = allocate(link(5_000_000), CLASS_VIEW, None, 0.0)
    timeline = []
    for i in range(1, 13):
        now = i * 0.25
        previous = allocate(link(800_000), CLASS_VIEW, previous, now)
        timeline.append((now, rungs(previous)["teacher-cam"]))
    # 800k - 70k - 300k = 430k for the camera: low (7.5 fps is 400k > 0.85 x 430k), but only
    # down_after_s after the shortfall was first seen (0.25).
    assert timeline[3] == (1.0, "full")
    assert timeline[4] == (1.25, "low")
    assert all(r == "low" for _, r in timeline[4:])


def test_new_tracks_start_fresh_and_removed_tracks_are_forgotten() -> None:
    first = allocate(link(5_000_000), [TEACHER_MIC, TEACHER_CAM], None, 0.0)
    second = allocate(link(5_000_000), [TEACHER_MIC, TEACHER_SCREEN], first, 1.0)
    assert second.of("teacher-cam") is None
    screen = second.of("teacher-screen")
    assert screen is not None and screen.decision is not None
    assert screen.decision.switched and screen.decision.changed_at == 1.0


def test_default_policy_is_shared_with_the_rung_decision() -> None:
    assert BudgetPolicy().rung.down_after_s == 1.0


@pytest.mark.parametrize(
    ("estimate", "reserve", "expected"),
    [
        # 500k - 70k = 430k: uncapped, the screen takes 300k and leaves the camera 130k
        (500_000, False, {"teacher-screen": "full", "teacher-cam": "audio_only"}),
        # the camera's low picture set aside (176k): slides at 15 fps, and the camera keeps it
        (500_000, True, {"teacher-screen": "reduced_fps/2", "teacher-cam": "low"}),
        # 2M: the cap (1.75M) is above what the screen costs: nothing changes
        (2_000_000, True, {"teacher-screen": "full", "teacher-cam": "full"}),
    ],
)
def test_a_screen_share_leaves_a_camera_its_cheapest_picture(
    estimate: float, reserve: bool, expected: dict[str, str]
) -> None:
    policy = BudgetPolicy(camera_reserve=reserve)
    allocation = allocate(link(estimate), CLASS_VIEW, None, 0.0, policy)
    got = rungs(allocation)
    assert {k: got[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("estimate", "share"),
    [
        (500_000, 430_000 - 150_000 / 0.85),
        (700_000, 630_000 - 150_000 / 0.85),
        # 230k - 176k = 54k would leave no slide rung: the cheapest (150k) within headroom
        (300_000, 150_000 / 0.85),
        (200_000, 130_000),  # never more than an equal split (all there is)
    ],
)
def test_the_screen_leaves_the_camera_its_cheapest_picture_but_keeps_its_own(
    estimate: float, share: float
) -> None:
    allocation = allocate(link(estimate), CLASS_VIEW, None, 0.0)
    screen = allocation.of("teacher-screen")
    assert screen is not None and screen.share_bps == pytest.approx(share)


def test_a_screen_over_its_capped_share_leaves_the_camera_its_reserve() -> None:
    """The slides' costs rose (a busier slide) 6% over their capped share: they step down
    when their shortfall says so, but until then the camera's share is what the cap left it,
    not what the slides took."""
    first = allocate(link(500_000), CLASS_VIEW, None, 0.0)
    screen = first.of("teacher-screen")
    assert screen is not None and rungs(first)["teacher-screen"] == "reduced_fps/2"
    busier = IncomingTrack(
        "teacher-screen", Priority.SCREEN, costs=RungCosts((190_000.0, 80_000.0, 100_000.0))
    )
    view = [busier if t.track_id == "teacher-screen" else t for t in CLASS_VIEW]
    after = allocate(link(500_000), view, first, 0.25)
    slides, camera = after.of("teacher-screen"), after.of("teacher-cam")
    assert slides is not None and camera is not None
    assert slides.cost_bps == 270_000 > slides.share_bps == pytest.approx(screen.share_bps)
    assert camera.share_bps == pytest.approx(430_000 - slides.share_bps)


def test_without_a_camera_the_screen_share_is_not_capped() -> None:
    view = [TEACHER_SCREEN, CLASS_MIC, TEACHER_MIC]
    allocation = allocate(link(500_000), view, None, 0.0)
    screen = allocation.of("teacher-screen")
    assert screen is not None and screen.share_bps == 430_000
    assert rungs(allocation)["teacher-screen"] == "full"


def test_a_capped_screen_share_is_not_probed_above_its_cap() -> None:
    # 500k: the screen's share is capped at 254k; 15 fps (200k) fits, full (300k) does not.
    # Uncapped, a link whose estimate covers 15 fps would probe full after probe_interval_s.
    previous = None
    for i in range(120):
        previous = allocate(link(500_000), CLASS_VIEW, previous, i * 0.25)
        got = rungs(previous)
        assert got["teacher-screen"] == "reduced_fps/2", i
        assert got["teacher-cam"] in ("low", "reduced_fps/1"), i
    screen = previous.of("teacher-screen") if previous is not None else None
    assert screen is not None and screen.decision is not None
    assert screen.decision.probe_until is None


def test_a_loss_reading_older_than_the_last_loss_step_does_not_step_again() -> None:
    """After a loss step the estimator's window needs new reports; until they come, the loss it
    shows is the reading already answered, and must not pause the next rung down too."""
    lossy = replace(link(1_000_000, 0.3), loss_at=1.0)
    first = allocate(lossy, CLASS_VIEW, allocate(link(1_000_000), CLASS_VIEW, None, 0.0), 1.0)
    stepped = first.of("teacher-cam")
    assert stepped is not None and stepped.decision is not None
    assert stepped.decision.reason is RungReason.LOSS
    later = 1.0 + BudgetPolicy().rung.loss_step_interval_s + 0.5
    same = allocate(lossy, CLASS_VIEW, first, later)  # no report since: loss_at still 1.0
    again = allocate(replace(lossy, loss_at=later), CLASS_VIEW, first, later)  # a new report
    assert rungs(same)["teacher-cam"] == rungs(first)["teacher-cam"]
    assert rungs(again)["teacher-cam"] != rungs(first)["teacher-cam"]


def probes_over(
    bps: float,
    tracks: list[IncomingTrack],
    seconds: float = 12.0,
    sent: float = 0.0,
    resume_probe_max_bps: float = math.inf,
) -> list[str]:
    """Allocate every 0.5 s on a steady estimate while the relay sends `sent`: the tracks that
    started a probe."""
    previous = allocate(link(bps), tracks, None, 0.0)
    started = []
    for tick in range(1, int(seconds * 2) + 1):
        previous = allocate(
            link(bps, sent=sent), tracks, previous, tick * 0.5,
            resume_probe_max_bps=resume_probe_max_bps,
        )  # fmt: skip
        started += [
            t.track_id
            for t in previous.tracks
            if t.decision is not None and t.decision.switched and t.decision.reason == "probe"
        ]
    return started


def test_with_every_video_paused_a_probe_starts_even_if_audio_alone_exceeds_the_estimate() -> None:
    """An estimate cut below the audio (a burst of loss) must not keep the video off for good:
    with nothing but audio sent, it cannot rise by itself, so the cheapest video is probed."""
    assert probes_over(60_000, [TEACHER_SCREEN, TEACHER_MIC])[:1] == ["teacher-screen"]


def test_a_paused_video_is_not_probed_back_above_what_padding_failed_to_carry() -> None:
    """A padding probe that failed at 120k says the link cannot carry the audio and the
    cheapest video (more than that): no rung probe plays seconds of broken video to find
    out again. One that failed higher says nothing against it."""
    tracks = [TEACHER_SCREEN, TEACHER_MIC]
    assert probes_over(60_000, tracks, resume_probe_max_bps=120_000) == []
    assert probes_over(60_000, tracks, resume_probe_max_bps=600_000)[:1] == ["teacher-screen"]


def test_no_probe_while_the_video_sent_already_tests_the_estimate() -> None:
    """Screen at 7.5 fps (150k) and audio (40k) spend over 85% of 220k: what is sent tests the
    estimate, which rises by itself if the link allows; no probe stacks on it. At 225k they
    spend less (84%), but 15 fps (200k) would take the whole to 240k, over the estimate: no
    probe either. At 245k it fits: 15 fps is probed."""
    assert probes_over(220_000, [TEACHER_SCREEN, TEACHER_MIC]) == []
    assert probes_over(225_000, [TEACHER_SCREEN, TEACHER_MIC]) == []
    assert probes_over(245_000, [TEACHER_SCREEN, TEACHER_MIC]) == ["teacher-screen"]


def test_no_probe_while_what_is_sent_tests_the_estimate() -> None:
    """The rungs' costs leave out retransmissions and headers: the slides at 7.5 fps (150k) and
    audio (40k) spend 76% of 250k, but 230k sent (92%) already tests it. Sending 200k (80%)
    leaves room for the 15 fps probe."""
    tracks = [TEACHER_SCREEN, TEACHER_MIC]
    assert probes_over(250_000, tracks, sent=230_000) == []
    assert probes_over(250_000, tracks, sent=200_000) == ["teacher-screen"]


def _settled_at(bps: float, until: float) -> Allocation:
    """Allocations every 0.5 s on a steady estimate, up to `until`."""
    tracks = [TEACHER_SCREEN, TEACHER_CAM, TEACHER_MIC]
    previous = allocate(link(bps), tracks, None, 0.0)
    for tick in range(1, int(until * 2) + 1):
        previous = allocate(link(bps), tracks, previous, tick * 0.5)
    return previous


def test_a_fall_of_the_estimate_while_another_track_probes_does_not_step_a_bystander_down() -> None:
    """At 550k the screen probes full at 4 s (audio 40k + full 300k + the camera's low 150k).
    The estimate then falls to 420k (a receiver's REMB when the link queues the probe): the
    camera's share (80k) no longer covers its low rung. While the screen's probe runs that is
    the probe's test, not the camera's shortfall: the camera holds until the verdict (it was
    paused 1 s into the fall)."""
    tracks = [TEACHER_SCREEN, TEACHER_CAM, TEACHER_MIC]
    previous = _settled_at(550_000, 4.0)
    screen = previous.of("teacher-screen")
    assert screen is not None and screen.decision is not None
    assert screen.decision.probe_until is not None
    assert rungs(previous)["teacher-screen"] == "full"
    assert rungs(previous)["teacher-cam"] == "low"
    seen = []
    for now in (4.5, 5.0, 5.5):  # within the probe's 2 s
        previous = allocate(link(420_000), tracks, previous, now)
        seen.append(rungs(previous)["teacher-cam"])
    assert seen == ["low", "low", "low"]


@pytest.mark.parametrize(
    ("sent", "spent", "estimate", "expected"),
    [
        (510_000, (440_000, 430_000), 410_000, 70_000),  # weak: retransmissions, lagging costs
        (400_000, (440_000, 300_000), 410_000, 0.0),  # a step down: the window spans the dearer
        (900_000, (400_000,), 400_000, 100_000),  # at most a quarter of the estimate
        (500_000, (), 400_000, 0.0),  # nothing allocated yet: nothing to compare with
    ],
)
def test_what_is_sent_besides_the_allocation_is_unaccounted(
    sent: float, spent: tuple[float, ...], estimate: float, expected: float
) -> None:
    assert unaccounted_bps(sent, spent, estimate, BudgetPolicy()) == pytest.approx(expected)


def test_the_budget_leaves_out_what_is_sent_besides_the_allocation() -> None:
    """850k holds audio (40k), the slides (300k) and the camera's 7.5 fps (400k); with 100k
    sent besides them (retransmissions), the camera takes its low rung instead."""
    tracks = [TEACHER_SCREEN, TEACHER_CAM, TEACHER_MIC]
    audio = {"teacher-mic": "audio"}
    plain = allocate(link(850_000), tracks, None, 0.0)
    less = allocate(link(850_000), tracks, None, 0.0, unaccounted=100_000)
    assert rungs(plain) == {"teacher-screen": "full", "teacher-cam": "reduced_fps/1", **audio}
    assert rungs(less) == {"teacher-screen": "full", "teacher-cam": "low", **audio}
    assert less.unaccounted_bps == 100_000
    assert less.reason.startswith("estimate 850k-100k loss 0.0%")


def test_a_track_paused_on_a_loss_reading_resumes_without_waiting_for_a_new_one() -> None:
    """With only audio sent, a new loss reading can take seconds; the one that paused the
    camera says nothing about the link since, so an estimate that covers the camera's low
    rung brings it back after the usual hold."""
    tracks = [TEACHER_CAM, TEACHER_MIC]
    previous = allocate(link(300_000), tracks, None, 0.0)
    assert rungs(previous)["teacher-cam"] == "low"
    previous = allocate(link(300_000, loss=0.3), tracks, previous, 0.5)
    assert rungs(previous)["teacher-cam"] == "audio_only"
    assert previous.resuming is False
    seen = []
    for tick in range(2, 10):  # the same reading (no newer one) on every tick
        previous = allocate(link(300_000, loss=0.3), tracks, previous, tick * 0.5)
        seen.append((tick * 0.5, rungs(previous)["teacher-cam"], previous.resuming))
    assert (1.0, "audio_only", True) in seen, "waiting out the hold, within the estimate"
    assert ("low", False) in [(rung, resuming) for _, rung, resuming in seen]
    resumed_at = next(t for t, rung, _ in seen if rung == "low")
    assert resumed_at == pytest.approx(0.5 + 0.5 + BudgetPolicy().rung.up_hold_s)


@pytest.mark.parametrize(
    ("sent", "settled", "bound", "at_once"),
    [
        (700_000, False, EstimateBound.REMB, True),  # more than the estimate, and queued
        (700_000, True, EstimateBound.REMB, False),  # a REMB trailing a good link: no queue
        (600_000, False, EstimateBound.REMB, False),  # within the shortfall tolerance
        (700_000, False, EstimateBound.INITIAL, False),  # the starting guess is no evidence
    ],
)
def test_sending_more_than_the_estimate_into_a_queue_steps_down_at_once(
    sent: float, settled: bool, bound: EstimateBound, at_once: bool
) -> None:
    tracks = [TEACHER_CAM, TEACHER_MIC]
    previous = allocate(link(2_000_000), tracks, None, 0.0)
    assert rungs(previous)["teacher-cam"] == "full"
    dip = LinkEstimate(560_000, 0.0, 0.2, 0.0, bound, sent, 500_000, rtt_settled=settled)
    after = allocate(dip, tracks, previous, 0.5)
    assert (rungs(after)["teacher-cam"] != "full") is at_once



@pytest.mark.parametrize(
    ("rtt_s", "settled", "loss", "at_once"),
    [
        (0.0, False, 0.0, False),  # no RTT sample yet and no loss: nothing says it queues
        (0.0, False, 0.03, True),  # no RTT sample, but loss: the link overflows
        (0.2, False, 0.0, True),  # the RTT above its floor: a queue
        (0.2, True, 0.03, False),  # random loss on a link whose RTT is at its floor
    ],
)
def test_sending_over_the_estimate_steps_down_at_once_only_on_evidence_of_a_queue(
    rtt_s: float, settled: bool, loss: float, at_once: bool
) -> None:
    """An aiortc subscriber's first reports carry no RTT (no LSR yet): a healthy loopback one,
    sent its first keyframes a little over the estimate the first report gave, went from full
    to low at once."""
    tracks = [TEACHER_CAM, TEACHER_MIC]
    previous = allocate(link(2_000_000), tracks, None, 0.0)
    dip = LinkEstimate(
        560_000, loss, rtt_s, 0.0, EstimateBound.LOSS, 700_000, 500_000, rtt_settled=settled
    )
    after = allocate(dip, tracks, previous, 0.5)
    assert (rungs(after)["teacher-cam"] != "full") is at_once


def test_a_late_joiner_on_the_starting_guess_gets_the_publishers_stream_not_the_transcoder() -> (
    None
):
    cam = IncomingTrack(
        "teacher-cam", Priority.SPEAKER_VIDEO,
        costs=RungCosts.single_layer(1_000_000.0, low_bps=110_000.0),
    )  # fmt: skip
    guess = LinkEstimate(400_000, 0.0, 0.0, 0.0, EstimateBound.INITIAL, 0.0, 0.0)
    first = allocate(guess, [cam, TEACHER_MIC], None, 0.0)
    assert rungs(first)["teacher-cam"] == "full"
    held = allocate(guess, [cam, TEACHER_MIC], first, 1.5)
    assert rungs(held)["teacher-cam"] == "full", "no shortfall on a guess"


@pytest.mark.parametrize(
    ("flags", "red"),
    [
        ({}, True),
        ({"padding_probe": True}, False),  # a probe running, or just failed: its loss
        ({"probe_loss": True}, False),  # a reading a failed probe made, not replaced yet
    ],
)
def test_a_padding_probes_own_loss_turns_no_red_on(flags: dict[str, bool], red: bool) -> None:
    assert allocate(link(5_000_000, 0.3), CLASS_VIEW, None, 0.0, **flags).red is red
    # RED already on for the link's own loss stays on through a probe (its hold)
    on = allocate(link(5_000_000, 0.03), CLASS_VIEW, None, 0.0)
    assert allocate(link(5_000_000, 0.3), CLASS_VIEW, on, 1.0, **flags).red
