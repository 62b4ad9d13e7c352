"""Event shapes: every event round-trips through JSON with its `type`, channel names are stable."""

from __future__ import annotations

import json

import pytest

from broker.class_state import ClassState
from broker.consult_state import ConsultState, Outcome
from broker.events import (
    BrokerEvent,
    ClassStateChanged,
    ConsultStateChanged,
    ExpertAssignment,
    HandsChanged,
    PresenceChanged,
    QueueChanged,
    SpotlightChanged,
    decode_event,
    encode_event,
    expert_channel,
    queue_channel,
    session_channel,
)
from broker.models import Role

EVENTS: list[tuple[str, BrokerEvent]] = [
    ("class_state", ClassStateChanged(at=1.0, session="k1", state=ClassState.LIVE, by="t1")),
    (
        "presence",
        PresenceChanged(
            at=1.0, session="k1", participant_id="r1", role=Role.ASSISTANT, present=True
        ),
    ),
    ("spotlight", SpotlightChanged(at=1.0, session="k1", participant_id=None, by="t1")),
    ("hands", HandsChanged(at=1.0, session="k1", queue=["r2", "r1"])),
    (
        "consult_state",
        ConsultStateChanged(
            at=1.0,
            session="c1",
            state=ConsultState.ENDED,
            expert_id="d1",
            routed_site_id="prov",
            level=2,
            by="d1",
            outcome=Outcome.RESOLVED,
        ),
    ),
    (
        "queue_changed",
        QueueChanged(at=1.0, specialty="儿科", site_id="prov", ticket_id="c1", change="added"),
    ),
    (
        "assignment",
        ExpertAssignment(
            at=1.0, expert_id="d1", ticket_id="c1", state=ConsultState.MATCHED, change="claimed"
        ),
    ),
]


@pytest.mark.parametrize(("tag", "event"), EVENTS)
def test_events_round_trip_with_their_type(tag: str, event: BrokerEvent) -> None:
    data = encode_event(event)
    assert json.loads(data)["type"] == tag
    assert decode_event(data) == event


def test_channel_names() -> None:
    assert session_channel("c1") == "session:c1"
    assert expert_channel("d1") == "expert:d1"
    assert queue_channel("儿科", "prov") == "queue:儿科:prov"
