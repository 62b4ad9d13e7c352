"""A room's trunk: its local publications cross to every peer node once, the peers' come back
as remote participants.

Sending: each local published track (every simulcast layer too) gets a track number and an
`InboundTrack.trunk` callback that seals each packet once (MEDIA) and sends it to every peer.
Every `ANNOUNCE_S`, and whenever the local publications change, an ANNOUNCE tells the peers
who publishes what. KEYFRAME from a peer is a `request_keyframe()` on the local track; WANTS
from the peers mark the layers their subscribers watch (`InboundTrack.watched_remotely`), so
the publisher's dynacast keeps them on.

Receiving: an ANNOUNCE from a peer is applied as state: its participants become
`RemoteParticipant`s (publishers with the announced role, never receivers), their tracks
`InboundTrack`s built with the announced codec (simulcast: the same `spatial_layers`
structure, held layers with their held rates) and fed from MEDIA datagrams. Their `send_pli`
sends KEYFRAME to the owner. Every tick the layers this node's subscribers watch go back as
WANTS. A video packet lost on the trunk is asked for again (NACK, `media.trunk.losses`) and
the owner resends it from its history, to that node only. A peer dropped from the set, or
silent for `TRUNK_SILENCE_S`, takes its remote participants with it. What is per subscriber
(NACKs from the history here, adaptation, layer choice) works on these tracks as on local
ones.

A room's home worker whose room spans sibling workers (`media.workers.pool`) is also the
gateway between them and the other nodes (`Trunk._announce`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.adapt.dynacast import subscribed_layers
from media.adapt.ticker import Ticker
from media.forward.forwarder import InboundTrack
from media.trunk.endpoint import TrunkEndpoint
from media.trunk.losses import MAX_GAP, gap
from media.trunk.wire import (
    ANNOUNCE_S,
    MAX_TRACK_NUMBER,
    TRUNK_SILENCE_S,
    Announce,
    AnnouncedCodec,
    AnnouncedParticipant,
    AnnouncedTrack,
    Kind,
    Wants,
    decode_announce,
    decode_wants,
    encode_announce,
    encode_wants,
    keyframe_body,
    media_body,
    nack_body,
    parse_keyframe,
    parse_media,
    parse_nack,
)

logger = logging.getLogger(__name__)


class TrunkRoom(Protocol):
    """What the trunk needs of its room (`media.rooms.room.Room`)."""

    room_id: str

    def local_publishers(self) -> list[tuple[str, str, list[InboundTrack]]]:
        """(participant id, role, published tracks) of every local participant publishing."""

    def is_local(self, participant_id: str) -> bool: ...

    def remote_changed(self) -> None:
        """Remote participants or their tracks changed: route again."""


@dataclass
class RemoteParticipant:
    """A publisher on another node, as this node's room sees it."""

    node: str
    role: str
    tracks: dict[str, InboundTrack] = field(default_factory=dict)
    """source -> the published track (simulcast: the top layer, with `spatial_layers`)."""


@dataclass
class _Peer:
    """What this node knows of one peer node of the room."""

    node: str
    last_heard: float
    participants: dict[str, RemoteParticipant] = field(default_factory=dict)
    by_number: dict[int, InboundTrack] = field(default_factory=dict)
    """Every remote track and simulcast layer, by the peer's track number."""
    signatures: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    """What each published track was built from (a change rebuilds it)."""
    wants: dict[int, list[int]] = field(default_factory=dict)
    """The peer's WANTS: local published track number -> layer indices watched there."""
    highest: dict[int, int] = field(default_factory=dict)
    """Video track number -> the highest sequence number arrived (`losses.gap`)."""


# -- codecs across the trunk ------------------------------------------------------------------


def announced_codec(codec: RTCRtpCodecParameters) -> AnnouncedCodec:
    return AnnouncedCodec(
        mimeType=codec.mimeType,
        clockRate=codec.clockRate,
        channels=codec.channels,
        payloadType=codec.payloadType,
        parameters={k: v for k, v in codec.parameters.items() if isinstance(v, str | int)},
        rtcpFeedback=[(fb.type, fb.parameter) for fb in codec.rtcpFeedback],
    )


