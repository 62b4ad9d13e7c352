"""The trunk's datagrams (media/trunk/wire.py): bodies round-trip, sealing rejects what it must."""

from __future__ import annotations

import zlib

import pytest

from media.trunk.wire import (
    HEADER,
    MAX_ANNOUNCE,
    MEDIA_HEADER,
    Announce,
    AnnouncedCodec,
    AnnouncedParticipant,
    AnnouncedTrack,
    Kind,
    MediaPacket,
    Opener,
    Sealer,
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

SECRET = b"s" * 32


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            (1, 0, 0, 0, False, 96, None, b""),
            MediaPacket(1, 0, 0, 0, False, 96, None, b""),
        ),
        (
            (65535, 65535, 0xFFFFFFFF, 0xFFFFFFFF, True, 127, (True, 127), b"\x00" * 1200),
            MediaPacket(65535, 65535, 0xFFFFFFFF, 0xFFFFFFFF, True, 127, (True, 127),
                        b"\x00" * 1200),
        ),
        (
            (7, 1234, 90000, 0xDEADBEEF, False, 111, (False, 30), b"opus"),
            MediaPacket(7, 1234, 90000, 0xDEADBEEF, False, 111, (False, 30), b"opus"),
        ),
        (
            (7, 1234, 90000, 0xDEADBEEF, True, 96, (False, 0), b"vp8"),
            MediaPacket(7, 1234, 90000, 0xDEADBEEF, True, 96, (False, 0), b"vp8"),
        ),
    ],
)
def test_a_media_body_round_trips(fields: tuple, expected: MediaPacket) -> None:  # type: ignore[type-arg]
    assert parse_media(media_body(*fields)) == expected


@pytest.mark.parametrize("body", [b"", b"\x00" * (MEDIA_HEADER.size - 1)])
def test_a_short_media_body_is_refused(body: bytes) -> None:
    assert parse_media(body) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [(keyframe_body(1), 1), (keyframe_body(65535), 65535), (b"", None), (b"\x00\x01\x02", None)],
)
def test_keyframe_bodies(body: bytes, expected: int | None) -> None:
    assert parse_keyframe(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (nack_body(3, [7]), (3, [7])),
        (nack_body(65535, [65535, 0, 1]), (65535, [65535, 0, 1])),
        (nack_body(3, []), None),  # asks for nothing
        (b"\x00", None),
        (b"\x00\x03\x00", None),  # half a sequence number
    ],
)
def test_nack_bodies(body: bytes, expected: tuple[int, list[int]] | None) -> None:
    assert parse_nack(body) == expected


ANNOUNCE = Announce(
    node="edge-1",
    participants=[AnnouncedParticipant("t", "teacher")],
    tracks=[
        AnnouncedTrack(1, "t", "mic", AnnouncedCodec("audio/opus", 48000, 2, 111,
                                                     {"useinbandfec": 1}, [])),
        AnnouncedTrack(2, "t", "camera", AnnouncedCodec("video/VP8", 90000, None, 96, {},
                                                        [("nack", None), ("nack", "pli")]),
                       rtx=True, rid="q", held=(1.0, 2.0, 0.0, 0.0)),
        AnnouncedTrack(3, "t", "camera", AnnouncedCodec("video/VP8", 90000, None, 96),
                       rtx=True, rid="f", layers=[2, 3]),
    ],
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (encode_announce(ANNOUNCE), ANNOUNCE),
        (encode_announce(Announce("n")), Announce("n")),
        (zlib.compress(b"{}"), None),  # no node
        (zlib.compress(b"not json"), None),
        (zlib.compress(b'{"node": "n", "tracks": [{"number": "one"}]}'), None),
        (b'{"node": "n"}', None),  # not compressed
        (encode_announce(ANNOUNCE)[:-3], None),  # cut short
        (zlib.compress(b" " * (MAX_ANNOUNCE + 1) + b'{"node": "n"}'), None),  # a bomb
    ],
)
def test_announces_decode_or_are_refused(body: bytes, expected: Announce | None) -> None:
    assert decode_announce(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (encode_wants(Wants({3: [0, 2]})), Wants({3: [0, 2]})),
        (b'{"layers": {}}', Wants({})),
        (b'{"layers": {"x": [1]}}', None),
        (b"\xff", None),
    ],
)
def test_wants_decode_or_are_refused(body: bytes, expected: Wants | None) -> None:
    assert decode_wants(body) == expected


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("body", [b"", b"x", b"\x00" * 1400])
def test_a_sealed_datagram_opens_with_the_senders_key(kind: Kind, body: bytes) -> None:
    sealed = Sealer(SECRET, "room", "origin").seal(kind, body)
    assert Opener(SECRET, "room", "origin").open(sealed) == (kind, body)


