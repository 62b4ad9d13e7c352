"""Debian's Chromium as Tongxin drives it headless (e2e tests, the weak-link lab): where it is
and the flags that give it a fake camera, microphone and screen without prompts or sandbox.

Never `playwright install`: Playwright launches this binary (`executable_path=CHROMIUM`).
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--auto-select-desktop-capture-source=Entire screen",
    "--autoplay-policy=no-user-gesture-required",
]
