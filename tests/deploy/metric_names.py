"""The metric names Tongxin exports, and the metric names a PromQL expression reads.

deploy/ (alert rules, dashboard, autoscaler) may only read these; a rule or panel on a name
no node exports would stay silent or empty forever.
"""

from __future__ import annotations

import re

COUNTERS = ("tongxin_http_requests_total", "tongxin_relay_packets_forwarded_total",
            "tongxin_process_cpu_seconds_total", "tongxin_media_cpu_seconds_total")  # fmt: skip
GAUGES = (
    "tongxin_websockets_open",
    "tongxin_sessions_live",
    "tongxin_participants",
    "tongxin_consult_queue_length",
    "tongxin_store_up",
    "tongxin_media_workers_alive",
    "tongxin_media_workers",
    "tongxin_media_rooms",
    "tongxin_subscribers_by_rung",
    "tongxin_process_resident_memory_bytes",
    "tongxin_node_info",
    "tongxin_rooms_served",
    "tongxin_trunk_peers",
)
HISTOGRAMS = (
    "tongxin_http_request_duration_seconds",
    "tongxin_consult_wait_seconds",
    "tongxin_subscriber_loss_ratio",
    "tongxin_subscriber_rtt_seconds",
    "tongxin_subscriber_estimate_bps",
)
PROMETHEUS_OWN = ("up",)
"""Series Prometheus makes for every target it scrapes."""

KNOWN_SERIES: frozenset[str] = frozenset(
    [*COUNTERS, *GAUGES, *PROMETHEUS_OWN]
    + [f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_count", "_sum")]
)
"""Every series name a node (or Prometheus, for `up`) exports."""

KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
     "offset", "bool", "inf", "nan", "atan2"}
)  # fmt: skip

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects (functions, keywords, labels and variables left out)."""
    text = _STRING.sub('""', expr)
    text = _LABEL_LISTS.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names
