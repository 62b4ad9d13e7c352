"""A protocol client for Tongxin: exchange a join link, open `/ws`, send and await frames.

It follows `redirect` frames to the node holding its session and, with `recover=True`,
rejoins through another address when its node goes away; listeners then get a `_moved`
pseudo-frame (before the new node's first frame) so media can be rebuilt.

Used by `tongxin client`, by tests and by benchmarks; it speaks exactly PROTOCOL.md and holds
no media itself (client/peer.py does, driven through `on_offer`/`publish`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlparse

import aiohttp

RECOVER_S = 30.0
"""How long a client keeps trying to rejoin after its node went away."""
RECOVER_PAUSE_S = 0.3
HEARTBEAT_S = 15.0
"""Ping period when the welcome names none (the node closes a connection silent for 3x it)."""


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

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None, *,
                 follow: bool = True, recover: bool = False,
                 fallback_urls: tuple[str, ...] = ()) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin_url = self.base_url
        self.follow = follow
        """Follow `redirect` frames to the node holding the session."""
        self.recover = recover
        """On a lost connection, rejoin through base, fallback and origin URLs."""
        self.fallback_urls = tuple(u.rstrip("/") for u in fallback_urls)
        self._closing = False
        self._moves: set[asyncio.Task[None]] = set()
        self._own_session = session is None
        self.http = session or aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.grant: dict[str, Any] = {}
        self.welcome: dict[str, Any] = {}
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.history: list[dict[str, Any]] = []
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

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
        return await self._open(self.base_url, resume=resume, timeout=timeout)

    async def _open(self, base_url: str, resume: str | None = None, timeout: float = 10.0,
                    moved: bool = False) -> dict[str, Any]:
        """Connect to `base_url`, join, read the welcome; then the reader takes over."""
        ws_url = base_url.replace("http", "ws", 1) + "/ws"
        ws = await self.http.ws_connect(ws_url, heartbeat=None, max_msg_size=1 << 20)
        join: dict[str, Any] = {"type": "join", "credential": self.credential}
        if resume:
            join["resume"] = resume
        try:
            await ws.send_str(json.dumps(join))
            msg = await ws.receive(timeout=timeout)
            text = msg.type == aiohttp.WSMsgType.TEXT
            frame: dict[str, Any] | None = json.loads(msg.data) if text else None
        except BaseException:
            await ws.close()
            raise
        if frame is None or frame.get("type") != "welcome":
            await ws.close()
            if frame is not None:
                self.history.append(frame)  # raised below, so not queued for `expect`
            if frame is not None and frame.get("type") == "error":
                raise SignalingError(frame["code"], frame["message"])
            raise SignalingError("closed", f"connection closed ({ws.close_code})")
        self.ws = ws
        self.base_url = base_url
        self.welcome = frame
        if moved:
            self._deliver({"type": "_moved", "url": base_url})
        self._deliver(frame)
        self._reader = asyncio.get_running_loop().create_task(self._read(ws))
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        return frame

    async def _beat(self) -> None:
        """`ping` (without `t`: its `pong` is not delivered) every `heartbeat_s` of the welcome,
        as a browser does: a node closes a connection that stays silent for three periods."""
        while not self._closing:
            await asyncio.sleep(float(self.welcome.get("heartbeat_s") or HEARTBEAT_S))
            ws = self.ws
            if ws is not None and not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str('{"type": "ping"}')

    async def send(self, frame: dict[str, Any]) -> None:
        if self.ws is None:
            raise SignalingError("closed", "not connected (moving to another node?)")
        await self.ws.send_str(json.dumps(frame))

    def _deliver(self, frame: dict[str, Any]) -> None:
        self.history.append(frame)
        for listener in list(self.listeners):
            listener(frame)
        self.frames.put_nowait(frame)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame.get("type") == "pong" and frame.get("t") is None:
                continue  # the answer to our own heartbeat
            self._deliver(frame)
            if frame["type"] == "redirect" and self.follow:
                self._spawn(self._move(str(frame["url"])))
                return
        if ws is not self.ws or self._closing:
            return
        if self.recover:
            self.ws = None
            self._spawn(self._recover())
            return
        self.frames.put_nowait({"type": "_closed", "code": ws.close_code})

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._moves.add(task)
        task.add_done_callback(self._moves.discard)

    async def _move(self, url: str) -> None:
        """Follow a `redirect`: leave this node and join the one holding the session."""
        old, self.ws = self.ws, None
        if old is not None:
            await old.close()
        try:
            await self._open(url.rstrip("/"), moved=True)
        except (SignalingError, aiohttp.ClientError, OSError, TimeoutError):
            await asyncio.sleep(RECOVER_PAUSE_S)  # e.g. the holder just died: not a tight loop
            await self._recover()

    async def _recover(self) -> None:
        """The node went away: rejoin through the known addresses (current, fallbacks, the
        first one) until one takes us, for up to `RECOVER_S`; `_closed` when none does."""
        candidates = list(dict.fromkeys([self.base_url, *self.fallback_urls, self.origin_url]))
        deadline = asyncio.get_running_loop().time() + RECOVER_S
        while not self._closing and asyncio.get_running_loop().time() < deadline:
            for url in candidates:
                try:
                    await self._open(url, moved=True, timeout=5.0)
                    return
                except SignalingError as exc:
                    if exc.code not in ("closed", "store_unavailable", "media_unavailable"):
                        self.frames.put_nowait({"type": "_closed", "code": None})
                        return
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
            await asyncio.sleep(RECOVER_PAUSE_S)
        self.frames.put_nowait({"type": "_closed", "code": None})

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
        self._closing = True
        for task in list(self._moves):
            task.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
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
