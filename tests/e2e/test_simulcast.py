"""Simulcast in real Chromium: the teacher's camera goes up as three spatial layers (180p, 360p,
720p, each with temporal layers) and the relay forwards one layer per classroom, without a
transcoder."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tests.e2e.browser import wait_for, wait_video_playing
from tests.e2e.flows import join, participant_id
from tests.e2e.node import TongxinNode

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

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


async def test_teacher_publishes_three_layers_and_a_classroom_gets_720p(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    teacher = await join(browser, tongxin_node.link("教师"))
    room1 = await join(browser, tongxin_node.link("教学点 1 "))
    teacher_id = await participant_id(teacher.page)
    await wait_video_playing(room1.page, f'.tile-main video[data-participant="{teacher_id}"]')

    async def three_layers() -> list[dict[str, Any]] | None:
        layers = await outbound_layers(teacher.page)
        sending = [layer for layer in layers if layer["bytes"] > 0 and layer["height"] > 0]
        return layers if len(sending) == 3 else None

    layers = await wait_for(three_layers, within=30, what="three simulcast layers")
    print("teacher layers", layers)

    async def hd() -> list[dict[str, Any]] | None:
        videos = await inbound_video(room1.page)
        return videos if any(v["height"] >= 720 for v in videos) else None

    try:
        videos = await wait_for(hd, within=40, what="720p at the classroom")
    finally:
        print("classroom", await inbound_video(room1.page))
        print("teacher layers", await outbound_layers(teacher.page))
    print("classroom", videos)
    for watched in (teacher, room1):
        assert watched.errors == []
