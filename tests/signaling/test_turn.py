"""Table tests of `signaling.turn`: TURN REST API credentials and the ICE servers handed out.

Expected credentials were computed independently with
`printf '%s' USERNAME | openssl dgst -sha1 -hmac SECRET -binary | base64`.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiortc import RTCIceServer

from signaling.turn import DEFAULT_TTL_S, TurnCredentials, ice_servers, turn_credentials

SECRET = "north-county-secret"


@pytest.mark.parametrize(
    ("secret", "user_id", "ttl_s", "now", "expected"),
    [
        (SECRET, "alice", 3600, 1_700_000_000.0,
         TurnCredentials("1700003600:alice", "PX0QNv2liH9e0Qd2PQv/skOW8fU=", 1_700_003_600)),
        # fractions of a second in the clock are dropped, not rounded up
        (SECRET, "p-7f3a9c", 86400, 1_700_000_000.999,
         TurnCredentials("1700086400:p-7f3a9c", "5vJfT6+FOQUHUL4W+iVfbIP+tFE=", 1_700_086_400)),
        # a colon inside the user id is fine: coturn reads the timestamp before the first colon
        (SECRET, "clinic:42", 1, 1_234_567_889.0,
         TurnCredentials("1234567890:clinic:42", "SI2BpnYN7i4X37FjMGwQqb3kkW8=", 1_234_567_890)),
        # the secret is used as its UTF-8 bytes
        ("同心", "alice", 3600, 1_700_000_000.0,
         TurnCredentials("1700003600:alice", "JOjcxqkqI1lmvfMC9iYn91vHaSI=", 1_700_003_600)),
    ],
)
def test_credentials_match_the_turn_rest_api_scheme(
    secret: str, user_id: str, ttl_s: int, now: float, expected: TurnCredentials
) -> None:
    assert turn_credentials(secret, user_id, ttl_s, now) == expected


def test_credentials_differ_per_secret_user_and_expiry() -> None:
    base = turn_credentials(SECRET, "alice", 600, 1000.0)
    others = [
        turn_credentials(SECRET + "x", "alice", 600, 1000.0),
        turn_credentials(SECRET, "bob", 600, 1000.0),
        turn_credentials(SECRET, "alice", 601, 1000.0),
    ]
    assert all(o.credential != base.credential for o in others)


@pytest.mark.parametrize(
    ("secret", "user_id", "ttl_s", "message"),
    [
        ("", "alice", 600, "secret is empty"),
        (SECRET, "alice", 0, "TTL must be positive"),
        (SECRET, "alice", -5, "TTL must be positive"),
        (SECRET, "", 600, "user id is empty"),
        (SECRET, "a" * 129, 600, "longer than 128"),
        (SECRET, "al ice", 600, "whitespace"),
        (SECRET, "alice\n", 600, "whitespace"),
        (SECRET, "al\x00ice", 600, "control"),
    ],
)
def test_unusable_inputs_are_refused(secret: str, user_id: str, ttl_s: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        turn_credentials(secret, user_id, ttl_s, 1000.0)


def test_default_ttl_outlives_a_long_session() -> None:
    # clients re-gather with the credentials they hold: they must outlast a half-day clinic shift
    assert DEFAULT_TTL_S >= 12 * 3600


NOW = 1_700_000_000.0
TURN_UDP = "turn:turn.example.cn:3478?transport=udp"
TURN_TCP = "turn:turn.example.cn:3478?transport=tcp"
TURNS = "turns:turn.example.cn:5349?transport=tcp"
STUN = "stun:turn.example.cn:3478"


@pytest.mark.parametrize(
    ("turn_urls", "stun_urls", "secret", "expected"),
    [
        # nothing configured: no ICE servers (host candidates only, fine on a LAN)
        ([], [], SECRET, []),
        ([], [STUN], None, [{"urls": [STUN]}]),
        # TURN with a secret: one entry carrying every TURN URL and one minted pair
        ([TURN_UDP, TURN_TCP, TURNS], [STUN], SECRET, [
            {"urls": [STUN]},
            {"urls": [TURN_UDP, TURN_TCP, TURNS], "username": "1700003600:alice",
             "credential": "PX0QNv2liH9e0Qd2PQv/skOW8fU="},
        ]),
        # TURN without a secret is left out: a credential-less turn: URL makes browsers throw
        ([TURN_UDP], [STUN], None, [{"urls": [STUN]}]),
        ([TURN_UDP], [], "", []),
        # stun: URLs arriving through TONGXIN_TURN_URLS join the STUN entry; duplicates collapse
        ([STUN, TURN_UDP, TURN_UDP], [STUN, " "], SECRET, [
            {"urls": [STUN]},
            {"urls": [TURN_UDP], "username": "1700003600:alice",
             "credential": "PX0QNv2liH9e0Qd2PQv/skOW8fU="},
        ]),
    ],
)
def test_ice_servers_are_rtc_ice_server_dicts(
    turn_urls: list[str], stun_urls: list[str], secret: str | None, expected: list[dict[str, Any]]
) -> None:
    servers = ice_servers(turn_urls, stun_urls, secret, "alice", 3600, NOW)
    assert servers == expected
    # the same dicts construct aiortc's RTCIceServer (and a browser's) without translation
    assert [RTCIceServer(**s).urls for s in servers] == [s["urls"] for s in expected]


@pytest.mark.parametrize("bad_url", ["http://turn.example.cn", "turn.example.cn:3478", "udp:x"])
def test_ice_servers_refuse_urls_of_other_schemes(bad_url: str) -> None:
    with pytest.raises(ValueError, match="must start with"):
        ice_servers([bad_url], [], SECRET, "alice", 3600, NOW)
