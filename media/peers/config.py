"""How the relay's and the client's aiortc peer connections are built: ICE servers, host."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCBundlePolicy


def ice_servers_from(servers: Iterable[Mapping[str, Any]] | None) -> tuple[RTCIceServer, ...]:
    """`[{"urls": ..., "username": ..., "credential": ...}]` as aiortc's `RTCIceServer`s."""
    return tuple(
        RTCIceServer(
            urls=s["urls"], username=s.get("username"), credential=s.get("credential")
        )
        for s in servers or ()
    )


@dataclass(frozen=True)
class PeerConfig:
    """Settings shared by every peer connection one side creates."""

    ice_servers: tuple[RTCIceServer, ...] = ()
    """STUN/TURN servers; empty means host candidates only (never a public default)."""
    udp_host: str | None = "127.0.0.1"
    """Gather host candidates on this address only; None: every interface but loopback."""
    adaptation: bool = True
    """Adapt each subscriber's downlink to its link; False always forwards everything in full
    (never paused, no lower rung): the baseline of side-by-side benchmarks."""
    transport_cc: bool = True
    """Answer a publisher's transport-wide congestion control and send it feedback
    (`media.peers.twcc_feedback`); False: its loss-based control only (as before)."""

    def new_peer_connection(self) -> RTCPeerConnection:
        """One transport per connection (max-bundle), no implicit public STUN server."""
        return RTCPeerConnection(
            RTCConfiguration(
                iceServers=list(self.ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
            )
        )
