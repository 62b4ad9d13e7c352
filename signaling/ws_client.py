"""A protocol client for Tongxin: exchange a join link, open `/ws`, send and await frames.

Used by `tongxin client`, by tests and by benchmarks; it speaks exactly PROTOCOL.md and holds
no media itself (media/peer_client.py does, driven through `on_offer`/`publish`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import aiohttp


class SignalingError(Exception):
    """The server answered with an error (HTTP error body or WebSocket error frame)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def split_join_link(link: str) -> tuple[str, str]:
    """(base URL, token) of `http(s)://host:port/join/<token>`."""
    parsed = urlparse(link)
    parts = parsed.path.rstrip("/").split("/")
    if len(parts) < 3 or parts[-2] != "join" or not parts[-1]:
        raise ValueError("not a join link: expected …/join/<token>")
    return f"{parsed.scheme}://{parsed.netloc}", parts[-1]


class SignalingClient:
    """One participant's signaling connection."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self.http = session or aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.grant: dict[str, Any] = {}
        self.welcome: dict[str, Any] = {}
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.history: list[dict[str, Any]] = []
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def credential(self) -> str:
        return str(self.grant["credential"])

    @property
    def participant_id(self) -> str:
        return str(self.grant["participant"]["id"])

    async def request(self, method: str, path: str, body: Any = None,
                      auth: bool = True, raw: bytes | None = None,
                      content_type: str = "application/json") -> Any:
        headers = {}
        if auth and self.grant:
            headers["Authorization"] = f"Bearer {self.credential}"
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            headers["Content-Type"] = content_type
        async with self.http.request(method, self.base_url + path, data=data,
                                     headers=headers) as resp:
            text = await resp.text()
            payload = json.loads(text) if text and resp.content_type == "application/json" else None
            if resp.status >= 400:
                err = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
                raise SignalingError(err.get("code", str(resp.status)), err.get("message", text))
            return payload

    async def exchange(self, token: str) -> dict[str, Any]:
        """Trade a join-link token for a session credential (POST /api/v1/session)."""
        self.grant = await self.request("POST", "/api/v1/session", {"token": token}, auth=False)
        return self.grant

    async def connect(self, resume: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Open /ws, send join, return the welcome frame."""
        ws_url = self.base_url.replace("http", "ws", 1) + "/ws"
        self.ws = await self.http.ws_connect(ws_url, heartbeat=None, max_msg_size=1 << 20)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        join: dict[str, Any] = {"type": "join", "credential": self.credential}
        if resume:
            join["resume"] = resume
        await self.send(join)
        self.welcome = await self.expect("welcome", timeout=timeout)
        return self.welcome

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None, "connect first"
        await self.ws.send_str(json.dumps(frame))

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            self.history.append(frame)
            for listener in list(self.listeners):
                listener(frame)
            await self.frames.put(frame)
        await self.frames.put({"type": "_closed", "code": self.ws.close_code})

    async def expect(self, kind: str, timeout: float = 10.0,
                     where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """The next frame of type `kind` (others are skipped); error frames raise."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frames.get()
                if frame["type"] == "error" and kind != "error":
                    raise SignalingError(frame["code"], frame["message"])
                if frame["type"] == "_closed" and kind != "_closed":
                    raise SignalingError("closed", f"connection closed ({frame['code']})")
                if frame["type"] == kind and (where is None or where(frame)):
                    return frame

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._own_session:
            await self.http.close()

    async def __aenter__(self) -> SignalingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
