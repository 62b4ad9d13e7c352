"""A node's background gauges: store reachability, live sessions, the consult queue, media.

Prometheus scrapes can come from anywhere and alert rules must not fire because nobody polled
/readyz, so one task refreshes these every `GAUGE_INTERVAL_S`. Session and queue counts are
global (read from the shared store, the same on every node; rules take their max), media,
participants and the rooms served (as origin or edge, with their trunk peers) are this node's
own (rules sum them; `tongxin_node_info` names the node's media role and region).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from broker.class_state import ClassState
from broker.consult_state import ConsultState
from broker.errors import StoreUnavailable
from broker.models import Urgency
from signaling.appkeys import HUB, MEDIA, METRICS, SERVICES, STORE
from signaling.cancellation import cancel_and_wait
from signaling.metrics import RUNGS, NodeMetrics
from signaling.proc_cpu import descendants_cpu_seconds

log = logging.getLogger("tongxin.gauges")

GAUGE_INTERVAL_S = 10.0
PROBE_TIMEOUT_S = 2.0


async def refresh_gauges(app: web.Application) -> None:
    """Read everything once and set the gauges (never raises)."""
    metrics: NodeMetrics = app[METRICS]
    try:
        await asyncio.wait_for(app[STORE].ping(), PROBE_TIMEOUT_S)
        metrics.store_up.set(1)
    except (TimeoutError, StoreUnavailable, OSError):
        metrics.store_up.set(0)
        return
    services = app.get(SERVICES)
    if services is not None:
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            live = await services.classes.list_classes(state=ClassState.LIVE)
            metrics.sessions_live.labels("class").set(len(live))
            admitted = await services.consults.list_open(state=ConsultState.ADMITTED)
            metrics.sessions_live.labels("consult").set(len(admitted))
            waiting = await services.consults.list_open(state=ConsultState.WAITING)
            waiting += await services.consults.list_open(state=ConsultState.ESCALATED)
            counts = Counter(t.urgency.value for t in waiting)
            for urgency in Urgency:
                metrics.consult_queue_length.labels(urgency.value).set(counts[urgency.value])
    hub = app.get(HUB)
    if hub is not None and hub.serving is not None and hub.placement is not None:
        rooms = hub.serving.rooms
        held = hub.placement.held
        metrics.rooms_served.labels("origin").set(sum(1 for r in rooms if r in held))
        metrics.rooms_served.labels("edge").set(sum(1 for r in rooms if r not in held))
        metrics.trunk_peers.set(sum(len(r.peers or ()) for r in rooms.values()))
    media = app.get(MEDIA)
    if media is not None:
        try:
            health = await asyncio.wait_for(media.health(), PROBE_TIMEOUT_S)
        except Exception:  # the media side may fail in any way; the gauge says so
            metrics.media_workers_alive.set(0)
            return
        metrics.media_workers.set(int(health.get("workers", 0)))
        metrics.media_workers_alive.set(int(health.get("alive", health.get("workers", 0))))
        metrics.media_rooms.set(int(health.get("rooms", 0)))
        metrics.media_transcoders.set(int(health.get("transcoders", 0)))
        rungs = health.get("rungs") or {}
        for rung in RUNGS:
            metrics.subscribers_by_rung.labels(rung).set(int(rungs.get(rung, 0)))


async def gauge_loop(app: web.Application) -> None:
    while True:
        try:
            await refresh_gauges(app)
        except Exception:
            log.exception("gauge refresh failed")
        await asyncio.sleep(GAUGE_INTERVAL_S)


def running_task_count() -> int:
    """Tasks of the running event loop (0 when called outside one, e.g. a scrape in a test)."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return 0


class MediaCpuCollector(Collector):
    """`tongxin_media_cpu_seconds_total`: CPU time of the node's child processes (its media
    workers), read from /proc at scrape time. `tongxin_process_cpu_seconds_total` counts the
    signaling process alone, while the relay's work is in the workers (the load benchmark
    measured 70-85 % of a node's CPU there). A worker that dies takes its seconds along:
    `rate()` sees a counter reset."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "tongxin_media_cpu_seconds", "CPU seconds of the node's media worker processes",
            value=descendants_cpu_seconds())


def install_gauges(app: web.Application) -> None:
    """Run `gauge_loop` while the app runs, and export the event loop's task count (read at
    scrape time: a leak of tasks shows as `tongxin_asyncio_tasks` growing; the soak reads it)
    and the media workers' CPU time (`MediaCpuCollector`)."""
    with contextlib.suppress(ValueError):  # already registered: the caller shared its metrics
        Gauge("asyncio_tasks", "Tasks of the node's event loop", namespace="tongxin",
              registry=app[METRICS].registry).set_function(running_task_count)
        app[METRICS].registry.register(MediaCpuCollector())

    async def lifespan(app: web.Application):  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(gauge_loop(app))
        yield
        await cancel_and_wait(task)

    app.cleanup_ctx.append(lifespan)
