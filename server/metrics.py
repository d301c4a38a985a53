"""Prometheus metrics, one registry per app so several apps can live in one process (tests)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
FIRST_TOKEN_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _cuda_in_use() -> Any:
    """torch.cuda where this process has initialised CUDA (a model on a GPU), else None.

    torch is not imported for this: a process without a model never pays for it.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


class DeviceMemoryCollector(Collector):
    """GPU memory held by this process's allocator, read when /metrics is scraped."""

    def __init__(self, cuda: Callable[[], Any] = _cuda_in_use) -> None:
        self._cuda = cuda

    def collect(self) -> Iterator[Metric]:
        cuda = self._cuda()
        if cuda is None:
            return
        family = GaugeMetricFamily(
            "fakescope_device_memory_bytes",
            "GPU memory of this process: allocated by tensors, reserved by the caching "
            "allocator, and the peak allocated since the process started",
            labels=["device", "kind"],
        )
        for index in range(cuda.device_count()):
            device = f"cuda:{index}"
            family.add_metric([device, "allocated"], cuda.memory_allocated(index))
            family.add_metric([device, "reserved"], cuda.memory_reserved(index))
            family.add_metric([device, "peak_allocated"], cuda.max_memory_allocated(index))
        yield family


class Metrics:
    """Every metric the server exports; it is also the inference queue's observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.requests = Counter(
            "fakescope_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "fakescope_http_request_seconds", "HTTP request latency", ["route"], registry=r
        )
        self.cache = Counter(
            "fakescope_cache_lookups", "Cache lookups by result", ["endpoint", "result"], registry=r
        )
        self.queue_depth_gauge = Gauge(
            "fakescope_queue_depth", "Inference jobs waiting", registry=r
        )
        self.batch_size = Histogram(
            "fakescope_batch_size",
            "Images per model forward pass",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.generation_batch_size = Histogram(
            "fakescope_generation_batch_size",
            "Answers per batched generation call (explanations, non-streamed answers)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            "fakescope_model_seconds", "Model call latency", ["task"], registry=r
        )
        self.rejected = Counter(
            "fakescope_queue_rejected", "Requests refused because the queue was full", registry=r
        )
        self.out_of_memory_batches = Counter(
            "fakescope_device_out_of_memory",
            "Batches that ran out of device memory (run again in halves), by stage",
            ["stage"],
            registry=r,
        )
        self.images_purged = Counter(
            "fakescope_images_purged",
            "Stored image bytes deleted by the retention policy",
            registry=r,
        )
        self.jobs = Counter(
            "fakescope_jobs",
            "Queue jobs a worker ran (FAKESCOPE_ROLE=worker), by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.jobs_in_state = Gauge(
            "fakescope_jobs_in_state",
            "Jobs in the shared queue by state (finished ones: the last hour), API/worker roles",
            ["state"],
            registry=r,
        )
        self.workers_live = Gauge(
            "fakescope_workers_live", "GPU workers with a recent heartbeat", registry=r
        )
        self.model_ready = Gauge(
            "fakescope_model_ready", "1 when the model is loaded (or none is needed)", registry=r
        )
        self.first_token_seconds = Histogram(
            "fakescope_stream_first_token_seconds",
            "Time from accepting a streamed answer to its first text (answers not cached)",
            buckets=FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        r.register(DeviceMemoryCollector())

    def queue_depth(self, depth: int) -> None:
        self.queue_depth_gauge.set(depth)

    def batch_done(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.model_seconds.labels("score").observe(seconds)

    def generation_done(self, size: int, seconds: float) -> None:
        self.generation_batch_size.observe(size)
        self.model_seconds.labels("generate").observe(seconds)

    def call_done(self, seconds: float) -> None:
        self.model_seconds.labels("call").observe(seconds)  # streamed answers

    def first_token(self, seconds: float) -> None:
        self.first_token_seconds.observe(seconds)

    def out_of_memory(self, stage: str, size: int) -> None:
        self._child(self.out_of_memory_batches, stage).inc()

    def job_done(self, kind: str, outcome: str) -> None:
        self._child(self.jobs, kind, outcome).inc()

    def jobs_by_state(self, counts: dict[str, int]) -> None:
        for state, count in counts.items():
            self._child(self.jobs_in_state, state).set(count)

    def cache_result(self, endpoint: str, hit: bool, count: int = 1) -> None:
        self._child(self.cache, endpoint, "hit" if hit else "miss").inc(count)

    def _child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(*labels), memoised: labels() costs more than the increment itself."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        self._child(self.requests, method, route, str(status)).inc()
        self._child(self.request_seconds, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Counts requests by route template (not raw path, so label cardinality stays bounded)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("path_template") or "unmatched"
            method: Any = scope.get("method", "?")
            self.metrics.request_done(method, route, status, time.perf_counter() - started)
