"""The browser follows a `redirect` (PROTOCOL.md §5) in real Chromium: two nodes on one
redis-server; the teacher joins through node A (which then holds the class), a classroom opens
its link on node B, is redirected, reconnects its WebSocket to A with the same credential and
sees the teacher's video through A's relay."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.e2e.browser import require_chromium, wait_video_playing
from tests.e2e.flows import join, main_video, participant_id
from tests.signaling.test_multinode import start_node, two_nodes  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.slow,
              pytest.mark.timeout(180)]


async def test_a_classroom_on_the_other_node_is_redirected_and_sees_the_teacher(
    browser: Browser, start_node  # noqa: F811
) -> None:
    require_chromium()
    a, b, demo = await two_nodes(start_node)
    teacher = await join(browser, f"{a.base_url}/join/{demo.host_token}", locale="en-US")
    teacher_id = await participant_id(teacher.page)
    room = next(iter(demo.classroom_tokens))
    classroom = await join(browser, f"{b.base_url}/join/{demo.classroom_tokens[room]}",
                           locale="en-US")
    cpage = classroom.page
    await wait_video_playing(cpage, main_video(teacher_id),
                             within=60)
    url = await cpage.evaluate("() => window.tongxin.channel.url")
    assert url == a.base_url.replace("http://", "ws://") + "/ws"
    assert cpage.url.startswith(b.base_url)  # the page stays where it was opened
    assert (await a.placement.place(demo.class_id)).id == "node-a"
    await wait_video_playing(teacher.page, f'#classroom-grid video[data-participant="{room}"]',
                             within=60)
    assert teacher.errors == [] and classroom.errors == []
