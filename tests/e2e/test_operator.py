"""The operator dashboard in real Chromium against a real node: adding an expert to the
directory and scheduling a class that hands out one join link per classroom."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.e2e.browser import open_page, screenshot
from tests.e2e.flows import wait_role_page
from tests.e2e.node import TongxinNode

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]


async def test_operator_adds_an_expert_and_schedules_a_class(
    browser: Browser, tongxin_node: TongxinNode
) -> None:
    watched = await open_page(browser, locale="en-US")
    page = watched.page
    await page.goto(tongxin_node.link("运维"))
    await wait_role_page(page)

    await page.get_by_role("tab", name="Experts").click()
    await page.get_by_role("button", name="Add expert").click()
    dialog = page.locator("dialog")
    await dialog.get_by_label("Id").fill("d-e2e-li")
    await dialog.get_by_label("Name").fill("李医生")
    await dialog.get_by_label("Specialties").fill("皮肤科")
    await dialog.get_by_role("button", name="Save").click()
    await page.locator("#operator-panel td", has_text="李医生").wait_for()

    await page.get_by_role("tab", name="Classes").click()
    await page.get_by_role("button", name="Schedule a class").click()
    await dialog.get_by_label("Title").fill("五年级科学：植物的一生")
    await dialog.get_by_label("Subject").fill("科学")
    checks = dialog.get_by_role("checkbox")
    await checks.nth(0).check()
    await checks.nth(1).check()
    await dialog.get_by_role("button", name="Schedule", exact=True).click()
    scheduled = page.locator(".scheduled")
    await scheduled.wait_for()
    links = [await f.input_value() for f in await scheduled.locator(".link-field").all()]
    assert len(links) == 3  # the teacher's and one per classroom
    assert all("/join/" in link for link in links)
    await page.locator("#operator-panel td", has_text="五年级科学：植物的一生").wait_for()
    await screenshot(page, "operator-classes-en")
    assert watched.errors == []
