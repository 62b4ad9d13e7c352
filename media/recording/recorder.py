"""Recording on the relay: a room's published tracks written to files as they pass, undecoded.

`FrameAssembler` turns one track's RTP packets into encoded frames (pure: sequence numbers,
timestamps and payloads in, frames out); `TrackFile` muxes one track's frames with PyAV into a
file that survives a crash (VP8 and Opus in Matroska whose clusters close every second, H.264
in MPEG-TS); `RoomRecorder` taps a room's `InboundTrack`s while recording is on. The event loop
only assembles frames and queues them (at most `QUEUE_FRAMES` waiting); one writer thread per
recording does every file write (when the disk stalls, frames beyond that are dropped and
counted rather than the relay slowing down; video then resumes at a keyframe).
`manifest.json` next to the files says which participant and source each file holds and when
(wall-clock offsets from the recording's start), and when the spotlight moved, so the
programme composer (media/recording/programme.py) can align them.
"""

from __future__ import annotations

import contextlib
import fractions
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.rtp import h264, vp8

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
QUEUE_FRAMES = 2000
"""Frames waiting for the writer thread (about 20 s of one camera and mic) before dropping."""
MAX_PENDING_PACKETS = 512
"""Packets of incomplete video frames kept while waiting for a missing one."""
STALL_S = 1.0
"""How long a missing video packet may hold later frames back before it is given up."""
CLUSTER_MS = 1000
"""Matroska clusters close (and reach the disk) at least this often."""
OPUS_HEAD = b"OpusHead" + bytes([1, 2]) + (312).to_bytes(2, "little") + \
    (48000).to_bytes(4, "little") + bytes([0, 0, 0])
"""Opus identification header (RFC 7845) for the Matroska CodecPrivate: stereo, 48 kHz."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame as the publisher sent it."""

    data: bytes
    timestamp: int
    """RTP timestamp, unwrapped (keeps growing past 2**32)."""
    keyframe: bool


def _unwrap(value: int, last: int | None, bits: int) -> int:
    """`value` (modulo 2**bits) placed closest to `last` on an unbounded line."""
    if last is None:
        return value
    span = 1 << bits
    delta = (value - last) % span
    if delta >= span // 2:
        delta -= span
    return last + delta


