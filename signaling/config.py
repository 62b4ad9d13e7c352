"""Service configuration: command-line flags over `TONGXIN_*` environment variables over defaults.

`parse_serve_config` is pure (argv and environ in, `ServeConfig` out) and raises
`ConfigError` naming the setting that is wrong and why; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Everything `tongxin serve` needs to run."""

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8080
    """TCP port for HTTP and WebSocket."""
    redis_url: str | None = None
    """Shared store; None runs on the embedded in-memory store."""
    media_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Media worker processes; 0 runs media inside the signaling process."""
    demo: bool = True
    """Load the demo directory and print ready join links."""
    log_format: str = "text"
    """`text` or `json` (one JSON object a line)."""
    log_level: str = "INFO"
    """Python logging level name."""
    token_secret: str | None = None
    """Join-token signing secret; generated at start when absent (tokens die with the process)."""
    public_url: str | None = None
    """URL users open (printed links); derived from host and port when absent."""
    node_url: str | None = None
    """This node's own address, sent in `redirect` frames to the node holding a room (several
    nodes behind one service address each need one); the public URL when absent."""
    turn_urls: tuple[str, ...] = ()
    """TURN server URLs handed to clients (turn:host:3478?transport=udp)."""
    turn_secret: str | None = None
    """Shared secret of the TURN REST API (coturn static-auth-secret)."""
    data_dir: Path = Path("var")
    """Where recordings and other files live."""
    max_body_bytes: int = 1 << 20
    """Largest accepted HTTP request body."""
    rate_limit_per_minute: int = 600
    """Requests a client address may make per minute before getting 429."""
    tls_cert: Path | None = None
    """PEM certificate to serve HTTPS directly (else run behind a TLS proxy)."""
    tls_key: Path | None = None
    """PEM private key matching `tls_cert`."""
    adaptation: bool = True
    """Adapt each subscriber's video to its link; off forwards everything in full (benchmarks
    compare the two)."""
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Proxies whose X-Forwarded-For / Forwarded headers name the client (none by default:
    the direct peer is the client)."""
    consult_retention_days: int = 365
    """Days an ended consult's note and snapshots are kept before the retention sweep erases
    them."""

    recording_retention_days: int = 90
    """Days a recording is kept before the retention sweep deletes it."""
    media_role: str = "any"
    """This node's part in rooms that span nodes: `origin` (holds rooms and their publishers),
    `edge` (serves a spanned class's receivers), `any` (both); see signaling/spanning.py."""
    region: str | None = None
    """Where this node stands, as a directory region (`甘肃省/定西市`) or one of its names
    (`渭源县`): a class's receivers from sites of that region are served here first."""
    span_after: int = 100
    """A class's receivers go to edge nodes once the origin serves this many of the room's
    participants (0: always, when an edge node is alive)."""

    @property
    def display_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def placement_url(self) -> str:
        """Where clients reach this very node (its placement record and redirects)."""
        return self.node_url.rstrip("/") if self.node_url else self.display_url

    def effective_token_secret(self) -> str:
        return self.token_secret or secrets.token_urlsafe(32)


