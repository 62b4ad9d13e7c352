"""The trunk's datagrams between the nodes (or workers) serving one room: layout and sealing.

Every datagram is `kind (1 byte) | nonce (12 bytes) | AES-GCM(body)`, the first 13 bytes
authenticated as associated data. The key is derived with HKDF-SHA256 from the cluster's
trunk secret, the room id and the SENDING node's id, so a receiver opens a peer's datagrams
with that peer's key, and a datagram replayed to another room (or claimed from another node)
does not open. The nonce is 4 random bytes chosen when a `Sealer` is made and a 64-bit counter;
a receiver opens each nonce once (`media.trunk.replay`).

Kinds and bodies:

- MEDIA: one RTP packet of a published track: `MEDIA_HEADER` (track number, sequence number,
  timestamp, SSRC, flags: marker and whether an audio level follows, payload type, audio
  level) then the payload. One `struct.pack` and one AES-GCM call per packet.
- ANNOUNCE: the sender's local publications (`Announce`, msgspec JSON, zlib-compressed: a
  class of a hundred publishing classrooms stays one datagram), every `ANNOUNCE_S` and on
  change: state, not deltas, so a lost one heals with the next.
- KEYFRAME: a track number (`TRACK_NUMBER`): a subscriber of the receiver wants a keyframe.
- WANTS: `Wants` (msgspec JSON): per simulcast publication, the layers the sender's
  subscribers watch (dynacast at the owner keeps those on).
- NACK: a track number and the sequence numbers (u16 each) that did not arrive
  (`media.trunk.losses`); the owner sends them again from its history.

`open_datagram` returns None for anything that does not open (short, garbage, wrong key,
unknown kind); callers count those and move on.
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from enum import IntEnum

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from media.trunk.replay import ReplayWindow

ANNOUNCE_S = 0.5
"""How often a node announces its local publications to each peer (and on every change)."""
TRUNK_SILENCE_S = 5.0
"""A peer heard nothing from for this long is gone: its remote participants leave."""
KEY_INFO = b"tongxin trunk v1"

HEADER = struct.Struct("!B12s")
"""kind, nonce: the clear (authenticated) head of every datagram."""
MEDIA_HEADER = struct.Struct("!HHIIBBB")
"""track number, sequence number, timestamp, SSRC, flags, payload type, audio level."""
TRACK_NUMBER = struct.Struct("!H")
TAG_SIZE = 16
MARKER_FLAG = 0x80
LEVEL_FLAG = 0x40
MAX_TRACK_NUMBER = 0xFFFF
PREFIXES_KEPT = 4
"""Nonce prefixes of one peer whose replay windows are kept (a prefix a restart)."""
MAX_ANNOUNCE = 1 << 20
"""Bytes an announce may inflate to (a bigger one is refused, not unpacked)."""


class Kind(IntEnum):
    MEDIA = 1
    ANNOUNCE = 2
    KEYFRAME = 3
    WANTS = 4
    NACK = 5


# -- the announce -----------------------------------------------------------------------------


class AnnouncedCodec(msgspec.Struct, frozen=True):
    """A track's codec, field for field as aiortc's `RTCRtpCodecParameters` names them."""

    mimeType: str
    clockRate: int
    channels: int | None = None
    payloadType: int | None = None
    parameters: dict[str, str | int | None] = {}
    rtcpFeedback: list[tuple[str, str | None]] = []
    """(type, parameter) pairs."""


class AnnouncedTrack(msgspec.Struct, frozen=True):
    """One published track (or one simulcast layer of one)."""

    number: int
    """What MEDIA, KEYFRAME and WANTS call it (unique among the sender's tracks of the room)."""
    participant: str
    source: str
    """"mic", "camera" or "screen"."""
    codec: AnnouncedCodec
    rtx: bool = False
    """Whether the publisher's codec has RTX (subscribers' downlinks offer it then)."""
    rid: str | None = None
    """The simulcast layer this track carries (None: no simulcast)."""
    layers: list[int] = []
    """A simulcast publication: its layers' track numbers, lowest first, the last this
    track's own; empty for a layer or a single-layer track."""
    held: tuple[float, float, float, float] | None = None
    """A layer the owner paused (dynacast): its rates when paused, for the ladders."""


class AnnouncedParticipant(msgspec.Struct, frozen=True):
    id: str
    role: str


class Announce(msgspec.Struct, frozen=True):
    """The sender's local publishers and their tracks, now."""

    node: str
    participants: list[AnnouncedParticipant] = []
    tracks: list[AnnouncedTrack] = []
    """The published tracks first-class, and every simulcast layer of them."""


class Wants(msgspec.Struct, frozen=True):
    """Per simulcast publication (its track number), the layer indices the sender's
    subscribers are on or switching to."""

    layers: dict[int, list[int]] = {}


_ANNOUNCE_DECODER = msgspec.json.Decoder(Announce)
_WANTS_DECODER = msgspec.json.Decoder(Wants)
_ENCODER = msgspec.json.Encoder()


def encode_announce(announce: Announce) -> bytes:
    return zlib.compress(_ENCODER.encode(announce), 6)


def decode_announce(body: bytes) -> Announce | None:
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(body, MAX_ANNOUNCE)
        if inflater.unconsumed_tail or not inflater.eof:
            return None
        return _ANNOUNCE_DECODER.decode(text)
    except (zlib.error, msgspec.DecodeError, msgspec.ValidationError):
        return None


def encode_wants(wants: Wants) -> bytes:
    return _ENCODER.encode(wants)


def decode_wants(body: bytes) -> Wants | None:
    try:
        return _WANTS_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


# -- media and keyframe bodies ----------------------------------------------------------------


def media_body(
    number: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    marker: bool,
    payload_type: int,
    audio_level: tuple[bool, int] | None,
    payload: bytes,
) -> bytes:
    """A MEDIA body (see `MEDIA_HEADER`)."""
    flags = MARKER_FLAG if marker else 0
    level = 0
    if audio_level is not None:
        flags |= LEVEL_FLAG
        level = (0x80 if audio_level[0] else 0) | (audio_level[1] & 0x7F)
    return MEDIA_HEADER.pack(number, seq, timestamp, ssrc, flags, payload_type, level) + payload


class MediaPacket(msgspec.Struct, frozen=True):
    """A decoded MEDIA body."""

    number: int
    seq: int
    timestamp: int
    ssrc: int
    marker: bool
    payload_type: int
    audio_level: tuple[bool, int] | None
    payload: bytes


def parse_media(body: bytes) -> MediaPacket | None:
    """A MEDIA body's fields (None: too short)."""
    if len(body) < MEDIA_HEADER.size:
        return None
    number, seq, timestamp, ssrc, flags, pt, level = MEDIA_HEADER.unpack_from(body)
    audio_level = (bool(level & 0x80), level & 0x7F) if flags & LEVEL_FLAG else None
    return MediaPacket(
        number, seq, timestamp, ssrc, bool(flags & MARKER_FLAG), pt & 0x7F, audio_level,
        body[MEDIA_HEADER.size:],
    )


def keyframe_body(number: int) -> bytes:
    return TRACK_NUMBER.pack(number)


def parse_keyframe(body: bytes) -> int | None:
    if len(body) != TRACK_NUMBER.size:
        return None
    return int(TRACK_NUMBER.unpack(body)[0])


def nack_body(number: int, seqs: list[int]) -> bytes:
    return TRACK_NUMBER.pack(number) + struct.pack(f"!{len(seqs)}H", *seqs)


def parse_nack(body: bytes) -> tuple[int, list[int]] | None:
    """(track number, sequence numbers) of a NACK body (None: malformed or empty)."""
    if len(body) < TRACK_NUMBER.size + 2 or (len(body) - TRACK_NUMBER.size) % 2:
        return None
    (number,) = TRACK_NUMBER.unpack_from(body)
    count = (len(body) - TRACK_NUMBER.size) // 2
    return int(number), list(struct.unpack_from(f"!{count}H", body, TRACK_NUMBER.size))


# -- sealing ----------------------------------------------------------------------------------


def trunk_key(secret: bytes, room_id: str, node_id: str) -> bytes:
    """The AES-256 key of `node_id`'s datagrams in room `room_id`."""
    info = b"\0".join((KEY_INFO, room_id.encode(), node_id.encode()))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


class Sealer:
    """Seals one node's datagrams for one room (a fresh random nonce prefix per sealer)."""

    def __init__(self, secret: bytes, room_id: str, node_id: str) -> None:
        self._aead = AESGCM(trunk_key(secret, room_id, node_id))
        self._salt = os.urandom(4)
        self._counter = itertools.count()

    def seal(self, kind: Kind, body: bytes) -> bytes:
        nonce = self._salt + next(self._counter).to_bytes(8, "big")
        head = HEADER.pack(kind, nonce)
        return head + self._aead.encrypt(nonce, body, head)


class Opener:
    """Opens the datagrams one peer node sealed for one room, each once (`replay`)."""

    def __init__(self, secret: bytes, room_id: str, node_id: str) -> None:
        self._aead = AESGCM(trunk_key(secret, room_id, node_id))
        self._windows: dict[bytes, ReplayWindow] = {}
        """Nonce prefix -> its counters seen (the newest `PREFIXES_KEPT` prefixes)."""
        self.replayed = 0

    def open(self, datagram: bytes) -> tuple[Kind, bytes] | None:
        """(kind, body), or None when it does not open, its kind is unknown or it was
        opened before."""
        if len(datagram) < HEADER.size + TAG_SIZE:
            return None
        kind, nonce = HEADER.unpack_from(datagram)
        if kind not in _KINDS:
            return None
        prefix = nonce[:4]
        counter = int.from_bytes(nonce[4:], "big")
        window = self._windows.get(prefix)
        if window is not None and not window.check(counter):
            self.replayed += 1
            return None
        try:
            body = self._aead.decrypt(nonce, datagram[HEADER.size:], datagram[:HEADER.size])
        except InvalidTag:
            return None
        if window is None:
            window = self._windows[prefix] = ReplayWindow()
            if len(self._windows) > PREFIXES_KEPT:  # the peer restarted: forget its oldest
                del self._windows[next(iter(self._windows))]
        window.record(counter)
        return _KINDS[kind], body


_KINDS = {k.value: k for k in Kind}
