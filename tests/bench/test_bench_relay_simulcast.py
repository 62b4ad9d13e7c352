"""`tongxin bench relay --publisher simulcast`: the subscribers' layer mix, how each declares
its layer, the per-layer figures (their shape and arithmetic, never a measured figure), and
the benchmark end to end at a tiny scale."""

from __future__ import annotations

import argparse

import pytest

from bench import relay as bench_relay
from bench.simulcast_layers import (
    capped_answer,
    layer_mix,
    layer_of,
    layer_summary,
    preferred_layers,
)
from media.peers.sdp_bandwidth import declared_max_bps

ANSWER = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP 96\r\na=mid:0\r\n"


@pytest.mark.parametrize(
    ("text", "mix"),
    [("q,h,f", ["q", "h", "f"]), ("f", ["f"]), (" q , q,f ", ["q", "q", "f"])],
)
def test_the_layer_mix_is_a_list_of_rids(text: str, mix: list[str]) -> None:
    assert layer_mix(text) == mix


@pytest.mark.parametrize("text", ["", "q,x", "720p"])
def test_an_unknown_rid_in_the_mix_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        layer_mix(text)


def test_subscribers_prefer_the_mix_in_turn() -> None:
    ids = [f"s{i}" for i in range(5)]
    assert preferred_layers(ids, ["q", "h", "f"]) == {
        "s0": "q", "s1": "h", "s2": "f", "s3": "q", "s4": "h"
    }


@pytest.mark.parametrize("kbps", [300, 1000])
def test_a_capped_answer_declares_the_layers_bandwidth_as_the_relay_reads_it(kbps: int) -> None:
    capped = capped_answer(ANSWER, kbps)
    assert declared_max_bps(capped) == kbps * 1000
    assert capped.index("b=AS") < capped.index("t=0 0") < capped.index("m=video")
    assert declared_max_bps(capped_answer(capped, 50)) == 50_000, "replaced, not added"


@pytest.mark.parametrize(
    ("height", "rid"), [(180, "q"), (360, "h"), (720, "f"), (None, "none"), (240, "other")]
)
def test_a_subscribers_layer_is_read_from_its_keyframes_height(
    height: int | None, rid: str
) -> None:
    assert layer_of(height) == rid


def test_the_relays_cpu_is_attributed_to_layers_by_packets_forwarded() -> None:
    out = layer_summary(
        ids=["s0", "s1", "s2", "s3"],
        preferred={"s0": "q", "s1": "h", "s2": "f", "s3": "q"},
        heights=[180, 720, 720, 180],
        video_frames=[300, 300, 150, 300],
        audio_frames=[500, 500, 500, 500],
        sent_video=300,
        packets_per_frame={"q": 1.0, "f": 5.0},
        cpu_ms=4000.0,
        window_s=10.0,
    )
    assert list(out) == ["q", "f"]
    assert out["q"]["subscribers"] == 2 and out["q"]["preferred_it"] == 2
    assert out["f"]["subscribers"] == 2 and out["f"]["preferred_it"] == 1
    assert out["f"]["video_delivered_pct"] == 75.0
    # packets: q 2 x (300 + 500) = 1600; f (1500 + 500) + (750 + 500) = 3250; of 4850
    assert out["q"]["cpu_ms_per_subscriber_second_attributed"] == pytest.approx(
        4000 * 1600 / 4850 / 20, abs=1e-3
    )
    assert out["f"]["cpu_ms_per_subscriber_second_attributed"] == pytest.approx(
        4000 * 3250 / 4850 / 20, abs=1e-3
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_the_simulcast_benchmark_reports_each_layer_on_and_off() -> None:
    parser = argparse.ArgumentParser()
    bench_relay.configure_parser(parser)
    args = parser.parse_args(
        ["--subscribers", "3", "--duration", "2", "--warmup", "1", "--loadgens", "1",
         "--no-baseline", "--publisher", "simulcast", "--adaptation", "both"]
    )
    result = await bench_relay.run(args)
    assert result["publisher"] == "simulcast"
    assert result["clip"]["layer_mix"] == ["q", "h", "f"]
    assert set(result["clip"]["video_kbps"]) == {"q", "h", "f"}
    for side in ("layers_on", "layers_off"):
        layers = result[side]
        assert sum(layer["subscribers"] for layer in layers.values()) == 3, layers
        for layer in layers.values():
            assert set(layer) == {
                "subscribers", "preferred_it", "video_delivered_pct", "packets_per_frame",
                "cpu_ms_per_subscriber_second_attributed",
            }
    assert "on_off_cpu_ratio" in result
    for key in ("other_threads_cpu_ms_per_subscriber_second", "loadgen_stalls",
                "loadgen_stall_max_ms"):
        assert key in result, key
    assert all("layers" in run for run in result["adaptation_runs"])
