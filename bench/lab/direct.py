"""A direct Chromium-to-Chromium call across the weak-link lab, without the relay: the bar a
classroom holds Tongxin to (docs/measuring.md).

The same two browsers as the relay path (the teacher in the server namespace with the fake
camera playing the lab's clip, the classroom in the client namespace behind the impaired link)
open a plain page each (`DIRECT_PATH` on the lab's origin, answered by Playwright itself, so no
server runs and the origin counts as secure for the camera) and connect peer to peer: one
RTCPeerConnection each, the teacher's camera (640x360 ideal, 30 fps: the lab's clip) and
microphone added as they are, with Chromium's default encodings (no bitrate cap, no temporal
layers): a plain browser call. It is a two-way call, as the class it stands for: the classroom
sends its (fake) camera and microphone back, as the classroom does through the relay, so its
uplink carries the same load on both paths (the feedback about the teacher's video queues
behind it on a narrow uplink). Signaling goes through Playwright (offer and
answer with every ICE candidate gathered, no trickle). The classroom page samples its own
`getStats()` every 250 ms into `window.__weaklink` in the same shape as the relay path's
sampler (`bench.lab.browser.SAMPLER_JS`: tracks `camera` and `mic`), so `browser.collect` and
`bench.lab.qoe` read both paths alike.
"""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, Route

from bench.lab.browser import INBOUND_ROW_JS, JOIN_TIMEOUT_MS, SENDER_JS

DIRECT_PATH = "/direct-call"
"""The page both browsers open on the lab's origin (fulfilled by Playwright)."""
PAGE_HTML = """<!doctype html><meta charset="utf-8"><title>direct call</title>
<video id="v" autoplay playsinline muted></video><audio id="a" autoplay></audio>"""
CHROMIUM_DIRECT_ARGS = ["--disable-features=WebRtcHideLocalIpsWithMdns"]
"""Host candidates with their addresses (no mDNS names: the lab's namespaces resolve none)."""
GATHER_JS = """(pc) => new Promise((resolve) => {
  if (pc.iceGatheringState === 'complete') return resolve();
  const done = () => { if (pc.iceGatheringState === 'complete') resolve(); };
  pc.addEventListener('icegatheringstatechange', done);
  setTimeout(resolve, 5000);
})"""

TEACHER_OFFER_JS = (
    """async () => {
  const gathered = """
    + GATHER_JS
    + """;
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30, max: 30 } },
  });
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  window.__direct = { pc, stream };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  return pc.localDescription.sdp;
}"""
)

CLASSROOM_ANSWER_JS = (
    """async (offer) => {
  const gathered = """
    + GATHER_JS
    + """;
  const pc = new RTCPeerConnection();
  const own = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30, max: 30 } },
  });
  const video = document.getElementById('v');
  const audio = document.getElementById('a');
  const remote = new MediaStream();
  pc.ontrack = (e) => {
    remote.addTrack(e.track);
    video.srcObject = remote;
    audio.srcObject = remote;
    video.play().catch(() => {});
    audio.play().catch(() => {});
  };
  window.__direct = { pc };
  await pc.setRemoteDescription({ type: 'offer', sdp: offer });
  // the offered sendrecv transceivers carry the classroom's own camera and microphone back
  for (const track of own.getTracks()) pc.addTrack(track, own);
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  return pc.localDescription.sdp;
}"""
)

TEACHER_ANSWERED_JS = """async (answer) => {
  await window.__direct.pc.setRemoteDescription({ type: 'answer', sdp: answer });
}"""

SAMPLER_JS = """() => {
  if (window.__weaklink) return;
  const inboundRow = """ + INBOUND_ROW_JS + """;
  const state = { samples: [], links: [], notices: [], errors: 0 };
  window.__weaklink = state;
  const sample = async () => {
    const pc = window.__direct && window.__direct.pc;
    const row = { t: Date.now() / 1000, pc: pc ? pc.connectionState : 'none', tracks: {} };
    if (pc) {
      try {
        const stats = await pc.getStats();
        const codecs = {};
        for (const s of stats.values()) if (s.type === 'codec') codecs[s.id] = s.mimeType;
        for (const s of stats.values()) {
          if (s.type !== 'inbound-rtp') continue;
          const source = s.kind === 'video' ? 'camera' : 'mic';
          row.tracks[source] = { ...inboundRow(s), codec: codecs[s.codecId] || '' };
        }
      } catch (e) { state.errors += 1; }
    }
    state.samples.push(row);
  };
  state.timer = setInterval(sample, 250);
}"""

DIRECT_SENDER_JS = SENDER_JS.replace("window.tongxin?.room?.publisher?.pc", "window.__direct?.pc")


async def open_page(browser: Browser, origin: str, *, camera: bool) -> tuple[BrowserContext, Page]:
    """A fresh context on `origin` + DIRECT_PATH (fulfilled here: no server is asked)."""
    context = await browser.new_context(
        permissions=["camera", "microphone"] if camera else [],
    )

    async def fulfil(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body=PAGE_HTML)

    await context.route(f"{origin}{DIRECT_PATH}", fulfil)
    page = await context.new_page()
    await page.goto(f"{origin}{DIRECT_PATH}", timeout=JOIN_TIMEOUT_MS)
    return context, page


async def connect(teacher: Page, classroom: Page, timeout_s: float = 60.0) -> None:
    """Offer from the teacher, answer from the classroom (signaling through Playwright), then
    wait until the classroom's connection is up."""
    offer = await teacher.evaluate(TEACHER_OFFER_JS)
    answer = await classroom.evaluate(CLASSROOM_ANSWER_JS, offer)
    await teacher.evaluate(TEACHER_ANSWERED_JS, answer)
    await classroom.wait_for_function(
        "() => window.__direct && window.__direct.pc.connectionState === 'connected'",
        timeout=timeout_s * 1000,
    )


async def start_sampling(classroom: Page) -> None:
    """Start the 250 ms getStats sampler in the classroom page (`browser.collect` reads it)."""
    await classroom.evaluate(SAMPLER_JS)


async def sender_stats(teacher: Page) -> dict[str, Any]:
    """What the teacher's browser sends (as `bench.lab.browser.sender_stats`)."""
    try:
        return dict(await teacher.evaluate(DIRECT_SENDER_JS))
    except Exception:
        return {}


async def received_codec(classroom: Page) -> str:
    """The video codec the classroom receives (e.g. `video/VP8`), or ''."""
    for _ in range(8):
        codec = await classroom.evaluate(
            "() => { const s = window.__weaklink && window.__weaklink.samples;"
            " const r = s && s[s.length - 1];"
            " return r && r.tracks.camera ? r.tracks.camera.codec : ''; }"
        )
        if codec:
            return str(codec)
        await asyncio.sleep(0.25)
    return ""
