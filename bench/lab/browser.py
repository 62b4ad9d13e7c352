"""Headless Chromium on either side of the weak-link lab: the teacher's browser on the server
side and the classroom's behind the impaired link, each joining through its join link.

Chromium runs inside a lab namespace through a wrapper script (`ip netns exec NS chromium`),
which Playwright launches as its executable: Playwright talks to it over a pipe, so the
browser needs no route back to the bench. The teacher's fake camera plays a y4m clip with real
motion (`camera_clip`, made once with PyAV and cached). The classroom page samples its own
down connection's `getStats()` every 250 ms into `window.__weaklink` (`SAMPLER_JS`), with the
adaptation events (`link`, `notice` frames) it receives; `collect` reads them back.
"""

from __future__ import annotations

import contextlib
import fractions
import os
import stat
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
from playwright.async_api import Browser, BrowserContext, Page, Playwright

from bench.lab.chromium import CHROMIUM, CHROMIUM_ARGS
from client.clip import VIDEO_SOURCE, cache_dir

CLIP_SECONDS = 10
CLIP_SIZE = (640, 360)
CLIP_FPS = 30
JOIN_TIMEOUT_MS = 60_000
LAB_CHROMIUM_ARGS = [
    *CHROMIUM_ARGS,
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
]
"""Measured pages must not be throttled as background tabs."""
SCREEN_BUTTON = "共享屏幕（课件）"
"""The teacher page's screen-share button (zh-CN)."""
CAMERA_CLIP_SOURCE = VIDEO_SOURCE + ",hue=H=2*PI*t/5"
"""A moving test picture with temporal noise and a hue sweep: every frame differs."""


def chromium_available() -> tuple[bool, str]:
    """Whether Debian's Chromium is there, and why not."""
    if os.access(CHROMIUM, os.X_OK):
        return True, CHROMIUM
    return False, f"{CHROMIUM} is missing (Debian package chromium)"


