"""A dual-teacher class and its state machine (pure): scheduled -> live -> ended.

    scheduled --start--> live --end--> ended
    scheduled --end--> ended          (called off before it began)

Participants may join a scheduled class (classrooms get ready before the teacher starts) and a
live one (late joining); nobody joins an ended class.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from msgspec import Meta, Struct

from broker.errors import Conflict
from broker.models import EntityId, Skill

MAX_CLASSROOMS = 32
"""Rural classrooms one class may reach."""


class ClassState(StrEnum):
    """Where a class is in its life."""

    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class ClassEvent(StrEnum):
    """What can happen to a class."""

    START = "start"
    END = "end"


CLASS_TRANSITIONS: dict[tuple[ClassState, ClassEvent], ClassState] = {
    (ClassState.SCHEDULED, ClassEvent.START): ClassState.LIVE,
    (ClassState.SCHEDULED, ClassEvent.END): ClassState.ENDED,
    (ClassState.LIVE, ClassEvent.END): ClassState.ENDED,
}
"""Every allowed (state, event) and the state it leads to; anything else is a conflict."""


def next_class_state(state: ClassState, event: ClassEvent) -> ClassState:
    """The state after `event`; raises `Conflict` when `event` cannot happen in `state`."""
    try:
        return CLASS_TRANSITIONS[(state, event)]
    except KeyError:
        raise Conflict(
            f"a class that is {ClassState(state).value} cannot {ClassEvent(event).value}"
        ) from None


def check_may_join(state: ClassState) -> None:
    """Raise `Conflict` unless participants may join a class in `state`."""
    if state is ClassState.ENDED:
        raise Conflict("this class has ended")


class ClassSession(Struct, frozen=True, kw_only=True):
    """One dual-teacher class: a teacher, N rural classrooms, optional observers."""

    id: EntityId
    """Class id; also the media session id."""
    title: Annotated[str, Meta(min_length=1, max_length=200)]
    """What the lesson is (e.g. 四年级数学：分数的初步认识)."""
    subject: Skill
    """School subject (e.g. 数学)."""
    teacher_id: EntityId
    """The teaching expert (host)."""
    starts_at: float
    """Planned start, epoch seconds."""
    duration_s: float
    """Planned length in seconds."""
    classroom_site_ids: Annotated[
        tuple[EntityId, ...], Meta(min_length=1, max_length=MAX_CLASSROOMS)
    ]
    """The rural classrooms taking part, each with its own join link."""
    recording_allowed: bool = False
    """Whether the teacher may record the class for replay."""
    state: ClassState = ClassState.SCHEDULED
    """Where the class is in its life."""
    started_at: float | None = None
    """When it went live."""
    ended_at: float | None = None
    """When it ended."""
    spotlight: str | None = None
    """The classroom called on (everyone sees and hears it); None for nobody."""
    scheduled_by: str = ""
    """Who scheduled it (the teacher or an operator)."""
