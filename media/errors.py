"""What can go wrong on the media side, as signaling sees it.

`MediaUserError`s come from a bad request (an unknown room, a malformed SDP) and deserve a
4xx-like answer; other `MediaError`s are faults of the media side itself (a worker died).
"""

from __future__ import annotations


class MediaError(Exception):
    """Base of every error the media side raises through `MediaBackend`."""


class MediaUserError(MediaError):
    """The request cannot be served as asked (signaling answers with a client error)."""


class UnknownRoom(MediaUserError):
    """No room with this id is open."""


class UnknownParticipant(MediaUserError):
    """The participant has not joined this room."""


class NegotiationError(MediaUserError):
    """An SDP offer or answer could not be applied."""


class WorkerLost(MediaError):
    """The worker process hosting the room died; the room is being re-placed."""


class MediaUnavailable(MediaError):
    """The media service is not running or has no live worker."""
