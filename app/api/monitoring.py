"""GET /metrics: Prometheus text. Job, queue and worker figures are read from the store at
each scrape, so every API process reports the whole truth; HTTP figures are this process's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import Settings
from app.store.base import UNREACHABLE
from app.store.jobs import JobStore
from app.store.keys import STATUSES
from app.store.queue import queue_key
from app.store.registry import WorkerRegistry
from app.store.stats import DURATION_BUCKETS, read_durations

# Methods named in the labels; any other is "other", so clients cannot grow the series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class StoreCollector:
    """Figures derived from the job store, read in one pipeline at scrape time."""

    def __init__(self, store: JobStore, workers: WorkerRegistry, settings: Settings) -> None:
        self.store = store
        self.workers = workers
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        keys = self.store.keys
        pipe = self.store.client.pipeline(transaction=False)
        for status in STATUSES:
            pipe.zcard(keys.status_index(status))
        pipe.llen(queue_key(self.settings.key_prefix))
        pipe.hgetall(keys.stats_durations)
        pipe.get(keys.stats_iterations)
        try:
            *counts, depth, durations, iterations = pipe.execute()
            online = len(self.workers.alive(3 * self.settings.heartbeat_seconds))
            waiting = self.store.waiting_backlog()
        except UNREACHABLE:
            yield GaugeMetricFamily("descent_store_up", "Whether Redis answered this scrape", 0)
            return
        yield GaugeMetricFamily("descent_store_up", "Whether Redis answered this scrape", 1)
        jobs = GaugeMetricFamily("descent_jobs", "Jobs kept in the store, by status",
                                 labels=["status"])
        for status, count in zip(STATUSES, counts, strict=True):
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily("descent_queue_depth",
                                "Messages waiting in the broker's train queue", depth)
        yield GaugeMetricFamily("descent_jobs_waiting",
                                "Queued jobs waiting for one of their tenant's "
                                "max_running_jobs slots (no message yet)", waiting)
        yield GaugeMetricFamily("descent_workers_online",
                                "Workers heard from within the last 3 heartbeats", online)
        yield CounterMetricFamily("descent_iterations_trained",
                                  "Mini-batch iterations of every job that ended",
                                  int(iterations or 0))
        histogram = HistogramMetricFamily(
            "descent_job_duration_seconds", "From a job's start to its end, by final status",
            labels=["status"],
        )
        for ended, buckets in sorted(read_durations(durations).items()):
            cumulative = [(f"{bound:g}", buckets.get(f"{bound:g}", 0.0))
                          for bound in DURATION_BUCKETS]
            cumulative.append(("+Inf", buckets.get("+Inf", 0.0)))
            histogram.add_metric([ended], cumulative, sum_value=buckets.get("sum", 0.0))
        yield histogram


class HttpMetrics:
    """Counts requests and times them, by route template, method and status code."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("descent_http_requests", "HTTP requests answered",
                                ["route", "method", "code"], registry=registry)
        self.latency = Histogram("descent_http_request_seconds", "Time to answer a request",
                                 ["route", "method"], buckets=LATENCY_BUCKETS,
                                 registry=registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code: list[int] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                code.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            code.append(500)
            raise
        finally:
            # A client that went away before any answer is no request answered.
            if code:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                method = scope["method"] if scope["method"] in METHODS else "other"
                self.requests.labels(route, method, str(code[0])).inc()
                self.latency.labels(route, method).observe(time.perf_counter() - started)


def metrics_registry(state: Any) -> CollectorRegistry:
    """The app's own registry (not the process-global one, so that apps never mix)."""
    registry: CollectorRegistry = state.metrics_registry
    return registry
