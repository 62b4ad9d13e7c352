"""What the fault tests share: a `tongxin serve` child process on a (restartable) Redis, its
demo links, and participants of a class or consult exchanging media through it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiortc import MediaStreamTrack

from bench.processes import NodeProcess
from client.clip import ClipTrack, load_clip
from client.participant import RemoteParticipant
from client.ws import split_join_link
from tests.helpers.waiting import wait_until

FRAMES = 10
"""Frames a receiver must count before media counts as flowing."""


def small_tracks() -> dict[str, MediaStreamTrack]:
    """Opus and a small VP8 camera (160x120, 15 fps): media that flows on a loaded machine."""
    return {"mic": ClipTrack(load_clip("opus")),
            "camera": ClipTrack(load_clip("vp8", width=160, height=120, fps=15,
                                          bitrate=100_000))}


def demo_token(node: NodeProcess, label_prefix: str) -> str:
    """The token of the banner's demo link whose label starts with `label_prefix`
    (教师, 教学点 1, 村卫生室, 医生, 运维)."""
    for label, link in node.demo_links().items():
        if label.startswith(label_prefix):
            return split_join_link(link)[1]
    raise KeyError(f"no demo link labelled {label_prefix}…")


async def join_class(node: NodeProcess) -> tuple[RemoteParticipant, RemoteParticipant, str]:
    """The demo class's teacher and first classroom, joined and publishing audio + video."""
    teacher, classroom = RemoteParticipant(node.url), RemoteParticipant(node.url)
    for p in (teacher, classroom):
        p.track_factory = small_tracks
    await teacher.join_token(demo_token(node, "教师"))
    await teacher.signaling.expect("session", timeout=20)
    await classroom.join_token(demo_token(node, "教学点 1"))
    await classroom.signaling.expect("session", timeout=20)
    await teacher.publish(small_tracks())
    await classroom.publish(small_tracks())
    return teacher, classroom, classroom.id


def frames(p: RemoteParticipant, sender: str, source: str) -> int:
    """Frames `p` (its current peer connections) received from `sender`'s `source`."""
    try:
        return p.frames_from(sender, source)
    except (KeyError, AssertionError):
        return 0


async def exchanging(a: RemoteParticipant, b: RemoteParticipant, within: float = 30.0) -> float:
    """Wait until each receives video and audio of the other; the seconds it took."""
    return await wait_until(
        lambda: all(frames(x, y.id, s) > FRAMES
                    for x, y in ((a, b), (b, a)) for s in ("camera", "mic")),
        within=within, interval=0.05, what=f"{a.id} and {b.id} exchange media")


async def still_flowing(receiver: RemoteParticipant, sender: str, seconds: float,
                        within: float = 20.0) -> None:
    """Video from `sender` keeps arriving: `seconds` worth of frames (at 15 fps, halved for a
    loaded machine) within `within` seconds."""
    before = frames(receiver, sender, "camera")
    await wait_until(lambda: frames(receiver, sender, "camera") >= before + 7 * seconds,
                     within=within, what=f"video from {sender} keeps arriving")


async def first_frame(receiver: RemoteParticipant, where: Callable[[dict], bool],
                      within: float) -> dict:
    """The next frame of `receiver` that `where` accepts (errors included)."""
    async with asyncio.timeout(within):
        while True:
            frame = await receiver.signaling.frames.get()
            if where(frame):
                return frame


def since(start: float) -> float:
    return round(time.monotonic() - start, 2)
