"""`ClassService`: dual-teacher classes: scheduling with one join link per rural classroom, going
live when the teacher joins, late joining, presence kept alive by heartbeats, the spotlight
(the classroom called on), the queue of raised hands, and the end.

Store layout: `class:<id>` (the class, changed by compare-and-set), `class:index` (map of class
ids), `class:hands:<id>` (queue of raised hands scored by when they were raised); presence is
`broker.presence`'s. Events go out on `session:<class id>` (see `broker.events`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import msgspec
from msgspec import Struct

from broker.audit import AuditAction, AuditLog
from broker.class_state import (
    MAX_CLASSROOMS,
    ClassEvent,
    ClassSession,
    ClassState,
    check_may_join,
    next_class_state,
)
from broker.clock import Clock
from broker.directory import Directory
from broker.errors import Conflict, Forbidden, InvalidInput, NotFound
from broker.events import (
    BrokerEvent,
    ClassStateChanged,
    HandsChanged,
    SpotlightChanged,
    encode_event,
    session_channel,
)
from broker.models import Actor, ExpertKind, Role, SiteKind, decode_as, encode, validated
from broker.presence import PRESENCE_TTL_S, PresenceBoard
from broker.store import Store
from broker.tokens import TokenService

CLASS_INDEX = "class:index"
MAX_OBSERVERS = 20
MIN_DURATION_S, MAX_DURATION_S = 5 * 60.0, 8 * 3600.0
MAX_SCHEDULE_AHEAD_S = 180 * 24 * 3600.0
LINK_GRACE_S = 3600.0
"""Join links stay valid this long after the planned end (classes overrun)."""
CAS_ATTEMPTS = 5


def class_key(class_id: str) -> str:
    return f"class:{class_id}"


def hands_queue(class_id: str) -> str:
    return f"class:hands:{class_id}"


class ScheduledClass(Struct, frozen=True, kw_only=True):
    """A new class and its join links' tokens (links are `/join/<token>`)."""

    klass: ClassSession
    """The class."""
    host_token: str
    """The teacher's token (role teacher)."""
    classroom_tokens: dict[str, str]
    """Classroom site id -> that classroom's token (role assistant)."""
    observer_tokens: list[str] = []
    """Tokens for observers (role observer), if asked for."""


class RosterEntry(Struct, frozen=True, kw_only=True):
    """One expected or present participant of a class."""

    participant_id: str
    """The teacher id, a classroom site id or an observer id."""
    role: Role
    """teacher, assistant (a classroom) or observer."""
    name: str
    """Display name (teacher's or classroom's)."""
    present: bool
    """Connected now (heartbeats arriving)."""
    since: float | None = None
    """When it became present."""
    hand_raised: bool = False
    """Its hand is up."""


class RaisedHand(Struct, frozen=True):
    """A classroom waiting to be called on."""

    participant_id: str
    raised_at: float