ENV_PREFIX = "TONGXIN_"
MEDIA_ROLES = ("origin", "edge", "any")
MAX_REGION_CHARS = 200
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class _ExitingParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def serve_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The flags of `tongxin serve` (all default to None so the environment can fill in)."""
    p = parser or _ExitingParser(prog="tongxin serve", add_help=False)
    p.add_argument("--host", help="interface to listen on (TONGXIN_HOST, default 127.0.0.1)")
    p.add_argument("--port", help="TCP port (TONGXIN_PORT, default 8080)")
    p.add_argument("--redis", dest="redis_url", help="Redis URL; absent = embedded store")
    p.add_argument("--media-workers", help="media worker processes (default: one per core)")
    p.add_argument("--demo", dest="demo", action="store_const", const="true",
                   help="load the demo directory (default)")
    p.add_argument("--no-demo", dest="demo", action="store_const", const="false",
                   help="start with an empty directory")
    p.add_argument("--log-format", help="text or json")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--public-url", help="URL printed in join links")
    p.add_argument("--node-url", help="this node's own URL for redirects between nodes "
                   "(TONGXIN_NODE_URL, default: the public URL)")
    p.add_argument("--data-dir", help="directory for recordings (default ./var)")
    p.add_argument("--tls-cert", help="PEM certificate to serve HTTPS")
    p.add_argument("--tls-key", help="PEM key for --tls-cert")
    p.add_argument("--adaptation", help="on (default) or off: per-subscriber bandwidth "
                   "adaptation (off is for side-by-side benchmarks)")
    p.add_argument("--trusted-proxies", help="CIDR,... of reverse proxies whose "
                   "X-Forwarded-For is believed (TONGXIN_TRUSTED_PROXIES, default none)")
    p.add_argument("--consult-retention-days", help="days an ended consult's note and "
                   "snapshots are kept (TONGXIN_CONSULT_RETENTION_DAYS, default 365)")
    p.add_argument("--recording-retention-days", help="days recordings are kept "
                   "(TONGXIN_RECORDING_RETENTION_DAYS, default 90)")
    p.add_argument("--media-role", help="origin, edge or any: this node's part in classes "
                   "spanning nodes (TONGXIN_MEDIA_ROLE, default any)")
    p.add_argument("--region", help="this node's region, a directory region such as "
                   "甘肃省/定西市 (TONGXIN_REGION, default none)")
    p.add_argument("--span-after", help="participants on a class's origin node before its "
                   "receivers go to edge nodes; 0 = always (TONGXIN_SPAN_AFTER, default 100)")
    return p


def _setting(flags: argparse.Namespace, env: Mapping[str, str], name: str) -> str | None:
    value = getattr(flags, name, None)
    if value is not None:
        return str(value)
    return env.get(ENV_PREFIX + name.upper())


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: {value} is out of range ({low}..{high})")
    return value


def _bool(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}: {raw!r} is not true/false")


def _host(raw: str) -> str:
    if not raw or any(c.isspace() for c in raw):
        raise ConfigError(f"host: {raw!r} is not a host name or address")
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        if not all(part and len(part) < 64 for part in raw.split(".")):
            raise ConfigError(f"host: {raw!r} is not a host name or address") from None
    return raw


def _redis_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in ("redis", "rediss", "unix") or not (parsed.hostname or parsed.path):
        raise ConfigError(
            f"redis: {raw!r} is not a Redis URL (expected redis://host:port/db or rediss://…)"
        )
    return raw


def _region(raw: str) -> str | None:
    region = raw.strip().strip("/")
    if not region:
        return None
    if len(region) > MAX_REGION_CHARS or any(c.isspace() or not c.isprintable() for c in region):
        raise ConfigError(f"region: {raw!r} must be a region name or path without spaces "
                          f"(at most {MAX_REGION_CHARS} characters)")
    return region


def _networks(name: str, raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {part.strip()!r} is not an address or CIDR") from None
    return tuple(networks)


def parse_serve_config(argv: Sequence[str], environ: Mapping[str, str]) -> ServeConfig:
    """Build the configuration from flags (first) and `TONGXIN_*` variables (second)."""
    flags = serve_parser().parse_args(list(argv))

    def get(name: str) -> str | None:
        return _setting(flags, environ, name)

    kwargs: dict[str, object] = {}
    if (raw := get("host")) is not None:
        kwargs["host"] = _host(raw)
    if (raw := get("port")) is not None:
        kwargs["port"] = _int("port", raw, 0, 65535)
    if (raw := get("redis_url")) is not None and raw != "":
        kwargs["redis_url"] = _redis_url(raw)
    if (raw := get("media_workers")) is not None:
        kwargs["media_workers"] = _int("media-workers", raw, 0, 64)
    if (raw := get("demo")) is not None:
        kwargs["demo"] = _bool("demo", raw)
    if (raw := get("log_format")) is not None:
        if raw not in ("text", "json"):
            raise ConfigError(f"log-format: {raw!r} must be text or json")
        kwargs["log_format"] = raw
    if (raw := get("log_level")) is not None:
        level = raw.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log-level: {raw!r} must be DEBUG, INFO, WARNING or ERROR")
        kwargs["log_level"] = level
    if (raw := get("public_url")) is not None:
        parsed = urlparse(raw)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"public-url: {raw!r} must be an http(s) URL")
        kwargs["public_url"] = raw
    if (raw := get("node_url")) is not None:
        parsed = urlparse(raw)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"node-url: {raw!r} must be an http(s) URL")
        kwargs["node_url"] = raw
    if (raw := get("adaptation")) is not None:
        kwargs["adaptation"] = _bool("adaptation", raw)
    if (raw := get("data_dir")) is not None:
        kwargs["data_dir"] = Path(raw)
    if (raw := get("trusted_proxies")) is not None:
        kwargs["trusted_proxies"] = _networks("trusted-proxies", raw)
    if (raw := get("consult_retention_days")) is not None:
        kwargs["consult_retention_days"] = _int("consult-retention-days", raw, 1, 36_500)
    if (raw := get("recording_retention_days")) is not None:
        kwargs["recording_retention_days"] = _int("recording-retention-days", raw, 1, 36_500)
    if (raw := get("media_role")) is not None:
        if raw not in MEDIA_ROLES:
            raise ConfigError(f"media-role: {raw!r} must be origin, edge or any")
        kwargs["media_role"] = raw
    if (raw := get("region")) is not None:
        kwargs["region"] = _region(raw)
    if (raw := get("span_after")) is not None:
        kwargs["span_after"] = _int("span-after", raw, 0, 1_000_000)
    if (raw := environ.get(ENV_PREFIX + "TOKEN_SECRET")) is not None:
        if len(raw.encode()) < 32:
            raise ConfigError("token-secret: TONGXIN_TOKEN_SECRET must be at least 32 bytes")
        kwargs["token_secret"] = raw
    if raw := environ.get(ENV_PREFIX + "TURN_URLS"):
        urls = tuple(u.strip() for u in raw.split(",") if u.strip())
        for url in urls:
            if not url.startswith(("turn:", "turns:", "stun:")):
                raise ConfigError(f"turn-urls: {url!r} must start with turn:, turns: or stun:")
        kwargs["turn_urls"] = urls
    if raw := environ.get(ENV_PREFIX + "TURN_SECRET"):
        kwargs["turn_secret"] = raw
    if (raw := environ.get(ENV_PREFIX + "MAX_BODY_BYTES")) is not None:
        kwargs["max_body_bytes"] = _int("max-body-bytes", raw, 1024, 1 << 30)
    if (raw := environ.get(ENV_PREFIX + "RATE_LIMIT_PER_MINUTE")) is not None:
        kwargs["rate_limit_per_minute"] = _int("rate-limit-per-minute", raw, 1, 1_000_000)
    cert, key = get("tls_cert"), get("tls_key")
    if bool(cert) != bool(key):
        raise ConfigError("tls: --tls-cert and --tls-key must be given together")
    if cert and key:
        for name, path in (("tls-cert", cert), ("tls-key", key)):
            if not Path(path).is_file():
                raise ConfigError(f"{name}: {path!r} is not a readable file")
        kwargs["tls_cert"], kwargs["tls_key"] = Path(cert), Path(key)
    return ServeConfig(**kwargs)  # type: ignore[arg-type]
