"""A remote consultation (远程会诊) in real Chromium: a clinic requests, a doctor on duty sees
it, takes it and admits the clinic; both see and hear each other; the doctor's full-resolution
snapshot is stored; the doctor ends with an outcome and the clinic is told."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.e2e.browser import screenshot, wait_audio_from, wait_for, wait_video_playing
from tests.e2e.flows import join, main_video, participant_id
from tests.e2e.node import TongxinNode

pytestmark = [
    pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240),
]

FETCH_SNAPSHOT = """async (url) => {
  const saved = JSON.parse(sessionStorage.getItem('tongxin.session'));
  const r = await fetch(url, { headers: { Authorization: `Bearer ${saved.credential}` } });
  const body = await r.arrayBuffer();
  return { status: r.status, type: r.headers.get('content-type'), bytes: body.byteLength };
}"""


async def test_consult_from_request_to_outcome(browser: Browser, tongxin_node: TongxinNode) -> None:
    doctor = await join(browser, tongxin_node.link("医生"), locale="en-US")
    clinic = await join(browser, tongxin_node.link("村卫生室"), locale="en-US")
    dpage, cpage = doctor.page, clinic.page

    duty = dpage.get_by_role("button", name="Off duty")
    if await duty.count():
        await duty.click()
    await dpage.get_by_role("button", name="On duty").wait_for()

    await cpage.get_by_label("Specialty").select_option("内科")  # 张医生's specialty
    await cpage.get_by_role("radio", name="Urgent", exact=True).check()
    await cpage.get_by_label("Reason").fill("Wound on the left leg, swelling since two days")
    await cpage.get_by_role("button", name="Request consultation").click()
    await cpage.locator("#waiting-room").wait_for()
    await cpage.locator("#queue-position").filter(has_text="1").wait_for()
    await screenshot(cpage, "clinic-waiting-en")

    item = dpage.locator(".queue-item").filter(has_text="Wound on the left leg")
    await item.get_by_role("button", name="Take").click()
    await item.get_by_role("button", name="Admit").click()

    clinic_id = await participant_id(cpage)
    doctor_id = await participant_id(dpage)
    await wait_video_playing(dpage, main_video(clinic_id))
    await wait_video_playing(cpage, main_video(doctor_id))
    await wait_audio_from(dpage, clinic_id)
    await wait_audio_from(cpage, doctor_id)

    await dpage.get_by_label("Short note").fill("Cleaned; antibiotics for 5 days")
    await dpage.get_by_role("button", name="Take full-resolution snapshot").click()
    shot = dpage.locator("#snapshot-list li").first
    await shot.wait_for()
    native = await dpage.evaluate(
        "() => { const v = document.querySelector('.tile-main video');"
        " return `${v.videoWidth}×${v.videoHeight}`; }")
    assert await shot.locator(".snapshot-size").inner_text() == native
    url = await shot.get_attribute("data-url")
    assert url
    stored = await dpage.evaluate(FETCH_SNAPSHOT, url)
    assert stored["status"] == 200 and stored["bytes"] > 1000
    assert stored["type"].startswith("image/jpeg")
    await screenshot(dpage, "doctor-consult-en")

    # hand over offers the colleagues on duty, the same specialty (内科) first; cancelled here
    await dpage.get_by_role("button", name="Hand over").click()
    dialog = dpage.locator("dialog")
    choices = dialog.get_by_label("Expert").locator("option")
    await choices.first.wait_for(state="attached")  # the dialog opens once colleagues are fetched
    options = await choices.all_inner_texts()
    assert options and options[0].startswith("吴医生") and not any("张医生" in o for o in options)
    await dialog.get_by_role("button", name="Cancel").click()
    await dialog.wait_for(state="detached")

    await dpage.get_by_role("button", name="End consultation").click()
    await dialog.get_by_label("Outcome").select_option("referred")
    await dialog.get_by_role("button", name="End consultation").click()
    await cpage.get_by_role("heading", name="The consultation has ended").wait_for()
    await cpage.get_by_text("Referred").wait_for()
    await screenshot(cpage, "clinic-ended-en")

    async def doctor_back() -> bool:
        return await dpage.get_by_role("heading", name="The consultation has ended").count() > 0

    await wait_for(doctor_back, within=30, what="the doctor's end notice")
    for watched in (doctor, clinic):
        assert watched.errors == []


async def test_doctor_duty_survives_a_reload(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    doctor = await join(browser, tongxin_node.link("医生"), locale="en-US")
    page = doctor.page
    duty = page.locator("#duty-button")
    await page.get_by_role("button", name="On duty").wait_for()  # the demo doctor is on duty
    await duty.click()
    await page.get_by_role("button", name="Off duty").wait_for()
    await page.reload()
    await page.locator("#queue-list").wait_for(state="attached")
    await page.get_by_role("button", name="Off duty").wait_for()
    assert await duty.get_attribute("aria-pressed") == "false"
    await duty.click()
    await page.get_by_role("button", name="On duty").wait_for()

    assert doctor.errors == []