class ClassService:
    """Dual-teacher classes; see the module docstring."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        tokens: TokenService,
        audit: AuditLog,
        clock: Clock,
        *,
        presence_ttl_s: float = PRESENCE_TTL_S,
    ) -> None:
        self.presence = PresenceBoard(store, clock, ttl_s=presence_ttl_s)
        self._store = store
        self._directory = directory
        self._tokens = tokens
        self._audit = audit
        self._clock = clock

    # --- scheduling -----------------------------------------------------------------------
    async def schedule(
        self,
        *,
        title: str,
        subject: str,
        teacher_id: str,
        starts_at: float,
        classroom_site_ids: Sequence[str],
        actor: Actor,
        recording_allowed: bool = False,
        duration_s: float = 45 * 60.0,
        observers: int = 0,
        token_ttl_s: float | None = None,
    ) -> ScheduledClass:
        """Create a class and its join links: one per classroom (role assistant), one for the
        teacher (host), `observers` more. Links live until an hour after the planned end
        unless `token_ttl_s` says otherwise. The teacher or an operator schedules."""
        if actor.role is not Role.OPERATOR and not (
            actor.role is Role.TEACHER and actor.id == teacher_id
        ):
            raise Forbidden("only the teacher (or an operator) may schedule this class")
        now = self._clock()
        if not MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
            raise InvalidInput("a class lasts between 5 minutes and 8 hours")
        if starts_at + duration_s < now or starts_at > now + MAX_SCHEDULE_AHEAD_S:
            raise InvalidInput("the start time is in the past or too far ahead")
        if not 0 <= observers <= MAX_OBSERVERS:
            raise InvalidInput(f"between 0 and {MAX_OBSERVERS} observer links")
        rooms = tuple(classroom_site_ids)
        if len(set(rooms)) != len(rooms):
            raise InvalidInput("a classroom appears twice")
        if not 1 <= len(rooms) <= MAX_CLASSROOMS:
            raise InvalidInput(f"a class reaches between 1 and {MAX_CLASSROOMS} classrooms")
        teacher = await self._directory.find_expert(teacher_id)
        if teacher is None or teacher.kind is not ExpertKind.TEACHER:
            raise InvalidInput(f"{teacher_id!r} is not a teacher in the directory")
        sites = await asyncio.gather(*(self._directory.find_site(r) for r in rooms))
        for room_id, site in zip(rooms, sites, strict=True):
            if site is None or site.kind is not SiteKind.CLASSROOM:
                raise InvalidInput(f"{room_id!r} is not a classroom in the directory")
        klass = validated(
            ClassSession(
                id=f"k{uuid.uuid4().hex[:16]}",
                title=title.strip(),
                subject=subject,
                teacher_id=teacher_id,
                starts_at=starts_at,
                duration_s=duration_s,
                classroom_site_ids=rooms,
                recording_allowed=recording_allowed,
                scheduled_by=actor.id,
            )
        )
        await self._store.set(class_key(klass.id), encode(klass))
        await self._store.map_set(CLASS_INDEX, klass.id, b"")
        await self._audit.append(
            actor.id,
            AuditAction.CLASS_SCHEDULE,
            session=klass.id,
            detail={"title": klass.title, "classrooms": len(rooms)},
        )
        await self._publish(
            klass.id, ClassStateChanged(at=now, session=klass.id, state=klass.state, by=actor.id)
        )
        ttl = token_ttl_s or max(LINK_GRACE_S, starts_at + duration_s + LINK_GRACE_S - now)
        host = self._tokens.issue(
            sub=teacher.id, role=Role.TEACHER, session=klass.id, ttl_s=ttl, name=teacher.name
        )
        classroom_tokens = {
            site.id: self._tokens.issue(
                sub=site.id, role=Role.ASSISTANT, session=klass.id, ttl_s=ttl, name=site.name
            )
            for site in sites
            if site is not None
        }
        observer_tokens = [
            self._tokens.issue(
                sub=f"{klass.id}-observer-{n + 1}",
                role=Role.OBSERVER,
                session=klass.id,
                ttl_s=ttl,
                name=f"观摩 {n + 1}",
            )
            for n in range(observers)
        ]
        return ScheduledClass(
            klass=klass,
            host_token=host,
            classroom_tokens=classroom_tokens,
            observer_tokens=observer_tokens,
        )

    # --- reading --------------------------------------------------------------------------
    async def find(self, class_id: str) -> ClassSession | None:
        raw = await self._store.get(class_key(class_id))
        return None if raw is None else decode_as(raw, ClassSession)

    async def get(self, class_id: str) -> ClassSession:
        klass = await self.find(class_id)
        if klass is None:
            raise NotFound(f"no class {class_id!r}")
        return klass

    async def list_classes(self, *, state: ClassState | None = None) -> list[ClassSession]:
        """Classes, soonest start first, optionally in one state."""
        ids = list(await self._store.map_all(CLASS_INDEX))
        found = [k for k in await asyncio.gather(*(self.find(i) for i in ids)) if k is not None]
        return sorted(
            (k for k in found if state is None or k.state is state),
            key=lambda k: (k.starts_at, k.id),
        )

    # --- life cycle ---------------------------------------------------------------------------
    async def _change(
        self, class_id: str, event: ClassEvent | None, **changes: object
    ) -> tuple[ClassSession, ClassSession]:
        """Apply `event` (or only `changes`) by compare-and-set: (before, after)."""
        key = class_key(class_id)
        for _attempt in range(CAS_ATTEMPTS):
            raw = await self._store.get(key)
            if raw is None:
                raise NotFound(f"no class {class_id!r}")
            before = decode_as(raw, ClassSession)
            fields = dict(changes)
            if event is not None:
                fields["state"] = next_class_state(before.state, event)
            after = msgspec.structs.replace(before, **fields)
            if await self._store.compare_and_set(key, raw, encode(after)):
                return before, after
        raise Conflict("the class changed while this was being done; try again")

    @staticmethod
    def _require_host(klass: ClassSession, actor: Actor) -> None:
        if actor.role is Role.OPERATOR:
            return
        if actor.role is not Role.TEACHER or actor.id != klass.teacher_id:
            raise Forbidden("only the class's teacher (or an operator) may do that")

    async def start(self, class_id: str, actor: Actor) -> ClassSession:
        """The class goes live (the teacher's first join does this by itself)."""
        self._require_host(await self.get(class_id), actor)
        now = self._clock()
        _before, after = await self._change(class_id, ClassEvent.START, started_at=now)
        await self._audit.append(actor.id, AuditAction.CLASS_START, session=class_id)
        await self._publish(
            class_id, ClassStateChanged(at=now, session=class_id, state=after.state, by=actor.id)
        )
        return after

    async def end(self, class_id: str, actor: Actor) -> ClassSession:
        """The class ends for everyone (a scheduled class ending is called off)."""
        self._require_host(await self.get(class_id), actor)
        now = self._clock()
        _before, after = await self._change(class_id, ClassEvent.END, ended_at=now, spotlight=None)
        for participant_id, _score in await self._store.queue_items(hands_queue(class_id)):
            await self._store.queue_remove(hands_queue(class_id), participant_id)
        await self._audit.append(actor.id, AuditAction.CLASS_END, session=class_id)
        await self._publish(
            class_id, ClassStateChanged(at=now, session=class_id, state=after.state, by=actor.id)
        )
        return after

    # --- participants -------------------------------------------------------------------------
    @staticmethod
    def role_in(klass: ClassSession, actor: Actor) -> Role:
        """The role `actor` has in the class; Forbidden when it has none."""
        if actor.id == klass.teacher_id and actor.role is Role.TEACHER:
            return Role.TEACHER
        if actor.id in klass.classroom_site_ids and actor.role is Role.ASSISTANT:
            return Role.ASSISTANT
        if actor.role in (Role.OBSERVER, Role.OPERATOR):
            return Role.OBSERVER
        raise Forbidden("this link is not for this class")

    async def join(self, class_id: str, actor: Actor) -> ClassSession:
        """`actor` enters the class (before it starts, or late while live); the teacher's
        joining starts a scheduled class. Marks the participant present."""
        klass = await self.get(class_id)
        role = self.role_in(klass, actor)
        check_may_join(klass.state)
        if role is Role.TEACHER and klass.state is ClassState.SCHEDULED:
            try:
                klass = await self.start(class_id, actor)
            except Conflict:
                klass = await self.get(class_id)  # started meanwhile (another node, a retry)
                check_may_join(klass.state)
        await self._audit.append(
            actor.id, AuditAction.JOIN, session=class_id, detail={"role": role.value}
        )
        await self.mark_present(class_id, actor.id, role=role)
        return klass

    async def leave(self, class_id: str, actor: Actor) -> None:
        """`actor` leaves: no longer present, hand lowered, out of the spotlight."""
        klass = await self.get(class_id)
        await self._audit.append(actor.id, AuditAction.LEAVE, session=class_id)
        await self.mark_absent(class_id, actor.id)
        if await self._store.queue_remove(hands_queue(class_id), actor.id):
            await self._publish_hands(class_id)
        if klass.spotlight == actor.id and klass.state is ClassState.LIVE:
            await self._set_spotlight(class_id, None, actor.id)

    async def mark_present(
        self, class_id: str, participant_id: str, *, role: Role | None = None
    ) -> bool:
        """Heartbeat: the participant is connected; True when it just became present (then a
        `presence` event goes out). Without `role`, it is inferred from the class."""
        if role is None:
            klass = await self.get(class_id)
            role = (
                Role.TEACHER
                if participant_id == klass.teacher_id
                else Role.ASSISTANT
                if participant_id in klass.classroom_site_ids
                else Role.OBSERVER
            )
        return await self.presence.mark_present(
            class_id, participant_id, role, extra=role is Role.OBSERVER
        )

    async def mark_absent(self, class_id: str, participant_id: str) -> bool:
        """The participant disconnected; True when it was present (a `presence` event)."""
        return await self.presence.mark_absent(class_id, participant_id)

    async def roster(self, class_id: str) -> list[RosterEntry]:
        """The teacher, every classroom (present or not) and the observers present."""
        klass = await self.get(class_id)
        observers = await self.presence.extras(class_id)
        expected = [
            (klass.teacher_id, Role.TEACHER),
            *((room, Role.ASSISTANT) for room in klass.classroom_site_ids),
            *((obs, Role.OBSERVER) for obs in observers),
        ]
        present, hands, teacher, rooms = await asyncio.gather(
            self.presence.present(class_id, [p for p, _role in expected]),
            self._store.queue_items(hands_queue(class_id)),
            self._directory.find_expert(klass.teacher_id),
            asyncio.gather(*(self._directory.find_site(r) for r in klass.classroom_site_ids)),
        )
        names = {klass.teacher_id: teacher.name if teacher else klass.teacher_id}
        names.update({s.id: s.name for s in rooms if s is not None})
        raised = {p for p, _score in hands}
        entries = []
        for participant_id, role in expected:
            presence = present.get(participant_id)
            if role is Role.OBSERVER and presence is None:
                continue
            entries.append(
                RosterEntry(
                    participant_id=participant_id,
                    role=role,
                    name=names.get(participant_id, participant_id),
                    present=presence is not None,
                    since=None if presence is None else presence.since,
                    hand_raised=participant_id in raised,
                )
            )
        return entries

    # --- spotlight and hands ------------------------------------------------------------------
    async def set_spotlight(
        self, class_id: str, participant_id: str | None, actor: Actor
    ) -> ClassSession:
        """The teacher calls on a classroom (its hand goes down), or on nobody (None)."""
        klass = await self.get(class_id)
        self._require_host(klass, actor)
        if klass.state is not ClassState.LIVE:
            raise Conflict("the spotlight works while the class is live")
        if participant_id is not None and participant_id not in klass.classroom_site_ids:
            raise InvalidInput(f"{participant_id!r} is not a classroom of this class")
        after = await self._set_spotlight(class_id, participant_id, actor.id)
        await self._audit.append(
            actor.id,
            AuditAction.SPOTLIGHT,
            session=class_id,
            detail={"participant": participant_id},
        )
        return after

    async def _set_spotlight(
        self, class_id: str, participant_id: str | None, by: str
    ) -> ClassSession:
        _before, after = await self._change(class_id, None, spotlight=participant_id)
        await self._publish(
            class_id,
            SpotlightChanged(
                at=self._clock(), session=class_id, participant_id=participant_id, by=by
            ),
        )
        if participant_id is not None and await self._store.queue_remove(
            hands_queue(class_id), participant_id
        ):
            await self._publish_hands(class_id)
        return after

    async def raise_hand(self, class_id: str, actor: Actor) -> list[RaisedHand]:
        """A classroom raises its hand (a second raise keeps its place); the queue after."""
        klass = await self.get(class_id)
        if self.role_in(klass, actor) is not Role.ASSISTANT:
            raise Forbidden("only a classroom raises a hand")
        if klass.state is not ClassState.LIVE:
            raise Conflict("hands are raised while the class is live")
        queue = hands_queue(class_id)
        if await self._store.queue_rank(queue, actor.id) is None:
            await self._store.queue_push(queue, actor.id, self._clock())
            await self._publish_hands(class_id)
        return await self.hands(class_id)

    async def lower_hand(
        self, class_id: str, participant_id: str, actor: Actor
    ) -> list[RaisedHand]:
        """The classroom itself, the teacher or an operator lowers a hand; the queue after."""
        klass = await self.get(class_id)
        if actor.id != participant_id:
            self._require_host(klass, actor)
        if await self._store.queue_remove(hands_queue(class_id), participant_id):
            await self._publish_hands(class_id)
        return await self.hands(class_id)

    async def hands(self, class_id: str) -> list[RaisedHand]:
        """Raised hands, first raised first."""
        items = await self._store.queue_items(hands_queue(class_id))
        return [RaisedHand(participant_id, raised_at) for participant_id, raised_at in items]

    # --- events -------------------------------------------------------------------------------
    async def _publish(self, class_id: str, event: BrokerEvent) -> None:
        await self._store.publish(session_channel(class_id), encode_event(event))

    async def _publish_hands(self, class_id: str) -> None:
        queue = [h.participant_id for h in await self.hands(class_id)]
        await self._publish(class_id, HandsChanged(at=self._clock(), session=class_id, queue=queue))
