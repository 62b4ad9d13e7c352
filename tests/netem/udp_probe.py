"""A bounded UDP sender and receiver, run inside the lab's namespaces by test_netlab.py.

    udp_probe.py send HOST PORT --count N --kbps R --size S   -> {"sent": n, "seconds": t}
    udp_probe.py recv PORT [--idle S] [--max-wait S]          -> "ready", then
        {"received": n, "unique": u, "bytes": b, "arrivals": [time.monotonic() of each]}

Each datagram starts with its sequence number (4 bytes). The receiver stops `--idle` seconds
after the last datagram, or `--max-wait` seconds after it started, whichever comes first.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time


def send(host: str, port: int, count: int, kbps: float, size: int) -> dict[str, float]:
    interval = size * 8 / (kbps * 1000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = next_at = time.monotonic()
        for seq in range(count):
            sock.sendto(seq.to_bytes(4, "big") + bytes(size - 4), (host, port))
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return {"sent": count, "seconds": time.monotonic() - start}


def receive(port: int, idle: float, max_wait: float) -> dict[str, object]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("0.0.0.0", port))
        print("ready", flush=True)
        deadline = time.monotonic() + max_wait
        seen: set[int] = set()
        arrivals: list[float] = []
        total = 0
        while True:
            now = time.monotonic()
            wait = deadline - now
            if arrivals:
                wait = min(wait, arrivals[-1] + idle - now)
            if wait <= 0:
                break
            sock.settimeout(wait)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            arrivals.append(time.monotonic())
            total += len(data)
            seen.add(int.from_bytes(data[:4], "big"))
        return {
            "received": len(arrivals),
            "unique": len(seen),
            "bytes": total,
            "arrivals": arrivals,
        }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    tx = sub.add_parser("send")
    tx.add_argument("host")
    tx.add_argument("port", type=int)
    tx.add_argument("--count", type=int, required=True)
    tx.add_argument("--kbps", type=float, required=True)
    tx.add_argument("--size", type=int, default=1000)
    rx = sub.add_parser("recv")
    rx.add_argument("port", type=int)
    rx.add_argument("--idle", type=float, default=1.0)
    rx.add_argument("--max-wait", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.mode == "send":
        result: dict[str, object] = dict(
            send(args.host, args.port, args.count, args.kbps, args.size)
        )
    else:
        result = receive(args.port, args.idle, args.max_wait)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
