"""`tongxin client LINK`: join a session from the command line with a join link.

It exchanges the link, joins over the WebSocket, optionally publishes a pre-encoded clip
(camera + microphone), receives without decoding, and prints what arrived as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence

from client.participant import RemoteParticipant


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tongxin client",
                                description="join a Tongxin session with a join link")
    p.add_argument("link", help="http(s)://host:port/join/<token>")
    p.add_argument("--publish", action="store_true", help="send a test clip (VP8 + Opus)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long to stay (default 20)")
    return p


async def run(link: str, publish: bool, seconds: float) -> dict[str, object]:
    from client.clip import ClipTrack, load_clip

    participant = await RemoteParticipant.join_link(link)
    try:
        if publish:
            await participant.publish({"mic": ClipTrack(load_clip("opus")),
                                       "camera": ClipTrack(load_clip("vp8"))})
        await asyncio.sleep(seconds)
        assert participant.peer is not None
        received = {
            f"{pid}/{source}": participant.peer.track(pid, source).frames
            for pid, source in sorted(participant.peer.receiving())
        }
        return {"participant": participant.id,
                "role": participant.signaling.grant["participant"]["role"],
                "seconds": seconds, "frames_received": received}
    finally:
        await participant.close()


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    if args.seconds <= 0 or args.seconds > 24 * 3600:
        parser().error("--seconds must be between 0 and 86400")
    print(json.dumps(asyncio.run(run(args.link, args.publish, args.seconds)),
                     ensure_ascii=False))
    return 0
