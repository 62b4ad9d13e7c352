"""Recording in real Chromium through the real node: a class recorded for about 20 s
from the teacher console (everyone sees "recording"), processed after the class ends, listed
in the library until ready, played in both renditions with the browser's own HLS and, through
a share link, with hls.js; and a consult where the clinic refuses consent, which the doctor's
console shows plainly and nothing is recorded. (The 2-minute duration test is the backend's.)"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Page

from tests.e2e.browser import WatchedPage, screenshot, wait_for, wait_video_playing
from tests.e2e.flows import join, main_video, participant_id
from tests.e2e.node import TongxinNode
from tests.e2e.test_recordings_ui import PLAYER_STATE, press_play, wait_playing

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

RECORD_FOR_S = 20
READY_WITHIN_S = 240.0


async def renditions_widths(page: Page) -> list[int]:
    """The widths of the renditions the player offers, lowest bandwidth first."""

    async def widths() -> list[int] | None:
        found = await page.evaluate(
            "() => (window.tongxin?.player?.renditions || []).map((r) => r.width || 0)")
        return found if len(found) >= 2 else None

    return list(await wait_for(widths, within=30, what="two renditions offered"))


async def play_each_rendition(page: Page) -> None:
    """Pins each rendition in turn and waits for frames of its size, then goes back to auto."""
    await press_play(page)
    await wait_playing(page)
    widths = await renditions_widths(page)
    quality = page.locator("#quality-select")
    for index, width in enumerate(widths, start=1):
        await quality.select_option(index=index)
        await wait_playing(page, width=width or None)
    await quality.select_option(index=0)
    await wait_playing(page)


async def test_a_recorded_class_is_processed_and_plays_in_both_renditions(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    teacher = await join(browser, tongxin_node.link("教师"), locale="en-US")
    room = await join(browser, tongxin_node.link("教学点 1 "), locale="zh-CN")
    tpage, rpage = teacher.page, room.page
    teacher_id = await participant_id(tpage)
    await wait_video_playing(rpage, main_video(teacher_id))

    await tpage.get_by_role("button", name="Start recording").click()
    await tpage.locator("#rec-indicator").get_by_text("Recording").wait_for()
    await rpage.locator("#rec-indicator").get_by_text("正在录像").wait_for()
    await tpage.get_by_role("button", name="Stop recording").wait_for()
    await screenshot(tpage, "class-teacher-recording-en")
    await screenshot(rpage, "class-classroom-recording-zh-CN")
    await asyncio.sleep(RECORD_FOR_S)  # what is recorded, not a timing assertion

    await tpage.get_by_role("button", name="End class").click()
    await tpage.locator("dialog").get_by_role("button", name="End class").click()
    await rpage.locator(".ended").wait_for()

    # The teacher's library: the class shows its progress until it is ready.
    await tpage.goto(f"{tongxin_node.base_url}/recordings")
    item = tpage.locator(".rec-item").first
    await item.wait_for(timeout=30_000)
    seen: list[str] = []

    async def ready() -> bool:
        status = await item.get_attribute("data-status")
        if status and (not seen or seen[-1] != status):
            seen.append(status)
            if status == "processing":
                await screenshot(tpage, "recordings-processing-en")
        return status == "ready"

    await wait_for(ready, within=READY_WITHIN_S, what="the recording ready in the library",
                   every=0.5)
    assert seen[-1] == "ready" and set(seen) <= {"recording", "processing", "ready"}, seen
    await screenshot(tpage, "recordings-ready-en")

    await item.get_by_role("button", name="Play").click()
    await play_each_rendition(tpage)
    native = await tpage.evaluate(PLAYER_STATE)

    # Shared: the link plays without any session, here with hls.js.
    await item.get_by_role("button", name="Share").click()
    await tpage.locator("dialog").get_by_role("button", name="Make link").click()
    link = await tpage.locator("#share-link").input_value()
    assert "/watch/" in link
    viewer = await browser.new_context(locale="en-US")
    try:
        page = await viewer.new_page()
        await page.goto(f"{link}?engine=hlsjs")
        await page.locator("#recording-video").wait_for()
        await play_each_rendition(page)
        assert (await page.evaluate(PLAYER_STATE))["engine"] == "hlsjs"
        await screenshot(page, "watch-class-hlsjs-en")
    finally:
        await viewer.close()
    print(f"library statuses seen: {seen}; library engine: {native['engine']}")
    assert teacher.errors == [] and room.errors == []


async def consult_in_progress(browser: Browser, node: TongxinNode, reason: str
                              ) -> tuple[WatchedPage, WatchedPage]:
    """A clinic's request taken and admitted by the doctor, media flowing: (doctor, clinic)."""
    doctor = await join(browser, node.link("医生"), locale="en-US")
    clinic = await join(browser, node.link("村卫生室"), locale="en-US")
    dpage, cpage = doctor.page, clinic.page
    duty = dpage.get_by_role("button", name="Off duty")
    if await duty.count():
        await duty.click()
    await dpage.get_by_role("button", name="On duty").wait_for()
    await cpage.get_by_label("Specialty").select_option("内科")
    await cpage.get_by_label("Reason").fill(reason)
    await cpage.get_by_role("button", name="Request consultation").click()
    item = dpage.locator(".queue-item").filter(has_text=reason)
    await item.get_by_role("button", name="Take").click()
    await item.get_by_role("button", name="Admit").click()
    clinic_id = await participant_id(cpage)
    await wait_video_playing(dpage, main_video(clinic_id))
    return doctor, clinic


