"""The one way a packet leaves an outbound stream: `PacketWriter.write`.

Every packet the relay sends on a downlink (a forwarded one, a RED one, a retransmission, plain
or RTX, a padding-only probe) is `fixed header + extension head + body`: the fixed header is
packed in `PacketWriter.write` and nowhere else, the head (profile, length, the subscriber's
MID) is constant per stream, and the body (the per-packet extension tail, then the payload) is
what the caller built, usually once per incoming packet for every subscriber sharing an
extension variant. The bytes go to a `DatagramSink` (SRTP + `sendto` once connected).
"""

from __future__ import annotations

from collections.abc import Callable

from media.rtp.header import FIXED_HEADER, ExtensionLayout

_pack_header = FIXED_HEADER.pack
"""The fixed RTP header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC."""
PADDING_BIT = 0x20
"""The P bit of the first header byte: the payload ends in padding (`padding_payload`)."""


def _drop(data: bytes) -> None:
    pass


class DatagramSink:
    """Where one downlink's packets go: SRTP + UDP once connected, nowhere before or after."""

    __slots__ = ("send",)

    def __init__(self) -> None:
        self.send: Callable[[bytes], None] = _drop

    @property
    def connected(self) -> bool:
        return self.send is not _drop

    def connect(self, send: Callable[[bytes], None]) -> None:
        self.send = send

    def disconnect(self) -> None:
        self.send = _drop


class PacketWriter:
    """Assembles and sends one outbound stream's packets (the header bytes it negotiated)."""

    __slots__ = ("first_byte", "head", "sink")

    def __init__(self, sink: DatagramSink) -> None:
        self.sink = sink
        self.first_byte = 0x80
        """V=2, and the X bit when `head` is not empty."""
        self.head = b""
        """Extension profile, length and MID: the same for every packet of the stream."""

    def configure(self, layout: ExtensionLayout) -> None:
        self.head = layout.head()
        self.first_byte = layout.first_byte

    def write(
        self, marker_pt: int, seq: int, ts: int, ssrc: int, body: bytes, flags: int = 0
    ) -> None:
        """Send `body` (extension tail + payload) behind a fixed header and our extension head;
        `marker_pt` is the marker bit (0x80) or'ed with the payload type, `flags` extra bits of
        the first byte (`PADDING_BIT`)."""
        self.sink.send(
            _pack_header(self.first_byte | flags, marker_pt, seq, ts, ssrc) + self.head + body
        )


def padding_payload(size: int) -> bytes:
    """A padding-only payload of `size` bytes (clamped to 1..255), its last byte the count."""
    size = max(1, min(size, 255))
    return b"\x00" * (size - 1) + bytes([size])
