"""The `tongxin` command: `serve`, and the tools installed beside the server.

`serve` is this package's own. Other commands (`bench`, `client`) live in their own packages
and are found through the `tongxin.commands` entry points (pyproject.toml), so the service
imports none of them. Bad flags or values exit with code 2 and one line naming the setting and
the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from signaling.config import ConfigError, parse_serve_config, serve_parser

COMMAND_GROUP = "tongxin.commands"
"""Entry-point group of the commands installed beside `serve`: name -> `main(argv) -> int`."""

HELP = {
    "serve": "run the signaling server and media relay",
    "bench": "run a benchmark: relay, broker, weaklink, load, soak",
    "client": "join a session from the command line with a join link",
}


class OneLineParser(argparse.ArgumentParser):
    """Errors as one line and exit code 2 (argparse prints the whole usage otherwise)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def serve(argv: Sequence[str]) -> int:
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


def installed_commands() -> dict[str, Callable[[Sequence[str]], int]]:
    """`serve` and every command of the `tongxin.commands` entry points, loaded."""
    commands: dict[str, Callable[[Sequence[str]], int]] = {"serve": serve}
    for entry in entry_points(group=COMMAND_GROUP):
        commands.setdefault(entry.name, entry.load())
    return commands


def usage(names: Sequence[str]) -> str:
    lines = [f"usage: tongxin {{{','.join(names)}}} ..."]
    lines += [f"  {name:<7} {HELP.get(name, '')}".rstrip() for name in names]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":  # the service starts without loading the tools
        return serve(args[1:])
    commands = installed_commands()
    if args and args[0] in commands:
        return int(commands[args[0]](args[1:]))
    asked_for_help = bool(args) and args[0] in ("-h", "--help")
    (sys.stdout if asked_for_help else sys.stderr).write(usage(list(commands)))
    if args and not asked_for_help:
        sys.stderr.write(f"tongxin: error: unknown command {args[0]!r}\n")
    return 0 if asked_for_help else 2


if __name__ == "__main__":
    raise SystemExit(main())
