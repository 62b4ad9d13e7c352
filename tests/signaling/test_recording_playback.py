"""Recording end to end: a two-minute class recorded on the relay plays back as HLS.

Real aiortc participants over loopback UDP (a teacher with camera and microphone, a classroom
with its camera), recording turned on over REST and off over the WebSocket, the programme built
by its child process, and the playlists and segments fetched over HTTP the way hls.js does.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from typing import Any

import aiohttp
import av
import pytest
from test_recording_api import expect_frame

from client.clip import ClipTrack, load_clip
from client.participant import RemoteParticipant

RECORD_S = 120.0


async def get(session: aiohttp.ClientSession, url: str, token: str | None = None
              ) -> tuple[int, bytes, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.read(), resp.content_type


def entries(playlist: str) -> list[tuple[float, str]]:
    """(EXTINF seconds, URI) of a media playlist."""
    return [(float(d), uri) for d, uri in re.findall(r"#EXTINF:([0-9.]+),\s*\n(\S+)", playlist)]


def stream_seconds(data: bytes) -> dict[str, tuple[float, float, int]]:
    """Per stream type: (first, last timestamp in seconds, packets) of one MPEG-TS segment."""
    seen: dict[str, tuple[float, float, int]] = {}
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            t = float(packet.pts * packet.time_base)
            first, last, n = seen.get(packet.stream.type, (t, t, 0))
            seen[packet.stream.type] = (min(first, t), max(last, t), n + 1)
    return seen


def decoded_frames(data: bytes) -> tuple[int, int]:
    """(video frames, audio samples) decoded from one MPEG-TS segment."""
    frames = samples = 0
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                frames += 1
            else:
                samples += frame.samples
    return frames, samples


@pytest.mark.timeout(480)
@pytest.mark.parametrize("store", ["memory"], indirect=True)
async def test_a_two_minute_class_plays_back_in_both_renditions(node) -> None:
    demo = node.demo
    klass = await node.services.classes.get(demo.class_id)
    room = klass.classroom_site_ids[0]
    video = load_clip("vp8", width=640, height=360, bitrate=500_000)
    audio = load_clip("opus")
    teacher, classroom = RemoteParticipant(node.base_url), RemoteParticipant(node.base_url)
    try:
        await teacher.join_token(demo.host_token)
        await classroom.join_token(demo.classroom_tokens[room])
        await teacher.publish({"mic": ClipTrack(audio), "camera": ClipTrack(video)})
        small = load_clip("vp8", width=320, height=180, bitrate=300_000)
        await classroom.publish({"camera": ClipTrack(small)})
        deadline = time.monotonic() + 60
        while classroom.frames_from(teacher.id, "camera") < 30 or \
                teacher.frames_from(room, "camera") < 30:
            assert time.monotonic() < deadline, "media flows before recording"
            await asyncio.sleep(0.1)

        async with aiohttp.ClientSession() as http:
            async with http.post(f"{node.base_url}/api/v1/sessions/{klass.id}/recording",
                                 json={"on": True}, headers={
                                     "Authorization": f"Bearer {teacher.signaling.credential}"}
                                 ) as resp:
                assert resp.status == 200
                rec_id = (await resp.json())["recording"]["id"]
            on = await expect_frame(classroom.signaling, "recording", where=lambda f: f["on"])
            assert on["recording"] == rec_id
            await asyncio.sleep(RECORD_S)
            await teacher.send({"type": "record", "on": False})
            await expect_frame(classroom.signaling, "recording", where=lambda f: not f["on"],
                                             timeout=30)
            stopped_at = time.monotonic()

            # the programme is built off the event loop; the library shows its progress
            token = teacher.signaling.credential
            seen: list[Any] = []
            rec: dict[str, Any] = {}
            deadline = time.monotonic() + 300
            while rec.get("status") not in ("ready", "failed"):
                assert time.monotonic() < deadline, f"not ready: {rec}"
                status, body, _ = await get(http, f"{node.base_url}/api/v1/recordings/{rec_id}",
                                            token)
                assert status == 200
                rec = json.loads(body)
                seen.append((rec["status"], rec["progress"]))
                await asyncio.sleep(0.5)
            built_s = time.monotonic() - stopped_at
            assert rec["status"] == "ready", rec
            assert all(0.0 <= p <= 1.0 for _, p in seen)
            assert abs(rec["duration_s"] - RECORD_S) < 3.0
            print(f"\nprogramme of {rec['duration_s']:.1f} s ready {built_s:.1f} s after stop "
                  f"({rec['duration_s'] / built_s:.2f}x real time on this machine)")

            base = node.base_url + rec["playback_url"].rsplit("/", 1)[0]
            status, master, ctype = await get(http, node.base_url + rec["playback_url"])
            assert (status, ctype) == (200, "application/vnd.apple.mpegurl")
            assert {r["name"] for r in rec["renditions"]} == {"normal", "low"}
            status, poster, ctype = await get(http, node.base_url + rec["poster_url"])
            assert (status, ctype) == (200, "image/jpeg") and poster[:3] == b"\xff\xd8\xff"
            variants = re.findall(r"RESOLUTION=(\d+)x(\d+).*\n(\S+\.m3u8)", master.decode())
            assert sorted(v[2] for v in variants) == ["low.m3u8", "normal.m3u8"]
            for width, height, uri in variants:
                status, playlist, ctype = await get(http, f"{base}/{uri}")
                assert (status, ctype) == (200, "application/vnd.apple.mpegurl")
                items = entries(playlist.decode())
                total = sum(d for d, _ in items)
                assert abs(total - rec["duration_s"]) < 1.0, (uri, total, rec["duration_s"])
                video_end = 0.0
                size = 0
                for index, (_, segment) in enumerate(items):
                    status, data, ctype = await get(http, f"{base}/{segment}")
                    assert (status, ctype) == (200, "video/mp2t")
                    size += len(data)
                    times = stream_seconds(data)
                    assert set(times) == {"video", "audio"}
                    assert times["video"][0] >= video_end - 0.001, "video advances"
                    video_end = times["video"][1]
                    if index in (0, len(items) // 2, len(items) - 1):
                        frames, samples = decoded_frames(data)
                        assert frames > 0 and samples > 0
                kbps = size * 8 / total / 1000
                print(f"{uri}: {width}x{height}, {total:.2f} s, {kbps:.0f} kbit/s")
                if uri == "low.m3u8":
                    assert kbps < 250, "the low rendition plays on a 250 kbit/s link"
                assert video_end > total - 2.0
    finally:
        await teacher.close()
        await classroom.close()
