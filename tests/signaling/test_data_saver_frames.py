"""The data saver over the protocol: a participant's `data_saver` frame, the operator's site
default (`data_budget_mb_h` on the site), and hostile values (error frames, never a crash)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from client.ws import SignalingClient
from tests.helpers.running_node import RunningNode

pytestmark = pytest.mark.timeout(120)


async def budget_at_relay(node: RunningNode, session: str, participant: str) -> Any:
    described = await node.media.describe_room(session)
    return described["participants"][participant]["data_budget_mb_h"]


async def expect_data(client: SignalingClient, budget: float | None) -> dict[str, Any]:
    """The next `data` frame saying `budget` (periodic ones may come first)."""
    for _ in range(5):
        frame = await client.expect("data", timeout=10)
        if frame["budget_mb_h"] == budget:
            return frame
    raise AssertionError(f"no data frame with budget {budget}")


@pytest.mark.parametrize(
    "bad",
    [
        {"mb_per_hour": 0},
        {"mb_per_hour": 4},
        {"mb_per_hour": 2001},
        {"mb_per_hour": -100},
        {"mb_per_hour": "100"},
        {"mb_per_hour": True},
        {"mb_per_hour": [100]},
        '{"type": "data_saver", "mb_per_hour": 1e999}',  # JSON's largest number: infinity
        '{"type": "data_saver", "mb_per_hour": NaN}',
        {},
        {"mb_per_hour": 100, "extra": 1},
    ],
    ids=lambda b: str(b),
)
async def test_a_classroom_sets_and_clears_its_budget_and_bad_values_get_error_frames(
    node: RunningNode, bad: dict[str, Any] | str
) -> None:
    room = next(iter(node.demo.classroom_tokens))
    async with SignalingClient(node.base_url) as classroom:
        await classroom.exchange(node.demo.classroom_tokens[room])
        await classroom.connect()
        session = (await classroom.expect("session"))["id"]
        me = classroom.participant_id

        await classroom.send({"type": "data_saver", "mb_per_hour": 100})
        frame = await expect_data(classroom, 100)
        assert frame["used_mb"] >= 0 and frame["verdict"] in (None, "under", "limiting")
        assert await budget_at_relay(node, session, me) == 100

        if isinstance(bad, str):
            await classroom.ws.send_str(bad)  # type: ignore[union-attr]
        else:
            await classroom.send({"type": "data_saver", **bad})
        error = await classroom.expect("error", timeout=10)
        assert error["code"] == "invalid_frame"
        assert error["ref"] == "data_saver" or isinstance(bad, str)  # raw: may not decode
        assert await budget_at_relay(node, session, me) == 100, "the budget before stays"

        await classroom.send({"type": "data_saver", "mb_per_hour": None})
        await expect_data(classroom, None)
        assert await budget_at_relay(node, session, me) is None
        await classroom.send({"type": "ping", "t": 7.0})
        assert (await classroom.expect("pong"))["t"] == 7.0


async def test_the_operator_sets_a_sites_default_and_the_participants_own_choice_wins(
    node: RunningNode,
) -> None:
    room = next(iter(node.demo.classroom_tokens))
    async with SignalingClient(node.base_url) as operator, aiohttp.ClientSession() as http:
        await operator.exchange(node.demo.operator_token)
        headers = {"Authorization": f"Bearer {operator.credential}"}
        async with http.get(f"{node.base_url}/api/v1/sites", headers=headers) as resp:
            sites = {s["id"]: s for s in await resp.json()}
        async with SignalingClient(node.base_url) as probe:  # which site the link is for
            await probe.exchange(node.demo.classroom_tokens[room])
            site_id = probe.participant_id
        site = sites[site_id]
        url = f"{node.base_url}/api/v1/sites/{site_id}"
        for bad in (3, 2001, "50", 12.5):
            async with http.put(url, json={**site, "data_budget_mb_h": bad},
                                headers=headers) as resp:  # fmt: skip
                assert resp.status == 400, bad
                assert set((await resp.json())["error"]) == {"code", "message"}
        async with http.put(url, json={**site, "data_budget_mb_h": 50}, headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["data_budget_mb_h"] == 50

    async with SignalingClient(node.base_url) as classroom:
        await classroom.exchange(node.demo.classroom_tokens[room])
        await classroom.connect()
        session = (await classroom.expect("session"))["id"]
        assert await budget_at_relay(node, session, site_id) == 50
        await classroom.send({"type": "data_saver", "mb_per_hour": 200})
        await expect_data(classroom, 200)
        await classroom.send({"type": "data_saver", "mb_per_hour": None})
        await expect_data(classroom, 50)  # back to the site's default
        assert await budget_at_relay(node, session, site_id) == 50


async def test_a_budget_outside_a_session_is_refused(node: RunningNode) -> None:
    async with SignalingClient(node.base_url) as doctor:
        await doctor.exchange(node.demo.doctor_token)
        await doctor.connect()
        await doctor.send({"type": "data_saver", "mb_per_hour": 100})
        error = await doctor.expect("error", timeout=10)
        assert error["code"] == "not_in_session"
