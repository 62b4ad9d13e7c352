"""TURN credentials of the TURN REST API shared-secret scheme, and the ICE servers handed out.

coturn (`use-auth-secret`, `static-auth-secret=S`) accepts a username of the form
`"<expiry unix time>:<user id>"` with the password `base64(HMAC-SHA1(S, username))`, as long as
the expiry is still in the future when a request is authenticated. Signaling mints one such pair
per join, so no TURN account database exists and a leaked pair dies by itself.

Both functions are pure: the clock is passed in. The username crosses the network in clear
(STUN USERNAME) and lands in coturn's logs, so `user_id` must be an opaque id (a participant or
token id), never a person's name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_TTL_S = 24 * 3600
"""Lifetime of minted credentials. coturn checks the expiry only when a new allocation
authenticates; an allocation already made lives on through its refreshes (tests prove both).
But a client re-gathers with the credentials it holds (ICE restart, a new peer connection after
a node failure), so they must outlive the longest session; one day, as
draft-uberti-behave-turn-rest-00 recommends."""

MAX_USER_ID_LENGTH = 128
"""Longest accepted user id; STUN USERNAME is limited to 513 bytes and coturn to fewer."""

STUN_SCHEMES = ("stun:", "stuns:")
TURN_SCHEMES = ("turn:", "turns:")


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    """One time-limited TURN username/password pair."""

    username: str
    """`"<expiry unix time>:<user id>"`, what the client sends as the TURN username."""
    credential: str
    """base64(HMAC-SHA1(secret, username)), the TURN password."""
    expires_at: int
    """Unix time (seconds) after which coturn refuses the pair."""


def _check_user_id(user_id: str) -> None:
    if not user_id:
        raise ValueError("TURN user id is empty")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise ValueError(f"TURN user id is longer than {MAX_USER_ID_LENGTH} characters")
    if not user_id.isprintable() or any(c.isspace() for c in user_id):
        raise ValueError("TURN user id contains whitespace or control characters")


def turn_credentials(secret: str, user_id: str, ttl_s: int, now: float) -> TurnCredentials:
    """Credentials for `user_id`, valid from `now` (unix seconds) for `ttl_s` seconds.

    Raises ValueError for an empty secret, a non-positive TTL or an unusable user id.
    """
    if not secret:
        raise ValueError("TURN secret is empty")
    if ttl_s <= 0:
        raise ValueError(f"TURN credential TTL must be positive, not {ttl_s}")
    _check_user_id(user_id)
    expires_at = int(now) + ttl_s
    username = f"{expires_at}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(
        username=username,
        credential=base64.b64encode(digest).decode("ascii"),
        expires_at=expires_at,
    )


def _unique(urls: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(u.strip() for u in urls if u.strip()))


def ice_servers(
    turn_urls: Sequence[str],
    stun_urls: Sequence[str],
    secret: str | None,
    user_id: str,
    ttl_s: int,
    now: float,
) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries (`{"urls": [...], "username": ..., "credential": ...}`).

    STUN URLs (from either list, since TONGXIN_TURN_URLS may carry `stun:` too) form one entry
    without credentials. TURN URLs form one entry with credentials minted for `user_id`; without
    a secret they are left out, because a browser rejects a `turn:` URL lacking credentials
    (the RTCPeerConnection constructor throws), which would break the join for everyone.
    Raises ValueError for a URL of another scheme.
    """
    stun: list[str] = []
    turn: list[str] = []
    for url in _unique([*stun_urls, *turn_urls]):
        if url.startswith(STUN_SCHEMES):
            stun.append(url)
        elif url.startswith(TURN_SCHEMES):
            turn.append(url)
        else:
            raise ValueError(
                f"ICE server URL {url!r} must start with stun:, stuns:, turn: or turns:"
            )
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn and secret:
        pair = turn_credentials(secret, user_id, ttl_s, now)
        servers.append({"urls": turn, "username": pair.username, "credential": pair.credential})
    return servers
