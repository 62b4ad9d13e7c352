"""One room's trunk socket: a UDP endpoint that seals what it sends and opens what its peers send.

Bound to the media `udp_host` on an ephemeral port. It knows its peers as address -> node id
(`set_peers`); a datagram from any other address is dropped and counted (`unknown`), one from
a peer that does not open with that peer's key (garbage, wrong secret, another room) is
dropped and counted (`rejected`). What opens goes to `on_datagram(node, kind, body)`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import cast

from media.trunk.wire import Kind, Opener, Sealer

logger = logging.getLogger(__name__)

Address = tuple[str, int]
DatagramHandler = Callable[[str, Kind, bytes], None]
"""(peer node id, kind, opened body)."""


def split_address(address: str) -> Address:
    """("host", port) of "host:port" (an IPv6 host in brackets); ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"trunk address {address!r} is not host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"trunk address {address!r} has no valid port")
    return host, number


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def advertised_host(bound: str) -> str:
    """The host peers reach a socket bound to `bound` at (the wildcard: this host's address
    on its default route, found without sending anything)."""
    if bound not in ("0.0.0.0", "::", ""):
        return bound
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet leaves, the route is chosen
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


class TrunkEndpoint(asyncio.DatagramProtocol):
    """The trunk socket of one room on this node."""

    def __init__(
        self, secret: bytes, room_id: str, node_id: str, on_datagram: DatagramHandler
    ) -> None:
        self.room_id = room_id
        self.node_id = node_id
        self._secret = secret
        self._sealer = Sealer(secret, room_id, node_id)
        self._on_datagram = on_datagram
        self._transport: asyncio.DatagramTransport | None = None
        self._peers: dict[Address, tuple[str, Opener]] = {}
        self._addresses: dict[str, Address] = {}
        """node id -> where its datagrams go."""
        self.address = ""
        """"host:port" peers send to (set once bound)."""
        self.received = 0
        self.sent = 0
        self.unknown = 0
        """Datagrams from addresses that are not peers."""
        self.rejected = 0
        """Datagrams from peers that did not open (garbage, wrong key, other room, or a copy
        of one opened before: `replayed` of them, counted by the peers' openers)."""
        self.send_errors = 0

    async def bind(self, host: str | None) -> str:
        """Open the socket on `host` (None: every interface); returns `address`."""
        loop = asyncio.get_running_loop()
        bound = host or "0.0.0.0"
        family = socket.AF_INET6 if ":" in bound else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(bound, 0), family=family
        )
        port = transport.get_extra_info("sockname")[1]
        self.address = join_address(advertised_host(bound), port)
        return self.address

    @property
    def peers(self) -> dict[str, Address]:
        """node id -> address, now."""
        return dict(self._addresses)

    async def set_peers(self, peers: Mapping[str, str]) -> None:
        """Replace the peers (node id -> "host:port"); host names are resolved here."""
        loop = asyncio.get_running_loop()
        resolved: dict[str, Address] = {}
        for node, text in peers.items():
            host, port = split_address(text)
            try:
                ipaddress.ip_address(host)
            except ValueError:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                if not infos:
                    raise ValueError(f"trunk peer {node!r}: {host!r} does not resolve") from None
                host = str(infos[0][4][0])
            resolved[node] = (host, port)
        old = {node: opener for node, opener in self._peers.values()}
        self._peers = {
            address: (node, old.get(node) or Opener(self._secret, self.room_id, node))
            for node, address in resolved.items()
        }
        self._addresses = resolved

    # -- sending -----------------------------------------------------------------------------

    def seal(self, kind: Kind, body: bytes) -> bytes:
        return self._sealer.seal(kind, body)

    def send_sealed(self, datagram: bytes, to: str | Collection[str] | None = None) -> None:
        """Send a sealed datagram to one peer, some peers, or every peer (None)."""
        transport = self._transport
        if transport is None:
            return
        addresses = self._addresses
        if to is None:
            targets: Iterable[Address] = addresses.values()
        elif isinstance(to, str):
            targets = [addresses[to]] if to in addresses else []
        else:
            targets = [addresses[node] for node in to if node in addresses]
        for address in targets:
            try:
                transport.sendto(datagram, address)
                self.sent += 1
            except OSError:
                self.send_errors += 1

    def send(self, kind: Kind, body: bytes, to: str | Collection[str] | None = None) -> None:
        """Seal once and send to one peer, some peers, or every peer (None)."""
        if self._addresses:
            self.send_sealed(self._sealer.seal(kind, body), to)

    # -- asyncio -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        peer = self._peers.get((str(addr[0]), int(addr[1])))
        if peer is None:
            self.unknown += 1
            return
        node, opener = peer
        opened = opener.open(data)
        if opened is None:
            self.rejected += 1
            return
        self.received += 1
        try:
            self._on_datagram(node, *opened)
        except Exception:  # a bad datagram from a peer never takes the room down
            self.rejected += 1
            logger.exception("trunk datagram failed room=%s peer=%s", self.room_id, node)

    def error_received(self, exc: Exception) -> None:
        self.send_errors += 1  # ICMP unreachable for a peer that went away: silence tells

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def counters(self) -> dict[str, int]:
        return {
            "sent": self.sent, "received": self.received, "unknown": self.unknown,
            "rejected": self.rejected, "send_errors": self.send_errors,
            "replayed": sum(opener.replayed for _node, opener in self._peers.values()),
        }
