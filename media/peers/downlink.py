"""A participant's receiving ("down") connection: the relay offers, the client answers.

The relay is the only offerer here, so renegotiation never glares. Offers are serialized:
while one waits for its answer, changes to the set of forwarded tracks are coalesced into
the next offer. A track that goes away leaves its transceiver inactive, and the next track of
the same kind reuses it, so the SDP does not grow forever. A new track's stream starts
forwarding once the answer is applied and the transport is up, from the next keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from media.adapt.adaptation import DownlinkAdaptation, PriorityOf, default_priority
from media.adapt.data_saver import DataSaver
from media.adapt.spatial import start_layer
from media.errors import NegotiationError
from media.forward.forwarder import InboundTrack, OutboundStream, deliver_feedback
from media.forward.pacer import Pacer
from media.peers.aiortc_bends import (
    HeldTrack,
    bind_host_candidates,
    datagram_sender,
    negotiated_codecs,
    negotiated_header_extension_ids,
    receive_directly,
    send_sender_report,
    sender_ssrcs,
    tap_relay_sender,
    transport_of,
)
from media.peers.codec_match import preferences_for
from media.peers.config import PeerConfig
from media.peers.sdp_bandwidth import declared_max_bps
from media.peers.uplink import SDP_ERRORS, connection_state_event
from media.rtp.header import URI_ABS_SEND_TIME, ExtensionLayout
from media.rtp.red import offer_with_red, red_payload_type

logger = logging.getLogger(__name__)

Event = dict[str, Any]


@dataclass
class _Slot:
    """One m-line of the down connection: a relay sender and what it forwards."""

    transceiver: RTCRtpTransceiver
    stream: OutboundStream
    track: InboundTrack | None = None
    answered: bool = False
    """The subscriber has accepted the current track's m-line (its answer was applied)."""