def camera_clip() -> Path:
    """The fake camera's y4m clip (640x360, 30 fps, 10 s, looped by Chromium), made once."""
    width, height = CLIP_SIZE
    path = cache_dir() / f"weaklink-camera-{width}x{height}-{CLIP_FPS}-{CLIP_SECONDS}s.y4m"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    source_graph = CAMERA_CLIP_SOURCE.format(w=width, h=height, fps=CLIP_FPS)
    with av.open(source_graph, format="lavfi") as source, av.open(
        str(tmp), "w", format="yuv4mpegpipe"
    ) as out:
        stream = out.add_stream("rawvideo", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(source.decode(video=0)):
            if i >= CLIP_SECONDS * CLIP_FPS:
                break
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, fractions.Fraction(1, CLIP_FPS)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    os.replace(tmp, path)
    return path


def namespace_wrapper(namespace: str, directory: Path) -> Path:
    """An executable that runs Chromium inside `namespace` with the arguments it is given."""
    path = directory / f"chromium-in-{namespace}.sh"
    path.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


async def launch_in(
    playwright: Playwright,
    namespace: str,
    origin: str,
    *,
    camera: Path | None = None,
    extra_args: Sequence[str] = (),
) -> Browser:
    """Chromium inside `namespace`, treating `origin` (plain http) as secure for the camera
    (and `extra_args` on its command line)."""
    args = [
        *LAB_CHROMIUM_ARGS,
        f"--unsafely-treat-insecure-origin-as-secure={origin}",
        *extra_args,
    ]
    if camera is not None:
        args.append(f"--use-file-for-fake-video-capture={camera}")
    wrapper_dir = Path(tempfile.mkdtemp(prefix="tongxin-weaklink-"))
    return await playwright.chromium.launch(
        executable_path=str(namespace_wrapper(namespace, wrapper_dir)),
        headless=True,
        args=args,
    )


PAGE_STATE_JS = """() => ({
  url: location.pathname,
  status: document.getElementById('status-text')?.textContent || '',
  main: (document.querySelector('main')?.innerText || '').replace(/\\s+/g, ' ').slice(0, 300),
  home: window.tongxin?.home || null,
  channel: window.tongxin?.channel?.state || null,
})"""
"""What a page shows, for saying why it did not get somewhere: its path, status line, the
start of its main area and its signaling channel's state."""
CONSOLE_KEPT = 20
CONSOLES: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()
"""Each joined page's console end (`keep_console`)."""


def keep_console(page: Page) -> list[str]:
    """The page's last console messages and uncaught errors (kept as they come)."""
    lines: list[str] = []

    def keep(line: str) -> None:
        lines.append(line[:300])
        del lines[:-CONSOLE_KEPT]

    page.on("console", lambda message: keep(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: keep(f"pageerror: {error}"))
    return lines


async def wait_on_page(page: Page, expression: str, what: str) -> Any:
    """`page.wait_for_function(expression)` within JOIN_TIMEOUT_MS; when it times out, an error
    saying `what` did not happen and what the page showed instead (and its console's end)."""
    try:
        return await page.wait_for_function(expression, timeout=JOIN_TIMEOUT_MS)
    except Exception as exc:
        state: Any = None
        with contextlib.suppress(Exception):
            state = await page.evaluate(PAGE_STATE_JS)
        console = CONSOLES.get(page, [])
        raise RuntimeError(
            f"{what} within {JOIN_TIMEOUT_MS / 1000:g} s ({type(exc).__name__});"
            f" the page showed {state}; console: {console[-8:]}"
        ) from exc


async def open_join(browser: Browser, link: str) -> tuple[BrowserContext, Page]:
    """A fresh context joined through `link` (?autojoin=1), once the role's page is up."""
    context = await browser.new_context(
        locale="zh-CN", viewport={"width": 1280, "height": 720},
        permissions=["camera", "microphone"],
    )
    page = await context.new_page()
    CONSOLES[page] = keep_console(page)
    separator = "&" if "?" in link else "?"
    await page.goto(f"{link}{separator}autojoin=1", timeout=JOIN_TIMEOUT_MS)
    await wait_on_page(
        page,
        "() => window.tongxin && window.tongxin.home && window.tongxin.channel",
        "the join page did not open the role's page",
    )
    return context, page


async def share_screen(page: Page) -> bool:
    """Click the teacher's screen-share button; whether it could be clicked."""
    try:
        await page.get_by_role("button", name=SCREEN_BUTTON).click(timeout=15_000)
    except Exception:
        return False
    return True


INBOUND_ROW_JS = """(s) => ({
  kind: s.kind, bytes: s.bytesReceived || 0, packets: s.packetsReceived || 0,
  lost: s.packetsLost || 0, frames: s.framesDecoded || 0,
  width: s.frameWidth || 0, height: s.frameHeight || 0,
  freezes: s.freezeCount || 0, freeze_s: s.totalFreezesDuration || 0,
  samples: s.totalSamplesReceived || 0, concealed: s.concealedSamples || 0,
  silent: s.silentConcealedSamples || 0, events: s.concealmentEvents || 0,
})"""
"""One received track of a `getStats()` inbound-rtp entry, as both paths' samplers record it
(`SAMPLER_JS` here, `bench.lab.direct.SAMPLER_JS`)."""

SAMPLER_JS = """(publisher) => {
  if (window.__weaklink) return;
  const inboundRow = """ + INBOUND_ROW_JS + """;
  const state = { samples: [], links: [], notices: [], errors: 0 };
  window.__weaklink = state;
  const channel = window.tongxin.channel;
  channel.on('link', (f) => state.links.push({ t: Date.now() / 1000, ...f }));
  channel.on('notice', (f) => state.notices.push({ t: Date.now() / 1000, code: f.code }));
  const sample = async () => {
    const room = window.tongxin.room;
    const pc = room && room.subscriber && room.subscriber.pc;
    const row = { t: Date.now() / 1000, pc: pc ? pc.connectionState : 'none',
                  ws: channel.state, tracks: {} };
    if (pc) {
      try {
        const tracks = room.subscriber.tracks || {};
        const stats = await pc.getStats();
        for (const s of stats.values()) {
          if (s.type !== 'inbound-rtp') continue;
          const who = tracks[s.mid];
          if (!who || (publisher && who.participant !== publisher)) continue;
          row.tracks[who.source] = inboundRow(s);
        }
      } catch (e) { state.errors += 1; }
    }
    state.samples.push(row);
  };
  state.timer = setInterval(sample, 250);
}"""


async def start_sampling(page: Page, publisher: str = "") -> None:
    """Start the 250 ms getStats sampler in the classroom page (tracks of `publisher` only)."""
    await page.evaluate(SAMPLER_JS, publisher)


async def collect(page: Page) -> dict[str, Any]:
    """Stop the sampler and return {samples, links, notices, errors}."""
    return dict(
        await page.evaluate(
            "() => { const s = window.__weaklink; if (!s) return {samples: [], links: [],"
            " notices: [], errors: 0}; clearInterval(s.timer);"
            " return {samples: s.samples, links: s.links, notices: s.notices, errors: s.errors}; }"
        )
    )


SENDER_JS = """async () => {
  const pc = window.tongxin?.room?.publisher?.pc;
  if (!pc) return {};
  const stats = await pc.getStats();
  const codecs = {};
  for (const s of stats.values()) if (s.type === 'codec') codecs[s.id] = s.mimeType;
  const out = {};
  for (const s of stats.values()) {
    if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) {
      out.estimate_kbps = Math.round(s.availableOutgoingBitrate / 1000);
    }
    if (s.type !== 'outbound-rtp') continue;
    const layer = s.rid ? `:${s.rid}` : '';
    const key = s.kind === 'audio' ? 'audio' : `video-${s.mid}${layer}`;
    out[key] = { codec: codecs[s.codecId] || '', scalability: s.scalabilityMode || '',
                 width: s.frameWidth || 0, height: s.frameHeight || 0,
                 fps: s.framesPerSecond || 0, kbytes: Math.round((s.bytesSent || 0) / 1000),
                 limited: s.qualityLimitationReason || '',
                 frames: s.framesEncoded || 0, keyframes: s.keyFramesEncoded || 0,
                 plis: s.pliCount || 0, nacks: s.nackCount || 0,
                 target_kbps: Math.round((s.targetBitrate || 0) / 1000) };
  }
  for (const t of pc.getTransceivers()) {
    for (const e of t.sender.getParameters().encodings || []) {
      const s = out[`video-${t.mid}:${e.rid}`];
      if (!e.rid || !s) continue;
      s.max_kbps = Math.round((e.maxBitrate || 0) / 1000);
      s.active = e.active !== false;
    }
  }
  return out;
}"""


async def sender_stats(page: Page) -> dict[str, Any]:
    """What the teacher's browser sends, per outbound stream (`video-<mid>`, `video-<mid>:<rid>`
    for each simulcast layer, `audio`): codec,
    scalability mode, size, frame rate, what limits its quality, frames and keyframes encoded,
    PLIs and NACKs received, the encoder's target and (simulcast layers) the sender's ceiling
    and whether the layer is active; and its send estimate."""
    with contextlib.suppress(Exception):
        return dict(await page.evaluate(SENDER_JS))
    return {}


async def participant_id(page: Page) -> str:
    """The page's own participant id, once welcomed."""
    handle = await wait_on_page(
        page,
        "() => window.tongxin?.channel?.welcome?.participant?.id || null",
        "the page was not welcomed",
    )
    return str(await handle.json_value())


async def close_quietly(*things: Any) -> None:
    """Close contexts and browsers, ignoring ones already gone."""
    for thing in things:
        if thing is not None:
            with contextlib.suppress(Exception):
                await thing.close()
