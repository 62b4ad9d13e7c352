"""Simulcast in real Chromium: the teacher's camera goes up as three spatial layers (180p, 360p,
720p, each with temporal layers) and the relay forwards one layer per classroom, without a
transcoder."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tests.e2e.browser import WatchedPage, open_page, wait_for, wait_video_playing
from tests.e2e.flows import join, main_video, participant_id, wait_role_page
from tests.e2e.node import TongxinNode

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

LOADED = 150.0
"""Generous timeouts: other test runs load this machine (load 9-18 seen)."""


OUTBOUND_LAYERS = """async () => {
  const pc = window.tongxin.room.publisher?.pc;
  if (!pc) return null;
  const stats = await pc.getStats();
  const out = [];
  stats.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.push({ rid: s.rid || null, height: s.frameHeight || 0, bytes: s.bytesSent || 0,
                 active: s.active, mode: s.scalabilityMode || null,
                 limit: s.qualityLimitationReason || null });
    }
  });
  return out;
}"""

INBOUND_VIDEO = """async (pid) => {
  const pc = window.tongxin.room.subscriber?.pc;
  if (!pc) return null;
  const stats = await pc.getStats();
  const out = [];
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.push({ mid: s.mid, height: s.frameHeight || 0, width: s.frameWidth || 0,
                 bytes: s.bytesReceived || 0, frames: s.framesDecoded || 0,
                 fps: s.framesPerSecond || 0 });
    }
  });
  return out;
}"""


async def outbound_layers(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate(OUTBOUND_LAYERS) or []


async def inbound_video(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate(INBOUND_VIDEO) or []


@pytest.mark.timeout(600)
async def test_teacher_publishes_three_layers_and_a_classroom_gets_720p(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    teacher = await join(browser, tongxin_node.link("教师"))
    room1 = await join(browser, tongxin_node.link("教学点 1 "))
    teacher_id = await participant_id(teacher.page)
    await wait_video_playing(room1.page, main_video(teacher_id),
                             within=LOADED)

    async def three_layers() -> list[dict[str, Any]] | None:
        # each layer has sent something (bytes are cumulative: a layer nobody watches may be
        # paused again a few seconds later, dynacast)
        layers = await outbound_layers(teacher.page)
        sent = [layer for layer in layers if layer["bytes"] > 0]
        return layers if len(sent) == 3 else None

    layers = await wait_for(three_layers, within=LOADED, what="three simulcast layers")
    print("teacher layers", layers)

    async def hd() -> list[dict[str, Any]] | None:
        videos = await inbound_video(room1.page)
        return videos if any(v["height"] >= 720 for v in videos) else None

    try:
        videos = await wait_for(hd, within=LOADED, what="720p at the classroom")
    finally:
        print("classroom", await inbound_video(room1.page))
        print("teacher layers", await outbound_layers(teacher.page))
    print("classroom", videos)
    for watched in (teacher, room1):
        assert watched.errors == []


CAPPED_KBPS = 350
DECLARE_CAP = """(() => {
  const createAnswer = RTCPeerConnection.prototype.createAnswer;
  RTCPeerConnection.prototype.createAnswer = async function (...args) {
    const answer = await createAnswer.apply(this, args);
    const cap = window.__tongxinCapKbps ?? CAP;  // 0: lifted
    if (!cap) return answer;
    const sdp = answer.sdp.replace(/(m=video[^\\r]*\\r\\nc=[^\\r]*\\r\\n)/g, `$1b=AS:${cap}\\r\\n`);
    return { type: answer.type, sdp };
  };
})();""".replace("CAP", str(CAPPED_KBPS))
"""The classroom's answers declare a bandwidth on each video m-line (b=AS): the relay's
adaptation never allocates it more (`media.peers.sdp_bandwidth`), a capped link without a
network namespace."""


async def join_capped(browser: Browser, link: str) -> WatchedPage:
    watched = await open_page(browser)
    await watched.context.add_init_script(DECLARE_CAP)  # every page of this context
    await watched.page.goto(f"{link}?autojoin=1")
    await wait_role_page(watched.page)
    return watched


def transcoders(node: TongxinNode) -> int:
    with urllib.request.urlopen(f"{node.base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(r"^tongxin_media_transcoders (\S+)$", text, re.MULTILINE)
    assert match, "the media_transcoders gauge"
    return int(float(match.group(1)))


SENDER_LAYERS = """() => {
  const transceivers = window.tongxin.room.publisher?.transceivers;
  const sender = transceivers?.get('camera')?.sender;
  if (!sender) return null;
  return sender.getParameters().encodings.map((e) => ({ rid: e.rid, active: e.active }));
}"""
"""The teacher's camera encodings as its page set them (`layers` frames, dynacast)."""