def rebuilt_codecs(codec: AnnouncedCodec, rtx: bool) -> list[RTCRtpCodecParameters]:
    """The codec list an `InboundTrack` is built from (with an RTX entry when announced)."""
    media = RTCRtpCodecParameters(
        mimeType=codec.mimeType,
        clockRate=codec.clockRate,
        channels=codec.channels,
        payloadType=codec.payloadType,
        parameters=dict(codec.parameters),
        rtcpFeedback=[RTCRtcpFeedback(type=t, parameter=p) for t, p in codec.rtcpFeedback],
    )
    codecs = [media]
    if rtx:
        kind = codec.mimeType.split("/")[0]
        codecs.append(RTCRtpCodecParameters(
            mimeType=f"{kind}/rtx", clockRate=codec.clockRate,
            payloadType=((codec.payloadType or 96) + 1) & 0x7F,
            parameters={"apt": codec.payloadType},
        ))
    return codecs


def announce_of(
    node: str,
    publishers: Iterable[tuple[str, str, list[InboundTrack]]],
    number_of: Callable[[InboundTrack], int],
) -> Announce:
    """What this node tells its peers it publishes (`number_of` numbers each track)."""
    participants: list[AnnouncedParticipant] = []
    tracks: list[AnnouncedTrack] = []
    for pid, role, published in publishers:
        participants.append(AnnouncedParticipant(pid, role))
        for track in published:
            layers = [t for t in track.spatial_layers if t is not track]
            for layer in layers:
                tracks.append(_announced(layer, number_of(layer), []))
            numbers = [number_of(t) for t in track.spatial_layers]
            tracks.append(_announced(track, number_of(track), numbers))
    return Announce(node, participants, tracks)


def _announced(track: InboundTrack, number: int, layers: list[int]) -> AnnouncedTrack:
    return AnnouncedTrack(
        number=number, participant=track.participant_id, source=track.source,
        codec=announced_codec(track.codec), rtx=track.rtx, rid=track.rid, layers=layers,
        held=track.held_rates,
    )


def _signature(track: AnnouncedTrack, layers: list[AnnouncedTrack]) -> tuple[Any, ...]:
    return (track.participant, track.source, track.codec, track.rtx, track.rid,
            tuple(track.layers), tuple(layer.rid for layer in layers))


# -- the trunk of one room --------------------------------------------------------------------


