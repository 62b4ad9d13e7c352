"""`tongxin bench …`: the benchmarks' command line (figures, not tests).

Each benchmark module offers `configure_parser(parser)` and `async run(args) -> dict`; this
module gives each one a subcommand and prints its result as one JSON object (`--json`), else
with the module's `render(result) -> str` when it has one, else as aligned lines.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Sequence

from signaling.cli import OneLineParser

BENCHES = {
    "relay": ("bench.relay", "relay CPU per subscriber against aiortc's own path"),
    "broker": ("bench.broker_cli", "matching latency and claim throughput"),
    "weaklink": ("bench.weaklink", "QoE on impaired links, adaptation on vs off"),
    "load": ("bench.load", "many classes and consults on two nodes sharing Redis"),
    "soak": ("bench.soak", "resource use under constant churn"),
    "recorder": ("bench.recorder", "CPU per recorded track on the live path"),
    "lecture": ("bench.lecture", "one teacher, an origin and edge nodes, many lean viewers"),
}
"""Subcommand -> (module, one-line help)."""


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="tongxin bench", description="benchmarks (figures, not tests)")
    sub = parser.add_subparsers(dest="bench", required=True, parser_class=OneLineParser)
    for name, (module_name, help_text) in BENCHES.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        importlib.import_module(module_name).configure_parser(p)
    args = parser.parse_args(list(argv))
    module = importlib.import_module(BENCHES[args.bench][0])
    result = asyncio.run(module.run(args))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    elif hasattr(module, "render"):
        print(module.render(result))
    else:
        for key, value in result.items():
            print(f"{key:>40}: {value}")
    return 0
