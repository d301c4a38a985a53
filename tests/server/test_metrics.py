"""Metrics read at scrape time: GPU memory where this process uses CUDA, nothing otherwise."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import DeviceMemoryCollector, Metrics

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
