"""GET /api/v1/colleagues: a doctor sees the doctors of the directory with their duty (the
hand-over choices, and their own duty after a reload); other roles are refused."""

from __future__ import annotations

import aiohttp

from client.ws import SignalingClient


async def test_a_doctor_lists_colleagues_with_their_duty_and_sees_their_own_change(node):
    demo = node.demo
    async with SignalingClient(node.base_url) as doctor:
        await doctor.exchange(demo.doctor_token)
        listed = await doctor.request("GET", "/api/v1/colleagues")
        by_id = {c["id"]: c for c in listed}
        assert demo.doctor_id in by_id and len(by_id) > 1
        assert set(by_id[demo.doctor_id]) == {"id", "name", "specialties", "on_duty"}
        assert by_id[demo.doctor_id]["on_duty"] is True

        await doctor.request("POST", f"/api/v1/experts/{demo.doctor_id}/duty",
                             {"on_duty": False})
        listed = await doctor.request("GET", "/api/v1/colleagues")
        assert {c["id"]: c["on_duty"] for c in listed}[demo.doctor_id] is False


async def test_a_clinic_may_not_list_doctors(node):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{node.base_url}/api/v1/session",
                             json={"token": node.demo.clinic_token}) as response:
            credential = (await response.json())["credential"]
        async with http.get(f"{node.base_url}/api/v1/colleagues",
                            headers={"Authorization": f"Bearer {credential}"}) as response:
            assert response.status == 403
