"""The data saver in real Chromium: a classroom chooses a budget, the page shows the MB used
and the budget from the relay's `data` frames, and the choice is remembered after a reload."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.e2e.browser import screenshot, wait_video_playing
from tests.e2e.flows import join, main_video, participant_id, wait_role_page
from tests.e2e.node import TongxinNode

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]


async def test_a_classroom_sets_a_data_budget_and_sees_the_mb_used(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    teacher = await join(browser, tongxin_node.link("教师"), locale="en-US")
    room = await join(browser, tongxin_node.link("教学点 1 "), locale="en-US")
    teacher_id = await participant_id(teacher.page)
    await wait_video_playing(room.page, main_video(teacher_id))
    usage = room.page.get_by_test_id("data-usage")
    await usage.filter(has_text="MB used").wait_for(timeout=30_000)

    await room.page.get_by_test_id("data-saver").select_option("50")
    await usage.filter(has_text="budget 50 MB per hour").wait_for(timeout=30_000)
    # 50 MB/h (111 kbit/s) is below the low rung with audio: the relay pauses the video and
    # the page says it is the budget, not the network
    await room.page.get_by_text("Limited by your data budget").wait_for(timeout=30_000)
    await usage.filter(has_text="MB used · budget 50 MB per hour").wait_for()
    await screenshot(room.page, "data-saver-classroom-en")
    stored = await room.page.evaluate("() => localStorage.getItem('tongxin.dataSaver')")
    assert stored == "50"

    await room.page.reload()
    await wait_role_page(room.page)
    assert await room.page.get_by_test_id("data-saver").input_value() == "50"
    await usage.filter(has_text="budget 50 MB per hour").wait_for(timeout=30_000)
    assert room.errors == [] and teacher.errors == []
