"""A dual-teacher class (双师课堂) in real Chromium: a teacher and two classrooms through the
real node and relay; everyone sees and hears who they should, calling on a classroom reaches
the other, screen share reaches both, and a classroom recovers from a lost connection."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.e2e.browser import screenshot, wait_audio_from, wait_for, wait_video_playing
from tests.e2e.flows import join, main_video, participant_id
from tests.e2e.node import TongxinNode

pytestmark = [
    pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240),
]


async def test_class_teacher_and_two_classrooms_see_and_hear_each_other(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    teacher = await join(browser, tongxin_node.link("教师"))
    room1 = await join(browser, tongxin_node.link("教学点 1 "))
    room2 = await join(browser, tongxin_node.link("教学点 2 "))
    teacher_id = await participant_id(teacher.page)
    room1_id = await participant_id(room1.page)
    room2_id = await participant_id(room2.page)

    # The teacher sees and hears both classrooms in the grid.
    for pid in (room1_id, room2_id):
        await wait_video_playing(teacher.page, f'#classroom-grid video[data-participant="{pid}"]')
        await wait_audio_from(teacher.page, pid)
    # Both classrooms see and hear the teacher on the stage.
    for room in (room1, room2):
        await wait_video_playing(room.page, main_video(teacher_id))
        await wait_audio_from(room.page, teacher_id)

    # Calling on classroom 2: classroom 1 sees and hears it.
    card = teacher.page.locator(f'.classroom-card[data-participant="{room2_id}"]')
    await card.get_by_role("button", name="点名发言").click()
    await room2.page.get_by_text("老师点名了本教学点").wait_for()
    await wait_video_playing(room1.page, f'.tile-spot video[data-participant="{room2_id}"]')
    await wait_audio_from(room1.page, room2_id)
    await screenshot(room1.page, "class-classroom-called-on-zh-CN")

    # Screen share (slides) reaches both classrooms, on the big tile.
    await teacher.page.get_by_role("button", name="共享屏幕（课件）").click()
    for room in (room1, room2):
        await wait_video_playing(room.page, '.tile-main video[data-source="screen"]')
    await screenshot(teacher.page, "class-teacher-sharing-zh-CN")
    await screenshot(room2.page, "class-classroom-slides-zh-CN")

    # A lost WebSocket comes back by itself (same seat), showing "reconnecting…" meanwhile.
    await room1.page.evaluate("() => window.tongxin.channel.socket.close()")
    await room1.page.locator("#status-text").filter(has_text="正在重新连接").wait_for()
    await room1.page.locator("#status-text").filter(has_text="已连接").wait_for(timeout=30_000)
    assert await participant_id(room1.page) == room1_id
    # Lost media (what a `reconnect` frame asks for): fresh peer connections, video again.
    await room1.page.evaluate("() => window.tongxin.room.rebuildMedia()")
    await wait_video_playing(room1.page, '.tile-main video[data-source="screen"]')
    await wait_audio_from(room1.page, teacher_id)

    async def link_shown() -> bool:
        return bool(await teacher.page.locator(
            "#classroom-grid .classroom-card:not([data-quality='unknown'])").count())

    await wait_for(link_shown, within=30, what="link quality in the teacher's grid")
    for watched in (teacher, room1, room2):
        assert watched.errors == []
