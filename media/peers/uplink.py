"""A participant's publishing ("up") connection: the client offers, the relay answers.

Every offer is answered with one codec per track (the publisher's first choice) so what
arrives can be forwarded as is; each sending m-line named in `sources` becomes an
`InboundTrack` fed straight from the decrypted RTP. A video m-line offered as simulcast (RIDs,
`media.peers.simulcast_sdp`) is answered with the RIDs, and becomes one `InboundTrack` per
layer, the highest the published one (`InboundTrack.spatial_layers`). An offer with new ICE
credentials is a new connection (the client reconnected): the old one is closed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.exceptions import (
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.adapt.dynacast import Dynacast
from media.adapt.publisher_cap import PublisherRemb, remb_sender
from media.errors import NegotiationError
from media.forward.forwarder import InboundTrack
from media.peers.aiortc_bends import (
    KernelArrivalClock,
    UplinkRtpTap,
    add_header_extensions,
    bind_host_candidates,
    negotiated_codecs,
    receive_directly,
    send_pli,
    send_rtcp_bytes,
    set_negotiated_codecs,
    tap_relay_receiver,
    transport_of,
)
from media.peers.codec_match import forwarded_codecs
from media.peers.config import PeerConfig
from media.peers.simulcast_sdp import (
    MID_URI,
    REPAIRED_RID_URI,
    RID_URI,
    SimulcastOffer,
    answer_simulcast,
    simulcast_offer,
)
from media.peers.transport_cc_sdp import (
    answer_transport_cc,
    transport_cc_ext_id,
    transport_cc_offer,
)
from media.peers.twcc_feedback import TwccFeedback
from media.rtp.twcc import TRANSPORT_CC_URI, TransportFeedback, encode_feedback

logger = logging.getLogger(__name__)

SENDING = ("sendonly", "sendrecv")
# What aiortc raises for an SDP it cannot parse or apply.
SDP_ERRORS = (
    ValueError, AssertionError, KeyError, IndexError, InternalError, InvalidAccessError,
    InvalidStateError, OperationError,
)
_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)

ConnectionStateCallback = Callable[[str], None]


def ice_ufrag(sdp: str) -> str | None:
    """The first ICE username fragment in an SDP (the same for every bundled m-line)."""
    match = _UFRAG.search(sdp)
    return match.group(1) if match else None


def connection_state_event(state: str) -> str | None:
    """aiortc's connectionState as the `media_state` event names it (None: not reported)."""
    return {
        "connected": "connected",
        "failed": "failed",
        "closed": "disconnected",
        "disconnected": "disconnected",
    }.get(state)


