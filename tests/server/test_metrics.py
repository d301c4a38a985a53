"""Metrics read at scrape time: GPU memory where this process uses CUDA, nothing otherwise."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import DeviceMemoryCollector, Metrics, RequestMetricsMiddleware

GIB = 1024**3


class FakeCuda:
    """torch.cuda's memory figures for two devices (there is no GPU here)."""

    def device_count(self) -> int:
        return 2

    def memory_allocated(self, index: int) -> int:
        return (index + 1) * GIB

    def memory_reserved(self, index: int) -> int:
        return (index + 2) * GIB

    def max_memory_allocated(self, index: int) -> int:
        return (index + 3) * GIB


def test_device_memory_is_exported_per_device_and_kind() -> None:
    registry = CollectorRegistry()
    registry.register(DeviceMemoryCollector(lambda: FakeCuda()))
    [family] = text_string_to_metric_families(generate_latest(registry).decode())
    assert family.name == "fakescope_device_memory_bytes" and family.type == "gauge"
    expected = {
        ("cuda:0", "allocated"): GIB,
        ("cuda:0", "reserved"): 2 * GIB,
        ("cuda:0", "peak_allocated"): 3 * GIB,
        ("cuda:1", "allocated"): 2 * GIB,
        ("cuda:1", "reserved"): 3 * GIB,
        ("cuda:1", "peak_allocated"): 4 * GIB,
    }
    found = {(s.labels["device"], s.labels["kind"]): s.value for s in family.samples}
    assert found == expected


def test_without_cuda_in_use_no_device_memory_is_exported() -> None:
    # This test process runs models on the CPU only: CUDA is never initialised.
    text = Metrics().render().decode()
    assert "fakescope_device_memory_bytes" not in text
    assert "fakescope_stream_first_token_seconds_count 0.0" in text


def _requests_counted(metrics: Metrics) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        if family.name == "fakescope_http_requests"
        for sample in family.samples
        if sample.name == "fakescope_http_requests_total"
    )


def test_a_request_is_counted_before_its_last_byte_is_sent() -> None:
    """A client holding the whole answer finds its request in /metrics already, even when
    the app goes on after the response (background work, a slow teardown)."""
    metrics = Metrics()
    counted_at_send: list[tuple[str, float]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        await asyncio.sleep(0)  # the app is still running when the client has the answer

    async def send(message: Any) -> None:
        counted_at_send.append((message["type"], _requests_counted(metrics)))

    scope = {"type": "http", "method": "GET", "path_template": "/v1/x"}
    asyncio.run(RequestMetricsMiddleware(app, metrics)(scope, None, send))  # type: ignore[arg-type]
    assert counted_at_send == [
        ("http.response.start", 0.0),
        ("http.response.body", 0.0),  # more to come: not done yet
        ("http.response.body", 1.0),
    ]
    assert _requests_counted(metrics) == 1.0  # once, not again when the app returns


def test_a_request_that_fails_before_answering_is_counted_once_as_500() -> None:
    metrics = Metrics()

    class Boom(Exception):
        pass

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise Boom

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    scope = {"type": "http", "method": "POST", "path_template": "/v1/y"}
    with pytest.raises(Boom):
        asyncio.run(RequestMetricsMiddleware(app, metrics)(scope, None, send))  # type: ignore[arg-type]
    assert 'status="500"} 1.0' in metrics.render().decode()
    assert _requests_counted(metrics) == 1.0
