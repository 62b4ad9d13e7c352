"""Keyframe requests are coalesced and rate-limited per published track."""

from __future__ import annotations

import pytest

from media.forward.keyframe_requests import KeyframeRequests


@pytest.mark.parametrize(
    ("events", "sent"),
    [
        # the first request goes out at once
        ([("want", 0.0)], [True]),
        # many subscribers within the interval: one PLI
        ([("want", 0.0), ("want", 0.1), ("want", 0.39)], [True, False, False]),
        # still no keyframe after the interval: ask again (once)
        ([("want", 0.0), ("due", 0.2), ("due", 0.4), ("due", 0.5)], [True, False, True, False]),
        # a keyframe arrived: nothing more to ask
        ([("want", 0.0), ("seen", 0.1), ("due", 0.5)], [True, None, False]),
        # a new request after a keyframe, past the interval
        ([("want", 0.0), ("seen", 0.1), ("want", 1.0)], [True, None, True]),
        # a new request after a keyframe but inside the interval waits for due
        ([("want", 0.0), ("seen", 0.1), ("want", 0.2), ("due", 0.4)], [True, None, False, True]),
        # nothing wanted: never due
        ([("due", 5.0)], [False]),
        # deferred (the source is paused): no PLI now, one at the next due
        ([("defer", 0.0), ("due", 0.1)], [None, True]),
        # deferred, then a keyframe came anyway: nothing to ask
        ([("defer", 0.0), ("seen", 0.1), ("due", 0.2)], [None, None, False]),
    ],
)
def test_keyframe_requests(events: list[tuple[str, float]], sent: list[bool | None]) -> None:
    requests = KeyframeRequests(min_interval=0.4)
    results: list[bool | None] = []
    for op, now in events:
        if op == "want":
            results.append(requests.want(now))
        elif op == "due":
            results.append(requests.due(now))
        elif op == "defer":
            requests.defer()
            results.append(None)
        else:
            requests.keyframe_seen()
            results.append(None)
    assert results == sent


def test_next_check_is_one_interval_after_the_last_pli_while_wanted() -> None:
    requests = KeyframeRequests(min_interval=0.4)
    assert requests.next_check() is None
    requests.want(10.0)
    assert requests.next_check() == pytest.approx(10.4)
    requests.keyframe_seen()
    assert requests.next_check() is None