async def end_consult(doctor: WatchedPage, clinic: WatchedPage) -> None:
    await doctor.page.get_by_role("button", name="End consultation").click()
    await doctor.page.locator("dialog").get_by_role("button", name="End consultation").click()
    await clinic.page.get_by_role("heading", name="The consultation has ended").wait_for()


async def test_a_clinic_refusing_consent_is_shown_to_the_doctor_and_nothing_records(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    doctor, clinic = await consult_in_progress(browser, tongxin_node,
                                               "Cough for three weeks, asks about recording")
    dpage, cpage = doctor.page, clinic.page

    await dpage.get_by_role("button", name="Record (asks the clinic)").click()
    consent = cpage.locator("#consent-dialog")
    await consent.wait_for()
    await consent.get_by_text("would like to record this consultation").wait_for()
    await dpage.locator('#record-status[data-state="consent_pending"]').wait_for()
    await screenshot(cpage, "clinic-consent-dialog-en")
    await screenshot(dpage, "doctor-consent-pending-en")
    # keyboard only: "Do not record" has the focus
    assert await cpage.evaluate("document.activeElement.id") == "consent-refuse"
    await cpage.keyboard.press("Enter")
    await consent.wait_for(state="detached")

    status = dpage.locator('#record-status[data-state="consent_refused"]')
    await status.wait_for()
    assert "not being recorded" in await status.inner_text()
    await screenshot(dpage, "doctor-consent-refused-en")
    assert await dpage.locator("#rec-indicator").is_hidden()
    assert await cpage.locator("#rec-indicator").is_hidden()
    assert await dpage.get_by_role("button", name="Record (asks the clinic)").count() == 1

    await end_consult(doctor, clinic)
    assert doctor.errors == [] and clinic.errors == []


async def test_a_clinic_granting_consent_by_keyboard_starts_recording_seen_by_both(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    doctor, clinic = await consult_in_progress(browser, tongxin_node,
                                               "Rash on both arms, agrees to recording")
    dpage, cpage = doctor.page, clinic.page
    await dpage.get_by_role("button", name="Record (asks the clinic)").click()
    consent = cpage.locator("#consent-dialog")
    await consent.wait_for()
    await cpage.keyboard.press("Tab")  # from "Do not record" to "Allow recording"
    assert await cpage.evaluate("document.activeElement.id") == "consent-grant"
    await cpage.keyboard.press("Enter")
    await consent.wait_for(state="detached")
    for page in (dpage, cpage):
        await page.locator("#rec-indicator").get_by_text("Recording").wait_for()
    await dpage.locator('#record-status[data-state="recording_on"]').wait_for()
    await screenshot(cpage, "clinic-consult-recording-en")
    await dpage.get_by_role("button", name="Stop recording").click()
    for page in (dpage, cpage):
        await page.locator("#rec-indicator").wait_for(state="hidden")
    await dpage.get_by_role("button", name="Record (asks the clinic)").wait_for()
    await end_consult(doctor, clinic)
    assert doctor.errors == [] and clinic.errors == []
