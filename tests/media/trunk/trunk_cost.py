"""What the trunk costs per packet, in process: `python -m tests.media.trunk.trunk_cost [N] [R]`.

Side by side in one run (the best of R rounds), for N video packets of 1000 bytes (a VP8
delta frame's):

- `on_packet` of a published track with no subscriber (what a packet costs without trunk);
- the same with the trunk sending to 1 and to 3 peers over loopback UDP (seal once, one
  `sendto` per peer): the difference is the sending side's cost;
- the receiving side: a sealed MEDIA datagram opened, parsed, made an `RtpPacket` and given
  to the remote track's `on_packet` (no subscriber), against `on_packet` alone;
- AES-GCM alone (seal, open) and a bare `sendto` for scale.

Figures are ns per packet on this machine, now: compare them with each other, not across runs.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.forward.forwarder import InboundTrack
from media.trunk.remote import Trunk, announce_of
from media.trunk.wire import Kind, Opener, Sealer, encode_announce, media_body

SECRET = b"b" * 32
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
DELTA = b"\x90\x80\x80\x02\x01" + b"D" * 995


class _Room:
    def __init__(self, room_id: str, publishers: list[tuple[str, str, list[InboundTrack]]]):
        self.room_id = room_id
        self.publishers = publishers

    def local_publishers(self) -> list[tuple[str, str, list[InboundTrack]]]:
        return self.publishers

    def is_local(self, participant_id: str) -> bool:
        return False

    def remote_changed(self) -> None:
        pass


def _packets(n: int, ssrc: int) -> list[RtpPacket]:
    return [
        RtpPacket(payload_type=96, sequence_number=i & 0xFFFF, timestamp=i * 3000, ssrc=ssrc,
                  payload=DELTA)
        for i in range(n)
    ]


def _ns_per(n: int, run: Callable[[], None]) -> float:
    start = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - start) / n


def _feed(track: InboundTrack, packets: list[RtpPacket]) -> Callable[[], None]:
    def run() -> None:
        for packet in packets:
            track.on_packet(packet)
    return run


async def measure(n: int = 20_000) -> dict[str, float]:
    figures: dict[str, float] = {}
    track = InboundTrack("p", "camera", [VP8], send_pli=lambda ssrc: None)
    figures["on_packet alone"] = _ns_per(n, _feed(track, _packets(n, 1)))

    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for sink in sinks:
        sink.bind(("127.0.0.1", 0))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # overflow: dropped
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sinks]
    for peers in (1, 3):
        sent = InboundTrack("p", "camera", [VP8], send_pli=lambda ssrc: None)
        trunk = Trunk(_Room("bench", [("p", "teacher", [sent])]), "origin", SECRET)
        await trunk.open("127.0.0.1")
        await trunk.set_peers({f"edge{i}": addresses[i] for i in range(peers)})
        assert sent.trunk is not None
        figures[f"on_packet + trunk to {peers} peer(s)"] = _ns_per(
            n, _feed(sent, _packets(n, 2 + peers))
        )
        await trunk.close()
    for sink in sinks:
        sink.close()

    edge = Trunk(_Room("bench", []), "edge", SECRET)
    await edge.open("127.0.0.1")
    await edge.set_peers({"origin": "127.0.0.1:9"})
    origin_sealer = Sealer(SECRET, "bench", "origin")
    # what the origin announces for one VP8 track numbered 1
    announced = InboundTrack("p", "camera", [VP8], send_pli=lambda ssrc: None)
    announce = announce_of("origin", [("p", "teacher", [announced])], lambda t: 1)
    addr = ("127.0.0.1", 9)
    edge.endpoint.datagram_received(origin_sealer.seal(Kind.ANNOUNCE, encode_announce(announce)),
                                    addr)
    assert "p" in edge.remote_participants()
    datagrams = [
        origin_sealer.seal(Kind.MEDIA, media_body(1, i & 0xFFFF, i * 3000, 7, False, 96, None,
                                                  DELTA))
        for i in range(n)
    ]

    def receive() -> None:
        for datagram in datagrams:
            edge.endpoint.datagram_received(datagram, addr)

    figures["receive: open + parse + on_packet"] = _ns_per(n, receive)
    remote = edge.remote_participants()["p"].tracks["camera"]
    assert remote.packets == n, remote.packets
    await edge.close()

    body = media_body(1, 1, 3000, 7, False, 96, None, DELTA)
    sealer = Sealer(SECRET, "bench", "origin")
    figures["seal alone (AES-GCM)"] = _ns_per(
        n, lambda: [sealer.seal(Kind.MEDIA, body) for _ in range(n)] and None
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    target = sink.getsockname()
    sealed = sealer.seal(Kind.MEDIA, body)
    figures["sendto alone (1 peer)"] = _ns_per(
        n, lambda: [sender.sendto(sealed, target) for _ in range(n)] and None
    )
    sender.close()
    sink.close()
    opener = Opener(SECRET, "bench", "origin")
    sealed_each = [sealer.seal(Kind.MEDIA, body) for _ in range(n)]
    figures["open alone (AES-GCM, replay check)"] = _ns_per(
        n, lambda: [opener.open(one) for one in sealed_each] and None
    )
    assert opener.replayed == 0
    return figures


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    runs = [asyncio.run(measure(n)) for _ in range(rounds)]
    figures = {name: min(run[name] for run in runs) for name in runs[0]}
    base = figures["on_packet alone"]
    print(f"{n} packets, best of {rounds} rounds")
    for name, ns in figures.items():
        print(f"{name:40s} {ns:8.0f} ns/packet  ({ns / base:5.2f}x on_packet alone)")


if __name__ == "__main__":
    main()