def _tampered(datagram: bytes, at: int) -> bytes:
    return datagram[:at] + bytes([datagram[at] ^ 1]) + datagram[at + 1:]


SEALED = Sealer(SECRET, "room", "origin").seal(Kind.MEDIA, b"payload")


@pytest.mark.parametrize(
    ("opener", "datagram"),
    [
        (Opener(b"t" * 32, "room", "origin"), SEALED),  # another cluster's secret
        (Opener(SECRET, "other-room", "origin"), SEALED),  # replayed to another room
        (Opener(SECRET, "room", "edge"), SEALED),  # claimed by another node
        (Opener(SECRET, "room", "origin"), b""),
        (Opener(SECRET, "room", "origin"), SEALED[: HEADER.size + 15]),
        (Opener(SECRET, "room", "origin"), b"\x01" + b"\x00" * 60),  # garbage of a known kind
        (Opener(SECRET, "room", "origin"), b"\x09" + SEALED[1:]),  # unknown kind
        (Opener(SECRET, "room", "origin"), b"\x02" + SEALED[1:]),  # kind changed
        (Opener(SECRET, "room", "origin"), _tampered(SEALED, 5)),  # nonce
        (Opener(SECRET, "room", "origin"), _tampered(SEALED, len(SEALED) - 1)),  # tag
        (Opener(SECRET, "room", "origin"), _tampered(SEALED, HEADER.size)),  # ciphertext
    ],
)
def test_what_does_not_open_is_refused(opener: Opener, datagram: bytes) -> None:
    assert opener.open(datagram) is None


def test_every_datagram_gets_a_new_nonce() -> None:
    sealer = Sealer(SECRET, "room", "origin")
    nonces = {sealer.seal(Kind.MEDIA, b"same")[1:HEADER.size] for _ in range(100)}
    other = Sealer(SECRET, "room", "origin").seal(Kind.MEDIA, b"same")[1:HEADER.size]
    assert len(nonces) == 100 and other not in nonces


def test_an_announce_of_a_big_class_fits_one_datagram() -> None:
    codec = AnnouncedCodec("video/VP8", 90000, None, 96, {}, [("nack", None), ("nack", "pli"),
                                                               ("goog-remb", None)])
    opus = AnnouncedCodec("audio/opus", 48000, 2, 111, {"minptime": 10, "useinbandfec": 1})
    participants = [AnnouncedParticipant(f"classroom-{i:03d}", "classroom") for i in range(150)]
    tracks = []
    for i in range(150):
        pid = f"classroom-{i:03d}"
        tracks.append(AnnouncedTrack(3 * i + 1, pid, "mic", opus))
        tracks.append(AnnouncedTrack(3 * i + 2, pid, "camera", codec, rtx=True, rid="q"))
        tracks.append(AnnouncedTrack(3 * i + 3, pid, "camera", codec, rtx=True, rid="f",
                                     layers=[3 * i + 2, 3 * i + 3]))
    body = encode_announce(Announce("origin", participants, tracks))
    assert len(body) < 60_000
    assert decode_announce(body) == Announce("origin", participants, tracks)
