"""A classroom in real Chromium follows a class onto an edge node and, when that edge dies,
onto the other one (signaling/spanning.py): an origin and two edges on one redis-server;
the classroom opens its link on the origin, is redirected to an edge (the class spans at
once) and sees the teacher through the trunk; that edge is killed, the page rejoins through
the address it was opened at and is redirected to the live edge, and sees the teacher again."""

from __future__ import annotations

import time

import pytest
from playwright.async_api import Browser

from tests.e2e.browser import require_chromium, wait_for, wait_video_playing
from tests.e2e.flows import join, main_video, participant_id
from tests.signaling.test_spanning_nodes import start_node  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.slow,
              pytest.mark.timeout(240)]


def socket_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws"


async def test_a_classroom_page_moves_to_the_live_edge_when_its_edge_dies(
    browser: Browser, start_node  # noqa: F811
) -> None:
    from broker.demo import load_demo

    require_chromium()
    origin = await start_node("origin", "origin")
    edges = {e.name: e for e in [await start_node("edge-1", "edge"),
                                 await start_node("edge-2", "edge")]}
    s = origin.services
    demo = await load_demo(s.directory, s.classes, s.consults, s.tokens, s.clock())
    teacher = await join(browser, f"{origin.base_url}/join/{demo.host_token}", locale="en-US")
    teacher_id = await participant_id(teacher.page)
    room = next(iter(demo.classroom_tokens))
    classroom = await join(browser, f"{origin.base_url}/join/{demo.classroom_tokens[room]}",
                           locale="en-US")
    page = classroom.page
    teacher_video = main_video(teacher_id)

    async def channel_url() -> str:
        return str(await page.evaluate("() => window.tongxin.channel.url"))

    async def on_an_edge() -> str | None:
        url = await channel_url()
        return next((name for name, e in edges.items() if socket_url(e.base_url) == url), None)

    first = await wait_for(on_an_edge, within=30, what="the classroom redirected to an edge")
    await wait_video_playing(page, teacher_video, within=60)
    other = next(name for name in edges if name != first)

    killed = time.monotonic()
    await edges[first].kill()
    await wait_for(lambda: _is(on_an_edge, other), within=30,
                   what="the classroom page rejoined on the live edge")
    await wait_video_playing(page, teacher_video, within=60)
    print(f"\nbrowser edge failover: the teacher's video plays again "
          f"{time.monotonic() - killed:.2f} s after the edge died")
    assert page.url.startswith(origin.base_url)  # the page stays where it was opened
    assert teacher.errors == [] and classroom.errors == []


async def _is(check, expected: str) -> bool:  # type: ignore[no-untyped-def]
    return await check() == expected