class Downlink:
    """The relay's side of one participant's receiving connection."""

    def __init__(
        self,
        participant_id: str,
        config: PeerConfig,
        emit: Callable[[Event], None],
        priority_of: PriorityOf = default_priority,
    ) -> None:
        self.participant_id = participant_id
        self.generation = 0
        """Counts down connections: a new value in an offer means a new peer connection."""
        self._config = config
        self._emit = emit
        self._pc: RTCPeerConnection | None = None
        self._pacer = Pacer()
        self._slots: list[_Slot] = []
        self._by_ssrc: dict[int, OutboundStream] = {}
        self._desired: list[InboundTrack] = []
        self._offer: Event | None = None
        self._busy = False
        self._dirty = False
        self._task: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._state: str | None = None
        self._closed = False
        self._answer_sdp = ""
        self.adaptation = DownlinkAdaptation(
            participant_id,
            lambda: self.streams,
            emit,
            priority_of=priority_of,
            pace=self._set_pacing_rate,
            drop_paced=lambda: self._pacer.drop_queued(),  # the pacer of the connection now
            drop_padding=lambda: self._pacer.drop_padding(),
            unsent_of=lambda ssrc: self._pacer.dropped_of(ssrc),
            send_reports=self._send_video_reports,
        )
        """Estimate, allocation and rungs; ticks while the connection is up."""
        self.data_saver = DataSaver(participant_id, emit)
        """What this participant was sent since it joined, and its data budget (None: none);
        counted and applied by the adaptation's tick (so not with `--adaptation off`)."""
        self.adaptation.data_saver = self.data_saver

    @property
    def streams(self) -> list[OutboundStream]:
        """The outbound streams currently assigned a track."""
        return [s.stream for s in self._slots if s.track is not None]

    @property
    def transceiver_count(self) -> int:
        return len(self._slots)

    @property
    def connection_state(self) -> str:
        return self._pc.connectionState if self._pc is not None else "new"

    def set_tracks(self, tracks: Sequence[InboundTrack]) -> None:
        """The tracks this participant should receive now; renegotiates when that changes."""
        self._desired = list(tracks)
        self._kick()

    async def apply_answer(self, answer_sdp: str) -> None:
        """Apply the participant's answer to the pending offer."""
        async with self._lock:
            pc = self._pc
            if pc is None or self._offer is None or pc.signalingState != "have-local-offer":
                raise NegotiationError("no offer is waiting for an answer")
            error: NegotiationError | None
            try:
                await pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
            except SDP_ERRORS as exc:
                error = NegotiationError(f"cannot apply the subscriber's answer: {exc}")
            else:
                error = None
                self._offer = None
                self._answer_sdp = answer_sdp
                ceiling = declared_max_bps(answer_sdp)
                if ceiling != self.adaptation.ceiling_bps:
                    logger.info("subscriber declares %s participant=%s",
                                "no bandwidth" if ceiling is None else f"{ceiling / 1000:.0f}k",
                                self.participant_id)  # fmt: skip
                self.adaptation.ceiling_bps = ceiling
                for slot in self._slots:
                    slot.answered = True
                self._configure_slots()
        if error is not None:
            # aiortc cannot roll back a half-applied description: start a fresh connection.
            await self._restart()
            raise error
        self._busy = False
        if self._dirty:
            self._kick()

    async def request_offer(self) -> None:
        """Send the pending offer again, or (after a reconnect) a fresh connection's offer."""
        if self._offer is not None:
            self._emit(self._offer)
            return
        await self._restart()

    async def close(self) -> None:
        self._closed = True
        await self.adaptation.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        async with self._lock:
            await self._close_connection()

    # -- negotiation -------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._closed:
            return
        if self._busy:
            self._dirty = True
            return
        self._busy = True
        self._dirty = False
        self._task = asyncio.ensure_future(self._offer_round())

    async def _offer_round(self) -> None:
        try:
            async with self._lock:
                sent = await self._make_offer()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("downlink offer failed participant=%s", self.participant_id)
            sent = False
        if not sent:
            self._busy = False
            if self._dirty:
                self._kick()

    async def _make_offer(self) -> bool:
        desired = list(self._desired)
        wanted = set(desired)
        changed = False
        for slot in self._slots:
            if slot.track is not None and slot.track not in wanted:
                slot.stream.detach()
                slot.track = None
                slot.transceiver.direction = "inactive"
                changed = True
        present = {slot.track for slot in self._slots}
        for track in desired:
            if track in present:
                continue
            free = next(
                (s for s in self._slots if s.track is None and s.transceiver.kind == track.kind),
                None,
            )
            slot = free if free is not None else self._add_slot(track.kind)
            slot.track = track
            slot.answered = False
            slot.transceiver.direction = "sendonly"
            slot.transceiver.setCodecPreferences(preferences_for(track.codec, track.rtx))
            changed = True
        if not changed or self._pc is None:
            return False
        pc = self._pc
        offer = await pc.createOffer()
        bind_host_candidates(pc, self._config.udp_host)
        await pc.setLocalDescription(offer)
        tracks = {
            slot.transceiver.mid: {
                "participant": slot.track.participant_id,
                "source": slot.track.source,
            }
            for slot in self._slots
            if slot.track is not None
        }
        self._offer = {
            "type": "offer",
            # RED is offered on audio m-lines though aiortc knows nothing of it: the relay
            # builds RED packets itself for a subscriber that accepts it (media/rtp/red.py)
            "sdp": offer_with_red(pc.localDescription.sdp),
            "tracks": tracks,
            "connection": self.generation,
        }
        self._emit(self._offer)
        return True

    def _add_slot(self, kind: str) -> _Slot:
        if self._pc is None:
            self._open_connection()
        assert self._pc is not None
        transceiver = self._pc.addTransceiver(HeldTrack(kind), direction="sendonly")
        sender = transceiver.sender
        sink = self._pacer.audio if kind == "audio" else self._pacer.video
        padding = None if kind == "audio" else self._pacer.padding
        stream = OutboundStream(kind, *sender_ssrcs(sender), sink, padding)
        stream.link = self.adaptation
        stream.backlog = lambda: self._pacer.backlog_s  # the connection's pacer of the moment
        tap_relay_sender(sender, stream.fill_sender_report, stream.on_rtcp)
        slot = _Slot(transceiver, stream)
        self._slots.append(slot)
        self._by_ssrc[stream.ssrc] = stream
        return slot

    def _configure_slots(self) -> None:
        """After an answer or once connected: apply what was negotiated, start forwarding."""
        wanted = set(self._desired)
        for slot in self._slots:
            track = slot.track
            if track is None or not slot.answered:
                continue
            t = slot.transceiver
            if t.mid is None:
                continue
            ids = negotiated_header_extension_ids(t)
            if t.kind == "video":
                self._pacer.abs_send_time_id = ids.get(URI_ABS_SEND_TIME, 0)
            slot.stream.configure(
                ExtensionLayout.negotiated(t.mid, ids, t.kind), negotiated_codecs(t)
            )
            if t.kind == "audio":
                slot.stream.red_pt = red_payload_type(self._answer_sdp, t.mid)
                slot.stream.set_red(slot.stream.red_on)
            if self._pacer.connected and track in wanted and not track.closed:
                # adapted, a simulcast track starts on its lowest layer (`spatial.start_layer`)
                start = start_layer(track) if self._config.adaptation else None
                slot.stream.attach(track, start)

    # -- the connection ----------------------------------------------------------------------

    def _open_connection(self) -> None:
        pc = self._config.new_peer_connection()
        self._pc = pc
        self._pacer = Pacer()
        self._state = None

        @pc.on("connectionstatechange")
        def _on_change() -> None:
            if pc is not self._pc:
                return
            if pc.connectionState == "connected":
                dtls = transport_of(pc)
                send = datagram_sender(dtls) if dtls is not None else None
                if send is not None:
                    self._pacer.connect(send)
                    assert dtls is not None
                    receive_directly(dtls, self._on_rtcp)
                    self._configure_slots()
                    if not self._closed and self._config.adaptation:
                        self.adaptation.start()
            elif pc.connectionState in ("failed", "closed"):
                self._pacer.disconnect()
            state = connection_state_event(pc.connectionState)
            if state is not None and state != self._state:
                self._state = state
                self._emit({"type": "media_state", "state": state, "direction": "down"})

    def _send_video_reports(self) -> None:
        """A sender report on each video stream, now (a probe's padding has just left)."""
        if self._pc is None or self._pc.connectionState != "connected":
            return
        for slot in self._slots:
            if slot.stream.kind == "video":
                send_sender_report(slot.transceiver.sender)

    def _set_pacing_rate(self, bps: float | None) -> None:
        self._pacer.set_rate(bps)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "pacer %s rate=%s queued=%d late=%d dropped=%d video=[%s]", self.participant_id,
                bps, self._pacer.queued_bytes, self._pacer.sent_late, self._pacer.dropped,
                "; ".join(_video_state(s) for s in self.streams if s.kind == "video"),
            )  # fmt: skip

    def _on_rtcp(self, data: bytes) -> None:
        deliver_feedback(data, self._by_ssrc)

    async def _close_connection(self) -> None:
        for slot in self._slots:
            slot.stream.detach()
        self._slots = []
        self._by_ssrc = {}
        self._pacer.disconnect()
        self._offer = None
        pc, self._pc = self._pc, None
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()

    async def _restart(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        async with self._lock:
            await self._close_connection()
            self.generation += 1
        self._busy = False
        self._kick()


def _video_state(stream: OutboundStream) -> str:
    """A video stream's source layer and temporal layers, for the DEBUG pacer line."""
    source = stream.source
    rid = source.rid if source is not None else None
    pending = stream.pending.rid if stream.pending is not None else None
    layers = stream.layers
    return (f"{rid or '-'}{'->' + str(pending) if pending else ''} tid={layers.max_tid}/"
            f"{layers.target_tid} dropped={layers.frames_dropped} paused={stream.paused} "
            f"sent={stream.packets} nacked={stream.nacks} resent={stream.retransmitted} "
            f"held={stream.resends_held} pli={stream.keyframe_requests}")