class Uplink:
    """The relay's side of one participant's publishing connection."""

    def __init__(
        self,
        participant_id: str,
        config: PeerConfig,
        on_tracks_changed: Callable[[], None],
        on_state: ConnectionStateCallback,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.participant_id = participant_id
        self.tracks: dict[str, InboundTrack] = {}
        """mid -> the track published on that m-line."""
        self._config = config
        self._on_tracks_changed = on_tracks_changed
        self._on_state = on_state
        self._pc: RTCPeerConnection | None = None
        self._ufrag: str | None = None
        self._lock = asyncio.Lock()
        self._state: str | None = None
        self.remb = PublisherRemb(lambda: list(self.tracks.values()), remb_sender(lambda: self._pc))
        """REMB capping the publisher when every subscriber of it is weak (media/publisher_cap)."""
        self.dynacast = Dynacast(lambda: list(self.tracks.values()), on_event or _ignore)
        """The simulcast layers nobody watches, paused at the publisher (media/adapt/dynacast)."""
        self._arrival = KernelArrivalClock()
        """The kernel's receive time of the RTP datagram being handled (transport-cc)."""
        self.twcc: TwccFeedback | None = None
        """Transport-cc feedback to the publisher, when its offer has the transport-wide
        sequence number extension (media/peers/twcc_feedback)."""

    @property
    def connection_state(self) -> str:
        return self._pc.connectionState if self._pc is not None else "new"

    async def handle_offer(self, offer_sdp: str, sources: dict[str, str]) -> str:
        """Apply the publisher's offer and return the relay's answer SDP."""
        async with self._lock:
            try:
                return await self._handle_offer(offer_sdp, sources)
            except SDP_ERRORS as exc:
                raise NegotiationError(f"cannot apply the publisher's offer: {exc}") from exc

    async def _handle_offer(self, offer_sdp: str, sources: dict[str, str]) -> str:
        ufrag = ice_ufrag(offer_sdp)
        if self._pc is not None and ufrag != self._ufrag:
            await self._close_connection()
        parsed = aiortc_sdp.SessionDescription.parse(offer_sdp)
        if self._pc is None:
            self._open_connection()
        self._ufrag = ufrag
        pc = self._pc
        assert pc is not None
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        dtls = transport_of(pc)
        assert dtls is not None
        tap = UplinkRtpTap.on(dtls)
        media = {m.rtp.muxId: m for m in parsed.media if m.kind in ("audio", "video")}
        simulcast = simulcast_offer(offer_sdp)
        transport_cc = transport_cc_offer(offer_sdp) if self._config.transport_cc else {}
        ext_id = transport_cc_ext_id(transport_cc)
        if ext_id is not None:
            add_header_extensions(dtls, {TRANSPORT_CC_URI: ext_id})
            if self.twcc is None:
                self.twcc = TwccFeedback(
                    self._send_rtcp, clock=self._arrival.now, label=self.participant_id
                )
                if pc.connectionState == "connected":
                    self.twcc.start()
            tap.on_transport_sequence = self.twcc.record
        for offered in simulcast.values():
            extensions = {RID_URI: offered.rid_ext}
            if offered.repaired_ext is not None:
                extensions[REPAIRED_RID_URI] = offered.repaired_ext
            if offered.mid_ext is not None:
                extensions[MID_URI] = offered.mid_ext
            add_header_extensions(dtls, extensions)
        answered: dict[str, SimulcastOffer] = {}
        changed = False
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            tap_relay_receiver(receiver)  # idempotent
            codecs = forwarded_codecs(negotiated_codecs(transceiver))
            set_negotiated_codecs(transceiver, codecs)
            mid = transceiver.mid
            m = media.get(mid) if mid is not None else None
            sending = m is not None and m.direction in SENDING and m.port != 0
            source = sources.get(mid) if sending and mid is not None else None
            current = self.tracks.get(mid) if mid is not None else None
            rids = simulcast[mid].rids if mid in simulcast else ()
            if current is not None and mid is not None and (
                current.source != source or _rids(current) != rids
            ):
                self._remove_track(mid, receiver, tap)
                current = None
                changed = True
            if source is not None and current is None and codecs and m is not None:
                assert mid is not None  # `source` is only looked up for an m-line with a mid
                offer = simulcast.get(mid) if m.kind == "video" else None
                if offer is not None:
                    track = self._simulcast_track(source, list(codecs), receiver, offer, tap)
                    answered[mid] = offer
                else:
                    primary, rtx = _ssrcs(m)
                    track = InboundTrack(
                        self.participant_id, source, list(codecs),
                        send_pli=_pli_sender(receiver),
                    )
                    tap.route(receiver, track.on_packet, primary, rtx, codecs)
                self.tracks[mid] = track
                changed = True
            elif current is not None and mid is not None and mid in simulcast:
                answered[mid] = simulcast[mid]  # a renegotiation: the same layers again
        answer = await pc.createAnswer()
        bind_host_candidates(pc, self._config.udp_host)
        await pc.setLocalDescription(answer)
        if changed:
            self._on_tracks_changed()
        return answer_transport_cc(
            answer_simulcast(pc.localDescription.sdp, answered), transport_cc
        )

    def _send_rtcp(self, build: Callable[[int], list[TransportFeedback]]) -> bool:
        """Send `build(rtcp_sender_ssrc)` as RTCP through one of the connection's receivers
        (all share the bundled transport)."""
        pc = self._pc
        if pc is None:
            return False
        for transceiver in pc.getTransceivers():
            if send_rtcp_bytes(
                transceiver.receiver,
                lambda ssrc: [encode_feedback(feedback) for feedback in build(ssrc)],
            ):
                return True
        return False

    def _simulcast_track(
        self,
        source: str,
        codecs: list[RTCRtpCodecParameters],
        receiver: RTCRtpReceiver,
        offer: SimulcastOffer,
        tap: UplinkRtpTap,
    ) -> InboundTrack:
        """One track per simulcast layer, the highest the published one; the tap sends each
        layer's packets (learned by RID) to its track."""
        send_pli = _pli_sender(receiver)
        layers: list[InboundTrack] = []
        for rid in offer.rids:
            layer = InboundTrack(self.participant_id, source, codecs, send_pli=send_pli)
            layer.rid = rid
            layers.append(layer)
        published = layers[-1]
        for layer in layers:
            layer.spatial_layers = tuple(layers) if layer is published else ()
        tap.route_simulcast(
            receiver, offer.mid, {layer.rid or "": layer.on_packet for layer in layers}, codecs
        )
        return published

    def _remove_track(self, mid: str, receiver: RTCRtpReceiver, tap: UplinkRtpTap) -> None:
        track = self.tracks.pop(mid)
        tap.unroute(receiver)
        track.close()

    def _open_connection(self) -> None:
        pc = self._config.new_peer_connection()
        self._pc = pc

        @pc.on("connectionstatechange")
        def _on_change() -> None:
            if pc is not self._pc:
                return
            if pc.connectionState == "connected":
                dtls = transport_of(pc)
                if dtls is not None:
                    # kernel receive times only where transport-cc reports them
                    receive_directly(
                        dtls, arrival_clock=self._arrival if self.twcc is not None else None
                    )
                if self.twcc is not None:
                    self.twcc.start()
                if self._config.adaptation:
                    self.remb.start()
                    self.dynacast.start()
            state = connection_state_event(pc.connectionState)
            if state is not None and state != self._state:
                self._state = state
                self._on_state(state)

    async def _close_connection(self) -> None:
        pc, self._pc = self._pc, None
        if self.twcc is not None:
            self.twcc.stop()
            self.twcc = None
        had_tracks = bool(self.tracks)
        for track in self.tracks.values():
            track.close()
        self.tracks.clear()
        self._state = None
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
        if had_tracks:
            self._on_tracks_changed()

    async def close(self) -> None:
        """Close the connection; its tracks stop being forwarded."""
        await self.remb.stop()
        await self.dynacast.stop()
        async with self._lock:
            await self._close_connection()


def _ignore(_event: dict[str, Any]) -> None:
    """No one to tell (an uplink made without an event callback)."""


def _rids(track: InboundTrack) -> tuple[str, ...]:
    """The RIDs of a simulcast track's layers, lowest first (empty for a single layer)."""
    return tuple(layer.rid or "" for layer in track.spatial_layers)


def _ssrcs(media: aiortc_sdp.MediaDescription) -> tuple[int | None, int | None]:
    """(primary, RTX) SSRCs an m-line announces, from its FID group when it has one."""
    for group in media.ssrc_group:
        if group.semantic == "FID" and len(group.items) == 2:
            return int(group.items[0]), int(group.items[1])
    if media.ssrc:
        return media.ssrc[0].ssrc, None
    return None, None


def _pli_sender(receiver: RTCRtpReceiver) -> Callable[[int], None]:
    """`send_pli(media_ssrc)` for an `InboundTrack`: a PLI through this receiver's RTCP."""

    def send(media_ssrc: int) -> None:
        send_pli(receiver, media_ssrc)

    return send
