"""A subscriber's declared bandwidth: session-level b=AS / b=TIAS, else its video m-lines'."""

from __future__ import annotations

import pytest

from media.peers.sdp_bandwidth import declared_max_bps

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n"
MEDIA = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nb=AS:50\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nb=AS:64\r\n"
BARE = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"
REJECTED = "m=video 0 UDP/TLS/RTP/SAVPF 96\r\n"


@pytest.mark.parametrize(
    ("sdp", "bps"),
    [
        # every received video m-line declares: their sum
        (HEAD + "t=0 0\r\n" + MEDIA, 50_000.0),
        (HEAD + "t=0 0\r\n" + AUDIO + MEDIA + REJECTED + MEDIA, 100_000.0),
        # one does not: no bound
        (HEAD + "t=0 0\r\n" + MEDIA + BARE, None),
        (HEAD + "t=0 0\r\n" + AUDIO, None),
        # the session's bound wins
        (HEAD + "b=AS:350\r\nt=0 0\r\n" + MEDIA, 350_000.0),
        (HEAD + "b=TIAS:250000\r\nt=0 0\r\n", 250_000.0),
        (HEAD + "b=AS:350\r\nb=TIAS:250000\r\nt=0 0\r\n", 250_000.0),
        (HEAD + "b=AS:0\r\nt=0 0\r\n", None),
        (HEAD + "b=AS:lots\r\nt=0 0\r\n", None),
        ("", None),
    ],
)
def test_declared_max_bps(sdp: str, bps: float | None) -> None:
    assert declared_max_bps(sdp) == bps