def vp8_dimensions(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from a VP8 keyframe's header (RFC 6386 9.1), None for an interframe."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


def is_frame_start(codec: str, payload: bytes) -> bool:
    """Can this packet begin a frame we can start writing from (a keyframe's first packet)?"""
    if codec == "vp8":
        return vp8.is_keyframe_start(payload)
    if codec == "h264":
        return h264.is_keyframe_start(payload)
    return True


class FrameAssembler:
    """One track's RTP packets in, complete encoded frames out, in order.

    Audio: each packet is a frame (duplicates and late packets dropped). Video: a frame is the
    packets of one timestamp from the one after the previous frame up to the marker bit. When
    a packet is lost for good, frames are skipped until the next keyframe and `on_loss` is
    called (to ask the publisher for one).
    """

    def __init__(self, codec: RTCRtpCodecParameters, on_loss: Callable[[], None] | None = None
                 ) -> None:
        self.codec = codec
        self.name = codec.name.lower()
        self.video = codec.mimeType.lower().startswith("video/")
        self.frames = 0
        self.skipped = 0
        self._on_loss = on_loss
        self._last_seq: int | None = None
        self._last_ts: int | None = None
        self._next: int | None = None
        self._packets: dict[int, tuple[int, bool, bytes]] = {}
        self._emitted_ts: int | None = None

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> list[EncodedFrame]:
        ext_seq = self._last_seq = _unwrap(seq, self._last_seq, 16)
        ts = _unwrap(timestamp, self._last_ts, 32)
        self._last_ts = ts if self._last_ts is None or ts > self._last_ts else self._last_ts
        if not self.video:
            if self._emitted_ts is not None and ts <= self._emitted_ts:
                return []
            self._emitted_ts = ts
            self.frames += 1
            return [EncodedFrame(payload, ts, True)]
        if self._next is not None and ext_seq < self._next:
            return []  # a duplicate, or too late
        self._packets[ext_seq] = (ts, marker, payload)
        frames = self._drain()
        if len(self._packets) > MAX_PENDING_PACKETS or self._stalled():
            self._resync()
            frames += self._drain()
        return frames

    def _drain(self) -> list[EncodedFrame]:
        frames: list[EncodedFrame] = []
        while self._packets:
            if self._next is None:
                starts = [s for s, (_, _, p) in self._packets.items()
                          if is_frame_start(self.name, p)]
                if not starts:
                    return frames
                self._next = min(starts)
                for old in [s for s in self._packets if s < self._next]:
                    del self._packets[old]
            frame = self._complete_frame(self._next)
            if frame is None:
                return frames
            seqs, data, ts, keyframe = frame
            for s in seqs:
                del self._packets[s]
            self._next = seqs[-1] + 1
            if self._emitted_ts is None and not keyframe:
                continue
            self._emitted_ts = ts
            self.frames += 1
            frames.append(EncodedFrame(data, ts, keyframe))
        return frames

    def _complete_frame(self, start: int) -> tuple[list[int], bytes, int, bool] | None:
        """(sequence numbers, depayloaded data, timestamp, keyframe) of the frame beginning at
        `start`, or None while a packet of it is missing."""
        first = self._packets.get(start)
        if first is None:
            return None
        ts = first[0]
        seqs: list[int] = []
        parts: list[bytes] = []
        s = start
        while True:
            packet = self._packets.get(s)
            if packet is None:
                return None
            if packet[0] != ts:
                break  # the next frame began without a marker on this one: take it as whole
            seqs.append(s)
            try:
                parts.append(depayload(self.codec, packet[2]))
            except Exception:
                parts.append(b"")
            if packet[1]:
                break
            s += 1
        return seqs, b"".join(parts), ts, is_frame_start(self.name, first[2])

    def _stalled(self) -> bool:
        """Has a missing packet held the frames behind it back for more than a second?"""
        if not self._packets or self._last_ts is None:
            return False
        oldest = min(ts for ts, _, _ in self._packets.values())
        return self._last_ts - oldest > self.codec.clockRate * STALL_S

    def _resync(self) -> None:
        """A packet is lost for good: drop what cannot complete and wait for a keyframe."""
        self.skipped += 1
        assert self._next is not None or self._packets
        later = sorted(self._packets)
        keyframes = [s for s in later if is_frame_start(self.name, self._packets[s][2])
                     and (self._next is None or s > self._next)]
        self._next = None
        if keyframes:
            for old in [s for s in self._packets if s < keyframes[0]]:
                del self._packets[old]
        else:
            self._packets.clear()
        if self._on_loss is not None:
            self._on_loss()


@dataclass
class TrackInfo:
    """What the manifest says about one track file."""

    file: str
    participant: str
    role: str
    source: str
    kind: str
    codec: str
    start_s: float | None = None
    """Wall-clock seconds from the recording's start to this file's first frame."""
    end_s: float | None = None
    frames: int = 0
    dropped: int = 0


class TrackFile:
    """One track's frames muxed into a file with PyAV, never decoded (writer thread only)."""

    def __init__(self, path: Path, codec: str, kind: str) -> None:
        self.path = path
        self.codec = codec
        self.kind = kind
        self._container: Any = None
        self._stream: Any = None
        self._first_ts: int | None = None
        self._last_pts = -1
        self._time_base = fractions.Fraction(1, 48000 if kind == "audio" else 90000)

    @staticmethod
    def suffix(codec: str) -> str:
        return ".ts" if codec == "h264" else ".mkv"

    def _open(self, frame: EncodedFrame) -> bool:
        stream: av.VideoStream | av.AudioStream
        if self.codec == "h264":
            container = av.open(str(self.path), "w", format="mpegts",
                                options={"flush_packets": "1"})
            stream = container.add_stream("h264")
        elif self.codec == "vp8":
            size = vp8_dimensions(frame.data)
            if size is None:
                return False
            container = av.open(str(self.path), "w", format="matroska",
                                options={"cluster_time_limit": str(CLUSTER_MS),
                                         "flush_packets": "1"})
            stream = container.add_stream("libvpx")
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
        elif self.codec == "opus":
            container = av.open(str(self.path), "w", format="matroska",
                                options={"cluster_time_limit": str(CLUSTER_MS),
                                         "flush_packets": "1"})
            audio = container.add_stream("libopus", rate=48000)
            audio.codec_context.extradata = OPUS_HEAD
            stream = audio
        else:
            raise ValueError(f"cannot record codec {self.codec!r}")
        stream.time_base = self._time_base
        container.start_encoding()
        self._container, self._stream = container, stream
        return True

    def write(self, frame: EncodedFrame) -> bool:
        """Mux one frame; False if it was skipped (nothing to start from yet, or no progress)."""
        if self._container is None:
            if not frame.keyframe or not self._open(frame):
                return False
            self._first_ts = frame.timestamp
        assert self._first_ts is not None
        pts = frame.timestamp - self._first_ts
        if pts <= self._last_pts:
            return False
        self._last_pts = pts
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = pts
        packet.time_base = self._time_base
        packet.stream = self._stream
        packet.is_keyframe = frame.keyframe
        self._container.mux(packet)
        return True

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None


@dataclass
class _Tapped:
    info: TrackInfo
    assembler: FrameAssembler
    track: Any
    tap: Callable[[RtpPacket], None] | None = None
    dropped: int = 0
    resync: bool = False
    """Frames were dropped: skip to the next keyframe (the file must stay decodable)."""


_CLOSE = object()


class RoomRecorder:
    """Records a room's tracks into `directory` until `stop()`; see the module docstring."""

    def __init__(self, recording_id: str, room_id: str, kind: str, directory: Path, *,
                 previous: dict[str, Any] | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 queue_frames: int = QUEUE_FRAMES) -> None:
        self.recording_id = recording_id
        self.room_id = room_id
        self.kind = kind
        self.directory = directory
        self._wall = wall_clock
        self.started_at = wall_clock()
        self.events: list[dict[str, Any]] = []
        self.tracks: list[TrackInfo] = []
        self._tapped: dict[int, _Tapped] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._frame_slots = threading.BoundedSemaphore(queue_frames)
        """Frames may wait for the writer only while a slot is free; control messages (files
        opening and closing, the manifest) always go in, so nothing here ever blocks."""
        self._thread = threading.Thread(target=self._write_forever, name=f"rec-{room_id}",
                                        daemon=True)
        self.stopped = False
        self.dropped = 0
        if previous is not None:  # the room moved to another worker: carry on in the same place
            self.started_at = float(previous.get("started_at", self.started_at))
            self.events = list(previous.get("events", []))
            self.tracks = [TrackInfo(**t) for t in previous.get("tracks", [])]
        self._thread.start()
        self._put(("manifest", self._manifest()))

    def offset(self) -> float:
        return round(self._wall() - self.started_at, 3)

    # -- the room tells us what changes ------------------------------------------------------

    def sync(self, tracks: dict[tuple[str, str], Any], roles: dict[str, str],
             spotlight: str | None) -> None:
        """Tap the room's current tracks: new ones start a file, gone ones end theirs."""
        if self.stopped:
            return
        current = {id(t): (key, t) for key, t in tracks.items()}
        for tid in [t for t in self._tapped if t not in current]:
            self._untap(tid)
        for tid, ((participant, source), track) in current.items():
            if tid not in self._tapped:
                self._tap(track, participant, roles.get(participant, ""), source)
        last = next((e for e in reversed(self.events) if e["type"] == "spotlight"), None)
        if (last["participant"] if last else None) != spotlight:
            self.events.append({"t": self.offset(), "type": "spotlight",
                                "participant": spotlight})
            self._put(("manifest", self._manifest()))

    def _tap(self, track: Any, participant: str, role: str, source: str) -> None:
        codec = track.codec.name.lower()
        name = f"{_UNSAFE.sub('_', participant)}-{source}-{uuid.uuid4().hex[:6]}"
        info = TrackInfo(file=name + TrackFile.suffix(codec), participant=participant, role=role,
                         source=source, kind=track.kind, codec=codec)
        self.tracks.append(info)
        tapped = _Tapped(info, FrameAssembler(track.codec, on_loss=track.request_keyframe),
                         track)
        self._tapped[id(track)] = tapped
        self._put(("open", info.file, codec, track.kind))
        self.events.append({"t": self.offset(), "type": "track_start",
                            "participant": participant, "source": source, "file": info.file})
        self._put(("manifest", self._manifest()))

        def on_packet(packet: RtpPacket, tapped: _Tapped = tapped) -> None:
            self._on_packet(tapped, packet)

        tapped.tap = on_packet
        track.add_tap(on_packet)
        if track.kind == "video":
            track.request_keyframe()

    def _untap(self, tid: int) -> None:
        tapped = self._tapped.pop(tid)
        if tapped.tap is not None:
            tapped.track.remove_tap(tapped.tap)
            tapped.tap = None
        tapped.info.end_s = self.offset()
        tapped.info.dropped = tapped.dropped
        self.events.append({"t": tapped.info.end_s, "type": "track_end",
                            "participant": tapped.info.participant,
                            "source": tapped.info.source, "file": tapped.info.file})
        self._put(("close", tapped.info.file))
        self._put(("manifest", self._manifest()))

    def _on_packet(self, tapped: _Tapped, packet: RtpPacket) -> None:
        frames = tapped.assembler.push(packet.sequence_number, packet.timestamp,
                                       bool(packet.marker), packet.payload)
        for frame in frames:
            if tapped.info.start_s is None:
                if not frame.keyframe:
                    continue
                tapped.info.start_s = self.offset()
                self._put(("manifest", self._manifest()))
            if tapped.resync and not frame.keyframe:
                tapped.dropped += 1
                self.dropped += 1
            elif self._frame_slots.acquire(blocking=False):
                tapped.resync = False
                tapped.info.frames += 1
                self._queue.put(("frame", tapped.info.file, frame))
            else:  # the disk stalls: drop rather than slow the relay down
                tapped.dropped += 1
                self.dropped += 1
                if not tapped.resync and tapped.track.kind == "video":
                    tapped.resync = True
                    tapped.track.request_keyframe()

    def stop(self) -> dict[str, Any]:
        """Untap every track and let the writer finish in the background; the manifest."""
        if not self.stopped:
            for tid in list(self._tapped):
                self._untap(tid)
            self.stopped = True
            self.events.append({"t": self.offset(), "type": "stop"})
            manifest = self._manifest()
            manifest["stopped"] = True
            self._put(("manifest", manifest))
            self._put(_CLOSE)
        return self._manifest()

    def join(self, timeout: float) -> bool:
        """Wait (blocking; call from a thread) for the writer to finish; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the writer thread ---------------------------------------------------------------------

    def _put(self, item: Any) -> None:
        """Control messages are never dropped (rare and small)."""
        self._queue.put(item)

    def _manifest(self) -> dict[str, Any]:
        return {"recording": self.recording_id, "room": self.room_id, "kind": self.kind,
                "started_at": self.started_at,
                "tracks": [dict(t.__dict__) for t in self.tracks],
                "events": list(self.events)}

    def _write_forever(self) -> None:
        files: dict[str, TrackFile] = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                break
            try:
                if item[0] == "frame":
                    self._frame_slots.release()
                    track_file = files.get(item[1])
                    if track_file is not None:
                        track_file.write(item[2])
                elif item[0] == "open":
                    _, name, codec, kind = item
                    files[name] = TrackFile(self.directory / name, codec, kind)
                elif item[0] == "close":
                    track_file = files.pop(item[1], None)
                    if track_file is not None:
                        track_file.close()
                elif item[0] == "manifest":
                    _write_manifest(self.directory, item[1])
            except Exception:
                logger.exception("recording %s: write failed", self.recording_id)
        for track_file in files.values():
            track_file.close()


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, directory / MANIFEST)


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest a recording left in `directory` (None if there is none)."""
    return _read_manifest(directory)
