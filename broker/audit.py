"""`AuditLog`: the append-only record of who did what (joins, admissions, hand-overs, recordings,
token revocations, directory changes), kept in the store's log `audit` and read by operators."""

from __future__ import annotations

from enum import StrEnum

import msgspec
from msgspec import Struct

from broker.clock import Clock
from broker.errors import InvalidInput
from broker.models import decode_as, encode
from broker.store import Store

AUDIT_LOG = "audit"
"""Name of the store log holding the entries."""

AUDIT_MAX_ENTRIES = 200_000
"""Entries kept; the oldest are trimmed beyond this (an export job would archive them)."""

SCAN_PAGE = 500
"""Entries read per store call when filtering by session."""

SCAN_MAX_PAGES = 20
"""Pages one filtered read looks through before returning what it found (with a cursor)."""

DetailValue = str | int | float | bool | None


class AuditAction(StrEnum):
    """What an audit entry records."""

    JOIN = "join"
    LEAVE = "leave"
    ADMIT = "admit"
    HAND_OVER = "hand_over"
    RECORDING_START = "recording_start"
    RECORDING_STOP = "recording_stop"
    CONSENT = "consent"
    TOKEN_ISSUE = "token_issue"
    TOKEN_REVOKE = "token_revoke"
    DIRECTORY_CHANGE = "directory_change"
    DUTY_CHANGE = "duty_change"
    CLASS_SCHEDULE = "class_schedule"
    CLASS_START = "class_start"
    CLASS_END = "class_end"
    SPOTLIGHT = "spotlight"
    CONSULT_REQUEST = "consult_request"
    CONSULT_CLAIM = "consult_claim"
    CONSULT_RELEASE = "consult_release"
    CONSULT_ESCALATE = "consult_escalate"
    CONSULT_CANCEL = "consult_cancel"
    CONSULT_END = "consult_end"
    SNAPSHOT = "snapshot"
    SESSION_EXCHANGE = "session_exchange"
    RETENTION_ERASE = "retention_erase"


class AuditEntry(Struct, frozen=True, kw_only=True):
    """One thing that happened."""

    id: str = ""
    """Store log id (empty until appended); ids sort in append order."""
    at: float
    """When, in epoch seconds."""
    actor: str
    """Who: a token subject (expert, site, operator id) or `system`."""
    action: AuditAction
    """What kind of thing happened."""
    session: str | None = None
    """The class or consult it concerns, if any."""
    detail: dict[str, DetailValue] = {}
    """Small facts about it (ids, outcome, reason); never tokens or secrets."""


class AuditPage(Struct, frozen=True):
    """Entries of one read and where to continue."""

    entries: list[AuditEntry]
    """Matching entries in append order."""
    next_after: str | None
    """The last id looked at: pass it as `after` to read on (None: the log is empty)."""


class AuditLog:
    """Appends and reads audit entries; see the module docstring."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def append(
        self,
        actor: str,
        action: AuditAction,
        *,
        session: str | None = None,
        detail: dict[str, DetailValue] | None = None,
    ) -> AuditEntry:
        """Record `action` by `actor` now; returns the stored entry (with its id)."""
        entry = AuditEntry(
            at=self._clock(),
            actor=actor,
            action=AuditAction(action),
            session=session,
            detail=dict(detail or {}),
        )
        entry_id = await self._store.log_append(AUDIT_LOG, encode(entry), max_len=AUDIT_MAX_ENTRIES)
        return msgspec.structs.replace(entry, id=entry_id)

    async def read(
        self, after: str | None = None, limit: int = 100, session: str | None = None
    ) -> AuditPage:
        """Entries after id `after` (from the start when None), oldest first, at most `limit`.

        With `session`, only that session's entries; such a read looks through a bounded number
        of entries, so fewer than `limit` may come back with a `next_after` to continue from.
        """
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        found: list[AuditEntry] = []
        cursor = after
        page_size = limit if session is None else SCAN_PAGE
        for _ in range(1 if session is None else SCAN_MAX_PAGES):
            raw = await self._store.log_read(AUDIT_LOG, after=cursor, limit=page_size)
            for item in raw:
                cursor = item.id
                entry = msgspec.structs.replace(decode_as(item.data, AuditEntry), id=item.id)
                if session is None or entry.session == session:
                    found.append(entry)
                    if len(found) == limit:
                        return AuditPage(found, cursor)
            if len(raw) < page_size:
                break
        return AuditPage(found, cursor)
