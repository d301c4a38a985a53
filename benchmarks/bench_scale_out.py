"""Scale-out benchmark: what the SQL job queue costs and gives (PostgreSQL, tiny model, CPU).

Runs the same load of new images (uncached analyses, C in flight) against three
deployments, each made of real `fakescope serve` processes on loopback sharing one fresh
PostgreSQL database:

  all        one process that serves HTTP and runs the model (FAKESCOPE_ROLE=all)
  api+1      an API process handing jobs to one worker process
  api+2      the same with two worker processes

and prints analyses/s, median and p99 latency for each, with the ratios to `all` measured
in the same run. Each round starts all four processes at once (a start is mostly imports,
which overlap on two cores), measures `all`, then `api+2`, then stops one worker and
measures `api+1`; processes not being measured stay idle (a worker listening for jobs
checks the queue once a second). On a machine with few cores the workers share them with
everything else, so api+2 shows queue overhead and fairness here, not GPU scaling (each GPU
worker would bring its own device).

    python benchmarks/bench_scale_out.py            # full run (about a minute)
    python benchmarks/bench_scale_out.py --quick    # smoke run for CI
    python benchmarks/bench_scale_out.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "FAKESCOPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def random_png(rng: np.random.Generator, size: int = 64) -> bytes:
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


class Fleet:
    """Server processes of one deployment; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, base_env: dict[str, str], log_dir: Path) -> None:
        self.base_env = base_env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, **env: str) -> str:
        port = free_port()
        log = (self.log_dir / f"{name}.log").open("ab")
        command = ["-m", "fakescope.cli", "serve", "--port", str(port), "--log-level", "warning"]
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=REPO_ROOT,
            env={**os.environ, **self.base_env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return f"http://127.0.0.1:{port}"

    def stop(self, *names: str) -> None:
        """Stop the named processes (all when none is named)."""
        stopping = [self.processes.pop(n) for n in names or list(self.processes)]
        for process in stopping:
            process.terminate()
        for process in stopping:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(base: str, within_s: float = 120.0, workers: int | None = None) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            response = httpx.get(base + "/readyz", timeout=2)
            body = response.json()
            if response.status_code == 200 and (workers is None or body["workers"] == workers):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} was not ready within {within_s} s")


async def load(base: str, images: list[bytes], in_flight: int) -> dict[str, float]:
    slots = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def one(client: httpx.AsyncClient, data: bytes) -> None:
        async with slots:
            started = time.perf_counter()
            response = await client.post("/v1/analyze", files={"file": ("x.png", data)})
            if response.status_code != 200:
                raise RuntimeError(f"analyze answered {response.status_code}: {response.text}")
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, data) for data in images))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "analyses_per_s": round(len(images) / elapsed, 2),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1),
    }


def create_database() -> tuple[str, str]:
    import psycopg

    name = f"fakescope_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run(count: int, in_flight: int, rounds: int) -> dict[str, Any]:
    from fakescope.tiny import build_tiny_checkpoint
    from server.db.migrate import upgrade_async

    rng = np.random.default_rng(20261127)
    name, url = create_database()
    try:
        await upgrade_async(url)
        with tempfile.TemporaryDirectory(prefix="fakescope-scale-") as tmp:
            tmp_dir = Path(tmp)
            checkpoint = build_tiny_checkpoint(tmp_dir / "tiny")
            base_env = {
                "FAKESCOPE_DATA_DIR": str(tmp_dir / "data"),
                "FAKESCOPE_DATABASE_URL": url,
                "FAKESCOPE_RATE_LIMIT": "off",
                "FAKESCOPE_DEVICE": "cpu",
                "FAKESCOPE_QUEUE_SIZE": str(max(64, 2 * in_flight)),
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
            model = {"FAKESCOPE_MODEL": str(checkpoint)}
            results: dict[str, list[dict[str, float]]] = {"all": [], "api+1": [], "api+2": []}

            async def measure(key: str, base: str) -> None:
                await load(base, [random_png(rng) for _ in range(8)], in_flight)  # warm-up
                images = [random_png(rng) for _ in range(count)]
                results[key].append(await load(base, images, in_flight))

            # Rounds repeat the three measurements, so a slow spell of the machine hits all.
            for _ in range(rounds):
                fleet = Fleet(base_env, tmp_dir)
                try:
                    all_in_one = fleet.start("all", **model)
                    for i in range(2):
                        fleet.start(f"worker{i}", FAKESCOPE_ROLE="worker", **model)
                    api = fleet.start("api", FAKESCOPE_ROLE="api")
                    wait_ready(all_in_one)
                    wait_ready(api, workers=2)
                    await measure("all", all_in_one)
                    await measure("api+2", api)
                    fleet.stop("worker1")
                    wait_ready(api, workers=1)
                    await measure("api+1", api)
                finally:
                    fleet.stop()
    finally:
        drop_database(name)
    best = {key: max(runs, key=lambda r: r["analyses_per_s"]) for key, runs in results.items()}
    base_rate = best["all"]["analyses_per_s"]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "images_per_round": count,
        "in_flight": in_flight,
        "rounds": rounds,
        "deployments": best,
        "all_runs": results,
        "ratio_api_1_worker_to_all": round(best["api+1"]["analyses_per_s"] / base_rate, 3),
        "ratio_api_2_workers_to_all": round(best["api+2"]["analyses_per_s"] / base_rate, 3),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (CI smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    count, in_flight, rounds = (16, 8, 1) if args.quick else (96, 32, 2)
    report = asyncio.run(run(count, in_flight, rounds))
    print(f"scale-out, tiny model on CPU, {report['machine']}, PostgreSQL")
    print(f"{count} new images per round, {in_flight} in flight, best of {rounds} rounds")
    print(f"{'deployment':<12}{'analyses/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for key, row in report["deployments"].items():
        print(f"{key:<12}{row['analyses_per_s']:>12}{row['p50_ms']:>10}{row['p99_ms']:>10}")
    print(f"api+1 / all: {report['ratio_api_1_worker_to_all']}")
    print(f"api+2 / all: {report['ratio_api_2_workers_to_all']}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
