"""Prometheus metrics of a Tongxin node (names prefixed `tongxin_`), on one registry per app.

A registry per application keeps tests (many apps in one process) independent; `/metrics`
renders the app's registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.platform_collector import PlatformCollector

RUNGS = ("full", "reduced_fps", "low", "audio_only")


@dataclass(slots=True)
class NodeMetrics:
    """Every metric a node exports; see deploy/prometheus for the rules that read them."""

    registry: CollectorRegistry
    http_requests: Counter
    http_latency: Histogram
    websockets_open: Gauge
    sessions_live: Gauge
    participants: Gauge
    consult_queue_length: Gauge
    consult_wait: Histogram
    store_up: Gauge
    media_workers: Gauge
    media_workers_alive: Gauge
    media_rooms: Gauge
    media_transcoders: Gauge
    subscribers_by_rung: Gauge
    subscriber_loss: Histogram
    subscriber_rtt: Histogram
    subscriber_estimate: Histogram
    relay_packets_forwarded: Counter
    ws_errors: Counter
    node_info: Gauge
    rooms_served: Gauge
    trunk_peers: Gauge


def create_metrics() -> NodeMetrics:
    """A fresh registry with every Tongxin metric and the process collector."""
    r = CollectorRegistry(auto_describe=True)
    ProcessCollector(namespace="tongxin", registry=r)
    PlatformCollector(registry=r)
    ns = "tongxin"
    return NodeMetrics(
        registry=r,
        http_requests=Counter(
            "http_requests", "HTTP requests answered", ["route", "method", "status"],
            namespace=ns, registry=r,
        ),
        http_latency=Histogram(
            "http_request_duration_seconds", "HTTP request latency", ["route", "method"],
            namespace=ns, registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        ),
        websockets_open=Gauge("websockets_open", "Open WebSockets", namespace=ns, registry=r),
        sessions_live=Gauge("sessions_live", "Live sessions", ["kind"], namespace=ns, registry=r),
        participants=Gauge(
            "participants", "Participants connected to this node", ["role"],
            namespace=ns, registry=r,
        ),
        consult_queue_length=Gauge(
            "consult_queue_length", "Waiting consult requests", ["urgency"],
            namespace=ns, registry=r,
        ),
        consult_wait=Histogram(
            "consult_wait_seconds", "Time from consult request to admission",
            namespace=ns, registry=r, buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
        ),
        store_up=Gauge("store_up", "1 when the store answers", namespace=ns, registry=r),
        media_workers=Gauge("media_workers", "Media worker processes", namespace=ns, registry=r),
        media_workers_alive=Gauge(
            "media_workers_alive", "Media worker processes alive", namespace=ns, registry=r
        ),
        media_rooms=Gauge("media_rooms", "Rooms open on the relay", namespace=ns, registry=r),
        media_transcoders=Gauge(
            "media_transcoders", "Low renditions being transcoded (one per weak-watched camera)",
            namespace=ns, registry=r,
        ),
        subscribers_by_rung=Gauge(
            "subscribers_by_rung", "Subscribers on each adaptation rung", ["rung"],
            namespace=ns, registry=r,
        ),
        subscriber_loss=Histogram(
            "subscriber_loss_ratio", "Loss fraction reported by subscribers",
            namespace=ns, registry=r, buckets=(0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
        ),
        subscriber_rtt=Histogram(
            "subscriber_rtt_seconds", "Round-trip time to subscribers",
            namespace=ns, registry=r, buckets=(0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6),
        ),
        subscriber_estimate=Histogram(
            "subscriber_estimate_bps", "Downlink estimate of subscribers",
            namespace=ns, registry=r,
            buckets=(100e3, 200e3, 300e3, 500e3, 1e6, 2e6, 5e6),
        ),
        relay_packets_forwarded=Counter(
            "relay_packets_forwarded", "RTP packets forwarded by the relay", ["kind"],
            namespace=ns, registry=r,
        ),
        ws_errors=Counter(
            "websocket_errors", "Error frames sent on WebSockets", ["code"],
            namespace=ns, registry=r,
        ),
        node_info=Gauge(
            "node_info", "1, labelled with this node's id, media role and region (join on "
            "instance to read any figure per role or region)", ["node", "media_role", "region"],
            namespace=ns, registry=r,
        ),
        rooms_served=Gauge(
            "rooms_served", "Class rooms this node serves, as their origin or as an edge",
            ["part"], namespace=ns, registry=r,
        ),
        trunk_peers=Gauge(
            "trunk_peers", "Other nodes this node's rooms exchange media with (summed over "
            "rooms)", namespace=ns, registry=r,
        ),
    )