class Trunk:
    """One room's trunk on this node: its endpoint, local numbering, and remote participants."""

    def __init__(
        self,
        room: TrunkRoom,
        node_id: str,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.room = room
        self.node_id = node_id
        self.endpoint = TrunkEndpoint(secret, room.room_id, node_id, self._on_datagram)
        self._clock = clock
        self._peers: dict[str, _Peer] = {}
        self._numbers: dict[InboundTrack, int] = {}
        self._local: dict[int, InboundTrack] = {}
        self._next_number = 1
        self._last_announce: dict[frozenset[str], tuple[Announce, bytes]] = {}
        """What each group of peers was last announced, and its datagram body."""
        self._targets: dict[InboundTrack, frozenset[str] | None] = {}
        """Where each numbered track's packets go (None: every peer)."""
        self._siblings: frozenset[str] = frozenset()
        self._announce_soon: asyncio.Handle | None = None
        self.ticker = Ticker(self.tick, ANNOUNCE_S, "trunk tick")
        self.ignored_announces = 0
        self.nacks_sent = 0
        """Trunk NACKs this node sent (packets that did not arrive from a peer)."""
        self.resent = 0
        """Packets sent again because a peer's NACK asked."""

    @property
    def address(self) -> str:
        return self.endpoint.address

    async def open(self, host: str | None) -> str:
        address = await self.endpoint.bind(host)
        self.ticker.start()
        return address

    async def set_peers(
        self, peers: Mapping[str, str], siblings: Iterable[str] = ()
    ) -> None:
        """Replace the peers (node id -> "host:port"). `siblings`: those of them that are other
        worker processes of this node serving the room (`media.workers.pool`): with other
        nodes among the peers too, this trunk relays between the two groups."""
        peers = {node: address for node, address in peers.items() if node != self.node_id}
        await self.endpoint.set_peers(peers)
        self._siblings = frozenset(siblings)
        now = self._clock()
        gone = [node for node in self._peers if node not in peers]
        for node in peers:
            self._peers.setdefault(node, _Peer(node, last_heard=now))
        changed = False
        for node in gone:
            changed |= self._drop_peer(node)
        self._mark_watched()
        if changed:
            self.room.remote_changed()
        self._announce(force=True)

    def remote_participants(self) -> dict[str, RemoteParticipant]:
        """Every remote participant of the room now (those shadowed by a local one left out)."""
        found: dict[str, RemoteParticipant] = {}
        for peer in self._peers.values():
            for pid, participant in peer.participants.items():
                if not self.room.is_local(pid):
                    found.setdefault(pid, participant)
        return found

    def local_changed(self) -> None:
        """The local publications may have changed: announce soon (once per loop turn)."""
        if self._announce_soon is None:
            self._announce_soon = asyncio.get_running_loop().call_soon(self._announce_now)

    def describe(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "node": self.node_id,
            "peers": {node: f"{a[0]}:{a[1]}" for node, a in self.endpoint.peers.items()},
            "sending": len(self._local),
            "nacks_sent": self.nacks_sent,
            "resent": self.resent,
            **self.endpoint.counters(),
        }

    async def close(self) -> None:
        await self.ticker.stop()
        if self._announce_soon is not None:
            self._announce_soon.cancel()
            self._announce_soon = None
        for track in self._numbers:
            track.trunk = None
            track.watched_remotely = False
        self._numbers.clear()
        self._targets.clear()
        self._local.clear()
        for node in list(self._peers):
            self._drop_peer(node)
        self._peers.clear()
        self.endpoint.close()

    # -- the tick ----------------------------------------------------------------------------

    def tick(self) -> None:
        now = self._clock()
        changed = False
        for node, peer in list(self._peers.items()):
            if (peer.participants or peer.wants) and now - peer.last_heard > TRUNK_SILENCE_S:
                logger.warning("trunk peer silent room=%s peer=%s", self.room.room_id, node)
                changed |= self._drop_peer(node)
        if changed:
            self._mark_watched()
            self.room.remote_changed()
        self._announce(force=True)
        self._send_wants()

    def _announce_now(self) -> None:
        self._announce_soon = None
        self._announce(force=False)

    def _announce(self, force: bool) -> None:
        """Number and tap what crosses; send each group of peers its announce (if `force` or
        it changed).

        Without siblings every peer gets this node's local publications. A room's home
        worker is also a gateway between its sibling workers and the other nodes: the
        siblings get the local publications and those of the other nodes, the other nodes
        the local ones and the siblings' (each relayed packet crosses once more, never back).
        """
        peers = set(self._peers)
        siblings = frozenset(peers & self._siblings)
        nodes = frozenset(peers - siblings)
        local = self.room.local_publishers()
        plans: list[tuple[frozenset[str], list[tuple[str, str, list[InboundTrack]]]]] = []
        targets: dict[InboundTrack, frozenset[str] | None] = {}
        for _pid, _role, tracks in local:
            for track in tracks:
                for layer in track.spatial_layers or (track,):
                    targets[layer] = None
        if siblings and nodes:
            for group, other in ((siblings, nodes), (nodes, siblings)):
                relayed = self._relayed_from(other)
                for _pid, _role, tracks in relayed:
                    for track in tracks:
                        for layer in track.spatial_layers or (track,):
                            targets[layer] = group
                plans.append((group, local + relayed))
        else:
            plans.append((frozenset(peers), local))
        for track in list(self._numbers):
            if track not in targets or track.closed:
                number = self._numbers.pop(track)
                self._local.pop(number, None)
                self._targets.pop(track, None)
                track.trunk = None
                track.watched_remotely = False
        for track, to in targets.items():
            if track not in self._numbers:
                number = self._new_number()
                self._numbers[track] = number
                self._local[number] = track
            if track not in self._targets or self._targets[track] != to:
                self._targets[track] = to
                track.trunk = self._media_sender(self._numbers[track], to)
        sent: dict[frozenset[str], tuple[Announce, bytes]] = {}
        for group, publishers in plans:
            announce = announce_of(self.node_id, publishers, self._numbers.__getitem__)
            last = self._last_announce.get(group)
            if last is not None and last[0] == announce:
                body = last[1]  # unchanged: not encoded and compressed again
            else:
                body = encode_announce(announce)
            sent[group] = (announce, body)
            if force or last is None or last[1] != body:
                self.endpoint.send(Kind.ANNOUNCE, body, group)
        self._last_announce = sent

    def _relayed_from(
        self, group: frozenset[str]
    ) -> list[tuple[str, str, list[InboundTrack]]]:
        """The remote publishers the peers of `group` announced (those not shadowed here)."""
        found = []
        for node in sorted(group):
            peer = self._peers.get(node)
            if peer is None:
                continue
            for pid, participant in peer.participants.items():
                tracks = [t for t in participant.tracks.values() if not t.closed]
                if tracks and not self.room.is_local(pid):
                    found.append((pid, participant.role, tracks))
        return found

    def _new_number(self) -> int:
        for _ in range(MAX_TRACK_NUMBER):
            number = self._next_number
            self._next_number = number % MAX_TRACK_NUMBER + 1
            if number not in self._local:
                return number
        raise RuntimeError("no free trunk track number")

    def _media_sender(
        self, number: int, to: frozenset[str] | None
    ) -> Callable[[RtpPacket], None]:
        """The `InboundTrack.trunk` of a track numbered `number`: every packet to `to` (None:
        every peer)."""
        send = self.endpoint.send
        media = Kind.MEDIA

        def send_packet(packet: RtpPacket) -> None:
            send(media, media_body(
                number, packet.sequence_number, packet.timestamp, packet.ssrc,
                bool(packet.marker), packet.payload_type, packet.extensions.audio_level,
                packet.payload,
            ), to)

        return send_packet

    def _send_wants(self) -> None:
        """Tell each peer which layers of its simulcast tracks this node's subscribers watch."""
        for node, peer in self._peers.items():
            layers: dict[int, list[int]] = {}
            for number, track in peer.by_number.items():
                if not track.spatial_layers:
                    continue
                watched = set(subscribed_layers(track))
                watched.update(
                    i for i, layer in enumerate(track.spatial_layers)
                    if layer.taps or layer.watched_remotely  # relayed: watched further on
                )
                layers[number] = sorted(watched)
            if layers:
                self.endpoint.send(Kind.WANTS, encode_wants(Wants(layers)), node)

    def _mark_watched(self) -> None:
        """`watched_remotely` on every local layer some peer's subscribers watch."""
        watched: set[InboundTrack] = set()
        for peer in self._peers.values():
            for number, indices in peer.wants.items():
                track = self._local.get(number)
                if track is None:
                    continue
                layers = track.spatial_layers
                watched.update(layers[i] for i in indices if 0 <= i < len(layers))
        for track in self._numbers:
            track.watched_remotely = track in watched

    # -- receiving ---------------------------------------------------------------------------

    def _on_datagram(self, node: str, kind: Kind, body: bytes) -> None:
        peer = self._peers.get(node)
        if peer is None:
            return
        peer.last_heard = self._clock()
        if kind is Kind.MEDIA:
            self._on_media(peer, body)
        elif kind is Kind.ANNOUNCE:
            announce = decode_announce(body)
            if announce is None or announce.node != node:
                self.ignored_announces += 1
                return
            if self._apply_announce(node, peer, announce):
                self.room.remote_changed()
        elif kind is Kind.KEYFRAME:
            number = parse_keyframe(body)
            track = self._local.get(number) if number is not None else None
            if track is not None:
                track.request_keyframe()
        elif kind is Kind.NACK:
            self._on_nack(node, body)
        elif kind is Kind.WANTS:
            wants = decode_wants(body)
            if wants is not None:
                peer.wants = dict(wants.layers)
                self._mark_watched()

    def _on_media(self, peer: _Peer, body: bytes) -> None:
        media = parse_media(body)
        if media is None:
            return
        track = peer.by_number.get(media.number)
        if track is None or track.closed:
            return
        packet = RtpPacket(
            payload_type=media.payload_type, marker=int(media.marker),
            sequence_number=media.seq, timestamp=media.timestamp, ssrc=media.ssrc,
            payload=media.payload,
        )
        packet.extensions.audio_level = media.audio_level
        track.on_packet(packet)
        if track.kind == "video":  # the owner keeps a history of video only
            number = media.number
            highest, missing = gap(peer.highest.get(number), media.seq)
            peer.highest[number] = highest
            if missing:
                self.nacks_sent += 1
                self.endpoint.send(Kind.NACK, nack_body(number, missing), peer.node)

    def _on_nack(self, node: str, body: bytes) -> None:
        """Send a peer the packets it missed again (those still in the track's history)."""
        parsed = parse_nack(body)
        track = self._local.get(parsed[0]) if parsed is not None else None
        if parsed is None or track is None:
            return
        number, seqs = parsed
        for seq in seqs[:MAX_GAP]:
            packet = track.from_history(seq)
            if packet is not None:
                self.resent += 1
                self.endpoint.send(Kind.MEDIA, media_body(
                    number, packet.sequence_number, packet.timestamp, packet.ssrc,
                    bool(packet.marker), packet.payload_type, packet.extensions.audio_level,
                    packet.payload,
                ), node)

    def _apply_announce(self, node: str, peer: _Peer, announce: Announce) -> bool:
        """Make the peer's remote participants what it announced; True if anything changed."""
        by_number = {t.number: t for t in announce.tracks}
        layer_numbers = {n for t in announce.tracks for n in t.layers if n != t.number}
        roles = {p.id: p.role for p in announce.participants}
        changed = False
        for pid in list(peer.participants):
            if pid not in roles:
                self._close_remote(peer, peer.participants.pop(pid))
                changed = True
        for pid, role in roles.items():
            participant = peer.participants.get(pid)
            if participant is None:
                participant = peer.participants[pid] = RemoteParticipant(node, role)
                changed = True
            elif participant.role != role:
                participant.role = role
                changed = True
        kept: dict[int, InboundTrack] = {}
        kept_signatures: dict[int, tuple[Any, ...]] = {}
        for number, announced in by_number.items():
            if number in layer_numbers:
                continue
            participant = peer.participants.get(announced.participant)
            if participant is None:
                continue
            layers = [by_number[n] for n in announced.layers if n in by_number]
            if announced.layers and len(layers) != len(announced.layers):
                continue  # an inconsistent announce: wait for the next one
            signature = _signature(announced, layers)
            track = peer.by_number.get(number)
            if track is None or peer.signatures.get(number) != signature or track.closed:
                old = participant.tracks.get(announced.source)
                if old is not None:
                    old.close()
                track = self._remote_track(node, announced, layers)
                participant.tracks[announced.source] = track
                changed = True
            elif participant.tracks.get(announced.source) is not track:
                participant.tracks[announced.source] = track
                changed = True
            kept[number] = track
            kept_signatures[number] = signature
            for layer, layer_track in zip(layers, track.spatial_layers, strict=False):
                kept[layer.number] = layer_track
                layer_track.held_rates = layer.held
        still = set(kept.values())
        for participant in peer.participants.values():
            for source, track in list(participant.tracks.items()):
                if track not in still:
                    del participant.tracks[source]
                    track.close()
                    changed = True
        peer.by_number = kept
        peer.signatures = kept_signatures
        peer.highest = {n: seq for n, seq in peer.highest.items() if n in kept}
        return changed

    def _remote_track(
        self, node: str, announced: AnnouncedTrack, layers: list[AnnouncedTrack]
    ) -> InboundTrack:
        def track_of(spec: AnnouncedTrack) -> InboundTrack:
            keyframe = keyframe_body(spec.number)

            def send_pli(_ssrc: int) -> None:
                self.endpoint.send(Kind.KEYFRAME, keyframe, node)

            track = InboundTrack(
                spec.participant, spec.source, rebuilt_codecs(spec.codec, spec.rtx),
                send_pli=send_pli,
            )
            track.rid = spec.rid
            track.held_rates = spec.held
            return track

        if not layers:
            return track_of(announced)
        built = [track_of(layer) if layer.number != announced.number else None
                 for layer in layers]
        published = track_of(announced)
        spatial = tuple(t if t is not None else published for t in built)
        published.spatial_layers = spatial
        return published

    def _close_remote(self, peer: _Peer, participant: RemoteParticipant) -> None:
        for track in participant.tracks.values():
            track.close()
        participant.tracks.clear()

    def _drop_peer(self, node: str) -> bool:
        """Forget a peer's remote participants (and its wants); True if it had any."""
        peer = self._peers.pop(node, None)
        if peer is None:
            return False
        had = bool(peer.participants or peer.wants)
        for participant in peer.participants.values():
            self._close_remote(peer, participant)
        if node in self.endpoint.peers:  # silent, still a peer: it may come back
            self._peers[node] = _Peer(node, last_heard=self._clock())
        return had
