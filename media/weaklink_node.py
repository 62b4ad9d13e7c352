"""A diagnostic node for the weak-link bench: `tongxin serve` with aiortc's own receive-side
bandwidth estimator (its REMB) switched off on every receiver of the process.

Why: the relay's uplinks are aiortc receivers, whose delay-based estimator sends the publisher
REMB computed from when the relay's event loop handled each packet; on a loaded machine that
pins a browser publisher's send estimate at 60-200 kbit/s even on a good link (measured by the
bench, `teacher_sends`). `tongxin bench weaklink --uplink-remb off` runs this instead of the
normal node (media in-process: `--media-workers 0`, so the switch reaches the relay) to show
what adaptation does when the teacher really sends full quality. Not for production.

    python -m media.weaklink_node serve --host 10.77.0.1 ...   (the arguments of tongxin)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def disable_receiver_remb() -> None:
    """Every RTCRtpReceiver created from now on in this process sends no REMB of its own."""
    from aiortc import rtcrtpreceiver

    original = rtcrtpreceiver.RTCRtpReceiver.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._RTCRtpReceiver__remote_bitrate_estimator = None

    rtcrtpreceiver.RTCRtpReceiver.__init__ = init  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    disable_receiver_remb()
    from signaling.cli import main as tongxin

    return tongxin(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
