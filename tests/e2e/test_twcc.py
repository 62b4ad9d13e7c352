"""Transport-cc between a real Chromium publisher and the relay: negotiated in the answer, and
the relay's feedback flowing back to the publisher while it sends."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, Page

from media.rtp.twcc import TRANSPORT_CC_URI
from tests.e2e.browser import wait_for, wait_video_playing
from tests.e2e.flows import join, main_video, participant_id
from tests.e2e.node import TongxinNode

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

LOADED = 150.0
"""Generous timeouts: other test runs load this machine."""

PUBLISHER = """async () => {
  const pc = window.tongxin.room.publisher?.pc;
  if (!pc || !pc.remoteDescription) return null;
  const stats = await pc.getStats();
  let available = null;
  let sent = 0;
  stats.forEach((s) => {
    if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate !== undefined) {
      available = s.availableOutgoingBitrate;
    }
    if (s.type === 'outbound-rtp' && s.kind === 'video') sent += s.bytesSent || 0;
  });
  return { answer: pc.remoteDescription.sdp, available, sent };
}"""
"""The relay's answer to the teacher, the send estimate Chromium reports, video bytes sent."""


async def publisher(page: Page) -> dict[str, Any]:
    return await page.evaluate(PUBLISHER) or {}


def node_log(node: TongxinNode) -> str:
    return node.log_path.read_text(encoding="utf-8", errors="replace")


async def test_a_chromium_publisher_gets_transport_cc_feedback(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    teacher = await join(browser, tongxin_node.link("教师"))
    room = await join(browser, tongxin_node.link("教学点 1 "))
    teacher_id = await participant_id(teacher.page)
    await wait_video_playing(room.page, main_video(teacher_id),
                             within=LOADED)

    state = await wait_for(lambda: publisher(teacher.page), within=LOADED, what="an answer")
    answer = state["answer"]
    video = answer[answer.index("m=video"):]
    assert TRANSPORT_CC_URI in video, "the extension answered with the offer's id"
    assert "transport-cc" in video.replace(TRANSPORT_CC_URI, ""), "a=rtcp-fb:<pt> transport-cc"

    flowing = f"transport-cc feedback to {teacher_id}: flowing"

    async def feedback_sent() -> bool:
        return flowing in node_log(tongxin_node)

    await wait_for(feedback_sent, within=LOADED, what="the relay's feedback to the teacher")
    state = await publisher(teacher.page)
    print("teacher send estimate", state["available"], "video bytes", state["sent"])
    assert state["available"] is not None and state["available"] > 0
    for watched in (teacher, room):
        assert watched.errors == []
