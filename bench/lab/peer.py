"""An aiortc participant of the weak-link bench, run inside a lab namespace as its own process.

    python -m bench.lab.peer publish LINK     # camera + screen + mic clips (VP8, Opus)
    python -m bench.lab.peer subscribe LINK   # counts what arrives, without decoding

Either joins through its join link and stays until its stdin closes or says `stop`. It writes
JSON lines on stdout: `{"event": "joined", "participant": id}` once in, `{"event": "receiving"}`
when the subscriber's first camera frame arrives, and, from the subscriber when it stops,
`{"event": "result", "tracks": {source: {"frames": [[t, n], ...], "bytes": [...]}},
"links": [...], "notices": [...], "state": {...}}`: cumulative counters polled every 50 ms
(wall-clock seconds) and the adaptation frames (`link`, `notice`) it was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

POLL_S = 0.05
MAX_STAY_S = 900.0
"""A peer never outlives this, whatever its stdin does."""


def _lab_participant(base_url: str) -> Any:
    """A `RemoteParticipant` whose peer connections gather on the namespace's own address
    (the default binds to loopback, which the relay across the lab cannot reach)."""
    from client.participant import RemoteParticipant
    from client.peer import PeerClient
    from media.peers.config import PeerConfig

    class LabParticipant(RemoteParticipant):
        def _new_peer(self) -> PeerClient:
            return PeerClient(
                self.signaling.participant_id, publish_offer=self._publish_offer,
                send_answer=self._send_answer, config=PeerConfig(udp_host=None),
            )  # fmt: skip

    return LabParticipant(base_url)


async def _join(link: str) -> Any:
    from client.ws import split_join_link

    base, token = split_join_link(link)
    participant = _lab_participant(base)
    await participant.join_token(token)
    return participant


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def _until_stopped() -> None:
    """Returns when stdin closes or says `stop`, or after MAX_STAY_S."""

    async def read() -> None:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line or line.strip() == "stop":
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), MAX_STAY_S)


async def publish(link: str) -> None:
    from client.clip import ClipTrack, load_clip

    participant = await _join(link)
    try:
        video = load_clip("vp8")
        slides = load_clip("vp8", bitrate=300_000, fps=5, keyframe_interval=10)
        await participant.publish(
            {
                "mic": ClipTrack(load_clip("opus")),
                "camera": ClipTrack(video),
                "screen": ClipTrack(slides),
            }
        )
        _emit({"event": "joined", "participant": participant.id})
        await _until_stopped()
    finally:
        await participant.close()


async def subscribe(link: str) -> None:
    participant = await _join(link)
    links: list[dict[str, Any]] = []
    notices: list[dict[str, Any]] = []

    def on_frame(frame: dict[str, Any]) -> None:
        if frame.get("type") == "link":
            links.append({"t": time.time(), **frame})
        elif frame.get("type") == "notice":
            notices.append({"t": time.time(), "code": frame.get("code")})

    participant.signaling.listeners.append(on_frame)
    _emit({"event": "joined", "participant": participant.id})
    tracks: dict[str, dict[str, list[list[float]]]] = {}
    announced = False

    async def poll() -> None:
        nonlocal announced
        while True:
            now = time.time()
            peer = participant.peer
            if peer is not None:
                for (_who, source), track in list(peer.received.items()):
                    series = tracks.setdefault(source, {"frames": [], "bytes": []})
                    series["frames"].append([now, track.frames])
                    series["bytes"].append([now, track.bytes])
                    if source == "camera" and track.frames and not announced:
                        announced = True
                        _emit({"event": "receiving"})
            await asyncio.sleep(POLL_S)

    poller = asyncio.create_task(poll())
    try:
        await _until_stopped()
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        peer = participant.peer
        state = {
            "down": peer.down_state if peer else "none",
            "signaling": str(getattr(participant.signaling, "state", "")),
        }
        _emit({"event": "result", "tracks": tracks, "links": links, "notices": notices,
               "state": state})
        await participant.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab.peer", description=__doc__)
    parser.add_argument("role", choices=("publish", "subscribe"))
    parser.add_argument("link", help="join link")
    args = parser.parse_args(argv)
    asyncio.run(publish(args.link) if args.role == "publish" else subscribe(args.link))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
