"""Signed tokens for recordings: share links (`/watch/<token>`) and playback paths.

Both are HS256 JWTs signed with the node's join-token `Keyring` (so every node verifies them)
but with their own audiences, `watch` and `playback`, so neither can stand in for a join link
or a session credential, nor one for the other. They name one recording; deleting it revokes
them (the library checks the recording still exists). Times come from the clock passed in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import jwt

from broker.clock import Clock
from broker.errors import Unauthorized
from broker.tokens import Keyring

ALGORITHM = "HS256"
WATCH_AUDIENCE = "watch"
PLAYBACK_AUDIENCE = "playback"
MAX_TOKEN_CHARS = 2048


class RecordingTokens:
    """Issues and verifies share and playback tokens; see the module docstring."""

    def __init__(self, keyring: Callable[[], Keyring], clock: Clock) -> None:
        self._keyring = keyring
        self._clock = clock

    def issue(self, recording_id: str, audience: str, ttl_s: float) -> tuple[str, float]:
        """(token, expiry epoch seconds) for `recording_id` and `audience`."""
        keyring = self._keyring()
        kid = keyring.active_kid
        secret = keyring.secret(kid)
        assert secret is not None
        now = self._clock()
        exp = now + ttl_s
        payload = {"rec": recording_id, "aud": audience, "exp": exp, "iat": now,
                   "jti": uuid.uuid4().hex}
        return jwt.encode(payload, secret, algorithm=ALGORITHM, headers={"kid": kid}), exp

    def verify(self, token: str, audience: str) -> str:
        """The recording id a valid, unexpired token of `audience` names; Unauthorized else."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("the link is malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("the link is malformed") from None
        kid = header.get("kid")
        secret = self._keyring().secret(kid) if isinstance(kid, str) else None
        if header.get("alg") != ALGORITHM or secret is None:
            raise Unauthorized("the link is not signed by this service")
        try:
            payload: dict[str, Any] = jwt.decode(
                token, secret, algorithms=[ALGORITHM], audience=audience,
                options={"verify_exp": False, "verify_iat": False,
                         "require": ["rec", "exp", "aud"]},
            )
        except jwt.InvalidAudienceError:
            raise Unauthorized("this link is meant for something else") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("the link is malformed or not signed by this service") from None
        rec, exp = payload.get("rec"), payload.get("exp")
        if not isinstance(rec, str) or not isinstance(exp, int | float):
            raise Unauthorized("the link is malformed")
        if self._clock() >= exp:
            raise Unauthorized("this link has expired; ask for a new one")
        return rec
