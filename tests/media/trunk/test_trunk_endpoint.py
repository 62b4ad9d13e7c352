"""Trunk addresses (media/trunk/endpoint.py) and one endpoint pair over loopback."""

from __future__ import annotations

import asyncio

import pytest

from media.trunk.endpoint import TrunkEndpoint, advertised_host, join_address, split_address
from media.trunk.wire import Kind
from tests.media.relay_harness import wait_until


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:4000", ("127.0.0.1", 4000)),
        ("[::1]:4000", ("::1", 4000)),
        ("node-2.example:65535", ("node-2.example", 65535)),
    ],
)
def test_an_address_splits(text: str, expected: tuple[str, int]) -> None:
    assert split_address(text) == expected
    assert split_address(join_address(*expected)) == expected


@pytest.mark.parametrize("text", ["", "4000", ":4000", "host:", "host:0", "host:70000", "h:x"])
def test_a_malformed_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        split_address(text)


@pytest.mark.parametrize(
    ("bound", "expected"), [("127.0.0.1", "127.0.0.1"), ("10.1.2.3", "10.1.2.3")]
)
def test_a_bound_host_is_advertised_as_is(bound: str, expected: str) -> None:
    assert advertised_host(bound) == expected


def test_the_wildcard_is_advertised_as_an_address_of_this_host() -> None:
    assert advertised_host("0.0.0.0") not in ("0.0.0.0", "")


async def test_endpoints_send_to_one_some_or_every_peer() -> None:
    got: list[tuple[str, Kind, bytes]] = []

    def keep(node: str, kind: Kind, body: bytes) -> None:
        got.append((node, kind, body))

    a = TrunkEndpoint(b"s" * 32, "room", "a", lambda *args: None)
    b = TrunkEndpoint(b"s" * 32, "room", "b", keep)
    c = TrunkEndpoint(b"s" * 32, "room", "c", keep)
    try:
        at = {name: await e.bind("127.0.0.1") for name, e in (("a", a), ("b", b), ("c", c))}
        await a.set_peers({"b": at["b"], "c": at["c"]})
        await b.set_peers({"a": at["a"]})
        await c.set_peers({"a": at["a"]})
        a.send(Kind.KEYFRAME, b"\x00\x07")
        a.send(Kind.WANTS, b"{}", "c")
        a.send(Kind.WANTS, b"{}", ["b", "unknown"])
        await wait_until(lambda: len(got) == 4, what="four datagrams")
        assert sorted(got) == [
            ("a", Kind.KEYFRAME, b"\x00\x07"), ("a", Kind.KEYFRAME, b"\x00\x07"),
            ("a", Kind.WANTS, b"{}"), ("a", Kind.WANTS, b"{}"),
        ]
        assert a.sent == 4 and b.received == 2 and c.received == 2
        await b.set_peers({})  # a is no longer b's peer: its datagrams are strangers'
        a.send(Kind.KEYFRAME, b"\x00\x07", "b")
        await wait_until(lambda: b.unknown == 1, what="a stranger's datagram counted")
        await asyncio.sleep(0.05)
        assert len(got) == 4
    finally:
        for endpoint in (a, b, c):
            endpoint.close()
