"""The low rung: one publisher's VP8 camera transcoded once to ~320x180 at 15 fps, shared.

A `LowRendition` belongs to one published video track. While at least one subscriber is on
the `low` rung it runs a thread that takes the publisher's RTP packets (tapped on the event
loop, through a bounded queue), assembles and decodes the VP8 frames, scales them and encodes
them again with libvpx in real-time mode at ~110 kbit/s (`LOW_BITRATE`), and hands the
packetized result back to the loop, where `rendition.track` (an `InboundTrack` like any
published one) forwards it to the subscribers' outbound streams. The outbound streams keep
their own continuous sequence numbers, timestamps and picture ids (see
`forwarder.OutboundStream.switch_source`).

libvpx and swscale release the GIL, so the event loop keeps forwarding while a frame is coded.
When the thread falls behind, frames are decoded but not encoded (the queue is bounded; an
overflow is a gap, answered by waiting for the publisher's next keyframe). The thread stops
`linger_s` after the last subscriber leaves the rung, and at once when the track closes.

Pure pieces (frame assembly, pacing, packetizing, sizes) are functions and small classes
tested with tables; the thread is thin around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import os
import queue
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import av
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtp import RtpPacket

from media.forward.forwarder import InboundTrack, OutboundStream
from media.rtp import vp8

logger = logging.getLogger(__name__)

LOW_WIDTH = 320
"""Width of the low rendition (height follows the source's aspect ratio, 180 for 16:9)."""
LOW_FPS = 15
"""Frame rate of the low rendition."""
LOW_BITRATE = 110_000
"""Target bitrate of the low rendition's encoder, bits per second."""
LINGER_S = 3.0
"""A rendition keeps running this long after its last subscriber left (a flapping link)."""
QUEUE_PACKETS = 400
"""Packets of the publisher waiting for the thread at most (about a second at 1.5 Mbit/s)."""
LATE_PACKETS = 40
"""With more than this waiting after a decode, the frame is not encoded (the thread is late)."""
PACKET_MAX = 1200
"""Largest RTP payload the packetizer makes."""
THREAD_NICENESS = 5
"""The transcoding thread runs this much nicer than the event loop: forwarding comes first,
and a late transcoder only drops frames."""
VIDEO_CLOCK = 90000

_renditions: weakref.WeakSet[LowRendition] = weakref.WeakSet()


def running_renditions() -> list[LowRendition]:
    """The low renditions transcoding in this process now (tests, health)."""
    return [r for r in list(_renditions) if r.running]


def offers_low(track: InboundTrack) -> bool:
    """True when `track` can have a low rendition: a single-layer VP8 camera (a screen share
    keeps its resolution: slides must stay legible; audio and other codecs are forwarded only;
    a simulcast camera's lowest layer is its low rung, `media.adapt.spatial`)."""
    return (
        track.kind == "video" and track.source != "screen" and track.codec.name.lower() == "vp8"
        and not track.spatial_layers
    )


def low_size(width: int, height: int, target_width: int = LOW_WIDTH) -> tuple[int, int]:
    """The low rendition's size for a `width`x`height` source: `target_width` wide (never
    wider than the source), the height keeping the aspect ratio, both even."""
    if width <= 0 or height <= 0:
        return (target_width, target_width * 9 // 16)
    out_w = min(width, target_width) & ~1
    out_h = max(2, round(height * out_w / width / 2) * 2)
    return (max(2, out_w), out_h)


def due_for_encoding(timestamp: int, last_encoded: int | None, fps: int = LOW_FPS) -> bool:
    """True when a decoded frame at RTP `timestamp` should be encoded to keep at most `fps`
    frames a second (a 10% tolerance keeps 15 of a 30 fps source's frames, not fewer)."""
    if last_encoded is None:
        return True
    elapsed = (timestamp - last_encoded) & 0xFFFFFFFF
    if elapsed >= 0x80000000:  # older than the last one encoded
        return False
    return elapsed >= VIDEO_CLOCK / fps * 0.9


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One VP8 frame as assembled from RTP packets."""

    timestamp: int
    data: bytes
    keyframe: bool
    tid: int | None
    """Temporal layer (None when the publisher sends none)."""


class FrameAssembler:
    """Turns one publisher's VP8 packets, in arrival order, into whole frames.

    A frame is whole when its packets run without a sequence gap from the one starting it
    to the one with the marker bit. After a gap, frames are dropped until the next keyframe
    (`broken` tells the caller to ask the publisher for one)."""

    def __init__(self) -> None:
        self.broken = True
        """Waiting for a keyframe (at start, and after any loss)."""
        self.dropped = 0
        """Whole frames dropped while waiting for a keyframe."""
        self._next_seq: int | None = None
        self._timestamp: int | None = None
        self._parts: list[bytes] = []
        self._keyframe = False
        self._tid: int | None = None
        self._complete = True

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> EncodedFrame | None:
        """Add one packet; return the frame it completes, if any."""
        if self._next_seq is not None:
            gap = (seq - self._next_seq) & 0xFFFF
            if gap >= 0x8000:
                return None  # late or duplicate: the frame it belonged to is gone or done
            if gap:
                self._complete = False
                self.broken = True
        self._next_seq = (seq + 1) & 0xFFFF
        try:
            d = vp8.parse_descriptor(payload)
        except ValueError:
            self._complete = False
            return None
        if timestamp != self._timestamp or (d.start_of_partition and d.partition_id == 0):
            self._timestamp = timestamp
            self._parts = []
            self._complete = d.start_of_partition and d.partition_id == 0
            self._keyframe = self._complete and vp8.is_keyframe_start(payload)
            self._tid = d.tid
        self._parts.append(payload[d.size:])
        if not marker:
            return None
        complete = self._complete
        self._complete = False
        if not complete:
            return None
        if self.broken and not self._keyframe:
            self.dropped += 1
            return None
        self.broken = False
        return EncodedFrame(timestamp, b"".join(self._parts), self._keyframe, self._tid)


class Vp8Packetizer:
    """Packetizes encoded frames with a descriptor carrying a 15-bit picture id, TL0PICIDX
    and TID 0 with layer sync (every frame is a base-layer frame), so outbound streams
    renumber them like any layered publisher's."""

    def __init__(self, ssrc: int, payload_type: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.seq = random.randrange(0, 0x10000)
        self.picture_id = random.randrange(0, 0x8000)
        self.tl0picidx = random.randrange(0, 0x100)

    def packetize(self, frame: bytes, timestamp: int) -> list[RtpPacket]:
        """The RTP packets of one frame (the last one with the marker bit)."""
        descriptor = VpxPayloadDescriptor(
            partition_start=1,
            partition_id=0,
            picture_id=self.picture_id,
            tl0picidx=self.tl0picidx,
            tid=(0, 1),
        )
        packets: list[RtpPacket] = []
        pos = 0
        while pos < len(frame) or not packets:
            head = bytes(descriptor)
            size = min(len(frame) - pos, PACKET_MAX - len(head))
            packets.append(
                RtpPacket(
                    payload_type=self.payload_type,
                    sequence_number=self.seq,
                    timestamp=timestamp & 0xFFFFFFFF,
                    ssrc=self.ssrc,
                    payload=head + frame[pos:pos + size],
                )
            )
            self.seq = (self.seq + 1) & 0xFFFF
            descriptor.partition_start = 0
            pos += size
        packets[-1].marker = 1
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.tl0picidx = (self.tl0picidx + 1) & 0xFF
        return packets


class LowEncoder:
    """Decode the publisher's frames, scale them, encode the low rendition (libvpx, CBR,
    real-time); one per rendition thread."""

    def __init__(self, bitrate: int = LOW_BITRATE, fps: int = LOW_FPS) -> None:
        self.bitrate = bitrate
        self.fps = fps
        self._decoder = av.CodecContext.create("vp8", "r")
        self._encoder: av.VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None
        """Size of the frames encoded last."""

    def decode(self, frame: EncodedFrame) -> list[av.VideoFrame]:
        """Decoded pictures of one frame; raises av.FFmpegError on a broken frame."""
        return list(self._decoder.decode(av.Packet(frame.data)))

    def encode(self, picture: av.VideoFrame, keyframe: bool) -> tuple[bytes, bool]:
        """(encoded frame, is a keyframe) of one decoded picture, scaled to the low size."""
        size = low_size(picture.width, picture.height)
        if self._encoder is None or size != self._size:
            self._encoder = self._new_encoder(size)
            self._size = size
            keyframe = True
        scaled = picture.reformat(width=size[0], height=size[1], format="yuv420p")
        scaled.pts = None
        if keyframe:
            scaled.pict_type = av.video.frame.PictureType.I
        data = b"".join(bytes(p) for p in self._encoder.encode(scaled))
        self.size = size
        return data, bool(data) and not data[0] & 0x01

    def _new_encoder(self, size: tuple[int, int]) -> av.VideoCodecContext:
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.width, encoder.height = size
        encoder.pix_fmt = "yuv420p"
        encoder.bit_rate = self.bitrate
        encoder.framerate = fractions.Fraction(self.fps, 1)
        encoder.time_base = fractions.Fraction(1, self.fps)
        encoder.gop_size = 3000  # keyframes on request only
        encoder.qmin = 4
        encoder.qmax = 56
        encoder.thread_count = 1
        encoder.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "error-resilient": "1",
            "auto-alt-ref": "0",
            "bufsize": str(self.bitrate),
            "minrate": str(self.bitrate),
            "maxrate": str(self.bitrate),
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "static-thresh": "1",
            "noise-sensitivity": "0",
        }
        return encoder


class LowRendition:
    """The shared low rendition of one published VP8 track, running while anyone needs it."""

    def __init__(
        self,
        source: InboundTrack,
        *,
        linger_s: float = LINGER_S,
        bitrate: int = LOW_BITRATE,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.source = source
        self.track = InboundTrack(
            source.participant_id, source.source, [source.codec],
            send_pli=lambda _ssrc: self._keyframe_wanted.set(), loop=loop,
        )
        """What subscribers on the low rung forward (fed on the event loop)."""
        self.subscribers: set[OutboundStream] = set()
        self.linger_s = linger_s
        self.bitrate = bitrate
        self.frames_encoded = 0
        self.frames_skipped = 0
        self.decode_errors = 0
        self.keyframes_asked = 0
        """Keyframe requests sent to the publisher on a broken frame chain."""
        self.frames_decoded = 0
        self.frames_unusable = 0
        """Whole frames of the publisher dropped while waiting for its keyframe."""
        self.cpu_s = 0.0
        """CPU time the transcoding thread has used (all runs)."""
        self.size: tuple[int, int] | None = None
        self.starts = 0
        self._loop = loop
        self._queue: queue.Queue[RtpPacket | None] | None = None
        self._thread: threading.Thread | None = None
        self._stop_timer: asyncio.TimerHandle | None = None
        self._keyframe_wanted = threading.Event()
        self._ssrc = random.randrange(1, 0xFFFFFFFF)
        self.closed = False
        _renditions.add(self)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def acquire(self, stream: OutboundStream) -> None:
        """`stream` is on the low rung: run (again) if not running."""
        if self.closed:
            return
        self.subscribers.add(stream)
        if self._stop_timer is not None:
            self._stop_timer.cancel()
            self._stop_timer = None
        if self._thread is None:
            self._start()

    def release(self, stream: OutboundStream) -> None:
        """`stream` left the low rung: stop `linger_s` after the last one left."""
        self.subscribers.discard(stream)
        if self.subscribers or self._thread is None or self._stop_timer is not None:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._stop_timer = loop.call_later(self.linger_s, self._stop)

    def close(self) -> None:
        """Stop for good (the publisher's track closed)."""
        self.closed = True
        self.subscribers.clear()
        if self._stop_timer is not None:
            self._stop_timer.cancel()
            self._stop_timer = None
        self._stop()
        self.track.close()

    # -- the loop side ---------------------------------------------------------------------

    def _start(self) -> None:
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self.starts += 1
        # each run's packetizer starts a new sequence: under a new SSRC, so that `track` takes
        # it for a new stream (under the old one, a sequence starting "behind" the last run's
        # read as old packets, and no keyframe of the new run was ever seen: subscribers
        # switched to low waited for one for good)
        self._ssrc = random.randrange(1, 0xFFFFFFFF)
        packets: queue.Queue[RtpPacket | None] = queue.Queue(QUEUE_PACKETS)
        self._queue = packets
        self._keyframe_wanted.set()
        self._thread = threading.Thread(
            target=self._run,
            args=(packets, loop),
            name=f"low-{self.source.participant_id}-{self.source.source}",
            daemon=True,
        )
        self._thread.start()
        self.source.add_tap(self._on_source_packet)
        self.source.request_keyframe()
        logger.info("low rendition started track=%s", self.source)

    def _stop(self) -> None:
        self._stop_timer = None
        if self._thread is None:
            return
        self.source.remove_tap(self._on_source_packet)
        packets, self._queue = self._queue, None
        self._thread = None
        if packets is not None:
            with contextlib.suppress(queue.Full):
                packets.put_nowait(None)
            # a full queue: the thread finds `_queue` changed after its next packet and ends
        logger.info(
            "low rendition stopped track=%s frames=%d decoded=%d unusable=%d skipped=%d"
            " decode_errors=%d keyframes_asked=%d cpu=%.1fs",
            self.source, self.frames_encoded, self.frames_decoded, self.frames_unusable,
            self.frames_skipped, self.decode_errors, self.keyframes_asked, self.cpu_s,
        )  # fmt: skip

    def _on_source_packet(self, packet: RtpPacket) -> None:
        packets = self._queue
        if packets is not None:
            with contextlib.suppress(queue.Full):
                packets.put_nowait(packet)

    def _deliver(self, packets: list[RtpPacket]) -> None:
        if self.closed:
            return
        for packet in packets:
            self.track.on_packet(packet)

    def _ask_publisher_for_keyframe(self) -> None:
        if not self.closed and self.running:
            self.keyframes_asked += 1
            self.source.request_keyframe()

    # -- the thread ------------------------------------------------------------------------

    def _run(self, packets: queue.Queue[RtpPacket | None], loop: asyncio.AbstractEventLoop) -> None:
        started = time.thread_time()
        with contextlib.suppress(OSError, AttributeError):  # Linux: per-thread niceness
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), THREAD_NICENESS)
        try:
            self._transcode(packets, loop)
        except Exception:
            logger.exception("low rendition failed track=%s", self.source)
        finally:
            self.cpu_s += time.thread_time() - started

    def _transcode(
        self, packets: queue.Queue[RtpPacket | None], loop: asyncio.AbstractEventLoop
    ) -> None:
        assembler = FrameAssembler()
        coder = LowEncoder(self.bitrate)
        packetizer = Vp8Packetizer(self._ssrc, self.source.codec.payloadType or 96)
        last_encoded: int | None = None
        asked_at = 0.0
        while True:
            packet = packets.get()
            if packet is None or self._queue is not packets:
                return
            frame = assembler.push(
                packet.sequence_number, packet.timestamp, bool(packet.marker), packet.payload
            )
            self.frames_unusable = assembler.dropped
            if frame is None:
                if assembler.broken and time.monotonic() - asked_at > 0.5:
                    asked_at = time.monotonic()
                    self._call(loop, self._ask_publisher_for_keyframe)
                continue
            if (
                frame.tid is not None
                and frame.tid >= 2
                and not due_for_encoding(frame.timestamp, last_encoded)
            ):
                # an L1T3 publisher's top layer is referenced by nothing: not decoded unless
                # its picture is wanted (a 30 fps publisher's base layers make 15 fps alone;
                # one slowed to 7 fps by its CPU sends half its frames on the top layer)
                continue
            try:
                pictures = coder.decode(frame)
            except av.FFmpegError:
                self.decode_errors += 1
                assembler.broken = True
                continue
            self.frames_decoded += len(pictures)
            if not pictures or not due_for_encoding(frame.timestamp, last_encoded):
                continue
            if packets.qsize() > LATE_PACKETS and not self._keyframe_wanted.is_set():
                self.frames_skipped += 1
                continue
            keyframe = self._keyframe_wanted.is_set()
            self._keyframe_wanted.clear()
            data, _ = coder.encode(pictures[-1], keyframe)
            if not data:
                continue
            last_encoded = frame.timestamp
            self.frames_encoded += 1
            self.size = coder.size
            self._call(loop, self._deliver, packetizer.packetize(data, frame.timestamp))

    @staticmethod
    def _call(
        loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed
            loop.call_soon_threadsafe(callback, *args)


def low_rendition(track: InboundTrack) -> LowRendition | None:
    """The low rendition of `track` (made on first use), or None when it cannot have one."""
    if track.closed or not offers_low(track):
        return None
    rendition = track.low_rendition
    if rendition is None:
        rendition = LowRendition(track)
        track.low_rendition = rendition
    assert isinstance(rendition, LowRendition)
    return rendition