async def sender_layers(page: Page) -> dict[str, bool]:
    encodings = await page.evaluate(SENDER_LAYERS) or []
    return {str(e["rid"]): bool(e["active"]) for e in encodings}


async def playing(page: Page, ok: Any) -> dict[str, Any] | None:
    """The inbound video whose height is `ok`, if it decodes frames."""
    videos = await inbound_video(page)
    return next((v for v in videos if v["frames"] > 0 and ok(v["height"])), None)


async def advancing(page: Page, ok: Any, seconds: float = 5.0) -> dict[str, Any] | None:
    """The video at a height `ok` whose decoded frames advanced over `seconds` (at that height
    at both ends), with its frame rate and bitrate over them."""
    before = await playing(page, ok)
    if before is None:
        return None
    await asyncio.sleep(seconds)
    after = await playing(page, ok)
    if after is None or after["frames"] <= before["frames"] + seconds:  # at least 1 fps
        return None
    return {**after, "fps_measured": (after["frames"] - before["frames"]) / seconds,
            "kbps": (after["bytes"] - before["bytes"]) * 8 / 1000 / seconds}



@pytest.mark.timeout(600)
async def test_a_capped_classroom_gets_the_low_layer_and_a_clean_one_the_high_one(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    teacher = await join(browser, tongxin_node.link("教师"))
    clean = await join(browser, tongxin_node.link("教学点 1 "))
    capped = await join_capped(browser, tongxin_node.link("教学点 2 "))
    teacher_id = await participant_id(teacher.page)
    for room in (clean, capped):
        await wait_video_playing(room.page, main_video(teacher_id),
                                 within=LOADED)
    hd = lambda h: h >= 720  # noqa: E731
    low = lambda h: 0 < h <= 180  # noqa: E731
    try:
        await wait_for(lambda: playing(clean.page, hd), within=LOADED,
                       what="720p at the clean classroom")
        await wait_for(lambda: playing(capped.page, low), within=LOADED,
                       what="180p at the capped classroom")
        # both at once, from the one publication, playing on (5 s windows)
        clean_now, capped_now = await asyncio.gather(
            wait_for(lambda: advancing(clean.page, hd), within=LOADED,
                     what="the clean classroom's 720p playing on"),
            wait_for(lambda: advancing(capped.page, low), within=LOADED,
                     what="the capped classroom's 180p playing on"),
        )
    finally:
        print("teacher layers", await outbound_layers(teacher.page),
              await sender_layers(teacher.page))
        print("clean", await inbound_video(clean.page))
        print("capped", await inbound_video(capped.page))
    for name, seen in (("clean", clean_now), ("capped", capped_now)):
        print(f"{name}: {seen['width']}x{seen['height']} {seen['fps_measured']:.1f} fps "
              f"{seen['kbps']:.0f} kbit/s")
    assert capped_now["kbps"] < CAPPED_KBPS
    layers = await outbound_layers(teacher.page)
    assert sorted(layer["rid"] for layer in layers) == ["f", "h", "q"]
    assert transcoders(tongxin_node) == 0, "no transcoder: the low picture is the 180p layer"
    # dynacast: 360p is watched by no one; 180p and 720p are
    active = await wait_for(
        lambda: _layers_if(teacher.page, {"q": True, "h": False, "f": True}), within=LOADED,
        what="the teacher sending 180p and 720p, 360p paused")
    print("teacher encodings", active)
    for watched in (teacher, clean, capped):
        assert watched.errors == []


async def _layers_if(page: Page, expected: dict[str, bool]) -> dict[str, bool] | None:
    layers = await sender_layers(page)
    return layers if layers == expected else None


@pytest.mark.timeout(600)
async def test_dynacast_pauses_the_layers_a_lone_capped_classroom_does_not_watch(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    teacher = await join(browser, tongxin_node.link("教师"))
    capped = await join_capped(browser, tongxin_node.link("教学点 2 "))
    teacher_id = await participant_id(teacher.page)
    await wait_video_playing(capped.page, main_video(teacher_id),
                             within=LOADED)
    try:
        layers = await wait_for(
            lambda: _layers_if(teacher.page, {"q": True, "h": False, "f": False}),
            within=LOADED, what="the teacher sending only 180p")
        seen = await wait_for(lambda: advancing(capped.page, lambda h: 0 < h <= 180),
                              within=LOADED, what="the capped classroom's 180p playing on")
    finally:
        print("teacher layers", await outbound_layers(teacher.page),
              await sender_layers(teacher.page))
        print("capped", await inbound_video(capped.page))
    print("teacher encodings", layers, "capped", seen)

    async def only_q_sent() -> list[dict[str, Any]] | None:
        first = {x["rid"]: x["bytes"] for x in await outbound_layers(teacher.page)}
        await asyncio.sleep(2.0)
        second = {x["rid"]: x["bytes"] for x in await outbound_layers(teacher.page)}
        sent = {rid: second[rid] - first.get(rid, 0) for rid in second}
        return [sent] if sent.get("q", 0) > 0 and sent.get("f", 1) == 0 else None

    print("bytes sent per layer over 2 s", await wait_for(
        only_q_sent, within=30, what="the teacher's 720p layer no longer sent"))
    for watched in (teacher, capped):
        assert watched.errors == []


@pytest.mark.timeout(600)
async def test_lifting_the_cap_brings_the_paused_layers_back(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    """The lone capped classroom's link is freed (a new down connection whose answer declares
    no bandwidth): its rung climbs, wants a paused layer, and the teacher resumes it (360p, or
    720p straight from 180p when the climb's probes bring that one into reach: the layer
    nobody watches then stays paused)."""
    teacher = await join(browser, tongxin_node.link("教师"))
    capped = await join_capped(browser, tongxin_node.link("教学点 2 "))
    teacher_id = await participant_id(teacher.page)
    await wait_video_playing(capped.page, main_video(teacher_id),
                             within=LOADED)
    await wait_for(lambda: _layers_if(teacher.page, {"q": True, "h": False, "f": False}),
                   within=LOADED, what="the teacher sending only 180p")
    await capped.page.evaluate(
        "() => { window.__tongxinCapKbps = 0; window.tongxin.room.subscriber.rebuild(); }")
    try:
        await wait_for(lambda: playing(capped.page, lambda h: h >= 360), within=LOADED,
                       what="360p or more at the freed classroom")
        async def resumed() -> dict[str, bool] | None:
            layers = await sender_layers(teacher.page)
            return layers if layers.get("q") and (layers.get("h") or layers.get("f")) else None

        layers = await wait_for(resumed, within=LOADED,
                                what="the teacher sending 360p or 720p again")
    finally:
        print("teacher layers", await outbound_layers(teacher.page),
              await sender_layers(teacher.page))
        print("freed", await inbound_video(capped.page))
    print("teacher encodings", layers)
    for watched in (teacher, capped):
        assert watched.errors == []
