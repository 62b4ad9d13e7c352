"""The `tongxin` command: `serve`, `bench …` and `client`.

Bad flags or values exit with code 2 and one line naming the setting and the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Sequence

from signaling.config import ConfigError, parse_serve_config, serve_parser

BENCHES = {
    "relay": ("media.bench_relay", "relay CPU per subscriber against aiortc's own path"),
    "broker": ("broker.bench_cli", "matching latency and claim throughput"),
    "weaklink": ("media.bench_weaklink", "QoE on impaired links, adaptation on vs off"),
    "load": ("signaling.bench_load", "many classes and consults on two nodes sharing Redis"),
    "soak": ("signaling.bench_soak", "resource use under constant churn"),
}


class OneLineParser(argparse.ArgumentParser):
    """Errors as one line and exit code 2 (argparse prints the whole usage otherwise)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _serve(argv: Sequence[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        serve_parser(argparse.ArgumentParser(prog="tongxin serve")).print_help()
        return 0
    try:
        config = parse_serve_config(argv, os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"tongxin serve: error: {exc}\n")
        return 2
    from signaling.node import serve_forever

    return serve_forever(config)


def _bench(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="tongxin bench", description="benchmarks (figures, not tests)")
    sub = parser.add_subparsers(dest="bench", required=True, parser_class=OneLineParser)
    for name, (_module, help_text) in BENCHES.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        try:
            module = importlib.import_module(BENCHES[name][0])
        except ModuleNotFoundError:
            continue
        module.configure_parser(p)
    args = parser.parse_args(list(argv))
    try:
        module = importlib.import_module(BENCHES[args.bench][0])
    except ModuleNotFoundError:
        sys.stderr.write(f"tongxin bench: error: the {args.bench} benchmark is not built yet\n")
        return 2
    result = asyncio.run(module.run(args))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            print(f"{key:>40}: {value}")
    return 0


def _client(argv: Sequence[str]) -> int:
    try:
        module = importlib.import_module("signaling.client_cli")
    except ModuleNotFoundError:
        sys.stderr.write("tongxin client: error: the client is not built yet\n")
        return 2
    return int(module.main(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"serve": _serve, "bench": _bench, "client": _client}
    if not args or args[0] in ("-h", "--help") or args[0] not in commands:
        out = sys.stdout if args and args[0] in ("-h", "--help") else sys.stderr
        out.write(
            "usage: tongxin {serve,bench,client} ...\n"
            "  serve   run the signaling server and media relay\n"
            "  bench   run a benchmark: " + ", ".join(BENCHES) + "\n"
            "  client  join a session from the command line with a join link\n"
        )
        if args and args[0] not in ("-h", "--help"):
            sys.stderr.write(f"tongxin: error: unknown command {args[0]!r}\n")
        return 0 if args and args[0] in ("-h", "--help") else 2
    return commands[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
