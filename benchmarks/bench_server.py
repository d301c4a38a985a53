"""Server benchmark: prints the figures issues 3 and 7 ask for (not a test; loopback only).

1. Cached `GET /v1/analyses/{sha256}` throughput as a ratio to a bare Litestar JSON route,
   both served by uvicorn the same way (one process, no access log) in the same run.
2. `POST /v1/lookup` with 100 keys on SQLite: median and p99 latency.
3. Batching gain with the tiny checkpoint on CPU: uncached analyses/s with 32 in flight vs
   one at a time.
4. Explanation batching gain with the tiny checkpoint on CPU: `POST /v1/analyze?explain=true`
   on new images, K in flight vs one at a time (short answers: FAKESCOPE_MAX_NEW_TOKENS=16).
5. Streamed-answer batching gain, same setup: `POST /v1/ask` with `Accept: text/event-stream`
   (new questions on analysed images), K streams in flight vs one at a time.
6. Continuous batching: time to first token of a stream that arrives while another answer
   decodes, when it joins the running decode vs when it waits for the next batch (both
   servers decode through the graph decoder, eagerly on the CPU; answers run their full
   FAKESCOPE_MAX_NEW_TOKENS, end ids ignored). The ratio is waiting / joining.

    python benchmarks/bench_server.py            # full run (about a minute)
    python benchmarks/bench_server.py --quick    # smoke run for CI (small counts)
    python benchmarks/bench_server.py --json out.json
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
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from litestar import Litestar, get
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent


@get("/bare")
async def bare_json() -> dict[str, Any]:
    """The baseline: a JSON body of about the size of a cached analysis, no I/O."""
    return BARE_BODY


BARE_BODY: dict[str, Any] = {
    "sha256": "0" * 64,
    "label": "uncertain",
    "p_fake": None,
    "evidence": [{"kind": "camera_exif", "summary": "x" * 120, "details": {"make": "Canon"}}],
    "image": {"format": "PNG", "width": 64, "height": 64, "pdq": "f" * 64},
    "timings_ms": {"decode": 1.0, "provenance": 0.5},
}
bare_app = Litestar([bare_json], openapi_config=None)


# -- continuous batching: the tiny model decoding through its graph decoder --------------


def _graph_decoding_loader(settings: Any, *, joins: bool) -> Any:
    from server.inference.host import CheckpointLoader

    load = CheckpointLoader(settings)

    def loader() -> Any:
        from fakescope.model import ForensicModel

        class BatchAtATime(ForensicModel):
            """The same model, answering batch at a time (no joins)."""

            decodes_continuously = False  # type: ignore[assignment]

        model = load()
        model.graph_decoding = True  # what CUDA gets: the decoder that rows can join
        model.eos_ids = []  # every answer runs its full length, whatever the weights
        if not joins:
            model.__class__ = BatchAtATime
        return model

    return loader


def joining_app() -> Litestar:
    """uvicorn factory: generations that arrive mid-decode join it."""
    from server.app import create_app
    from server.settings import Settings

    settings = Settings.from_env()
    return create_app(settings, model_loader=_graph_decoding_loader(settings, joins=True))


def waiting_app() -> Litestar:
    """uvicorn factory: generations that arrive mid-decode wait for the next batch."""
    from server.app import create_app
    from server.settings import Settings

    settings = Settings.from_env()
    return create_app(settings, model_loader=_graph_decoding_loader(settings, joins=False))


# -- a light HTTP/1.1 keep-alive client (httpx would be the bottleneck on 2 cores) ----------


class RawConnection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self) -> RawConnection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = 0
        for line in headers.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "benchboundary7d9f"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def random_png(seed: int, size: int = 64) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


# -- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def start_server(
    target: str, env: dict[str, str], app_dir: Path, ready_s: float = 90
) -> Server:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--app-dir",
        str(app_dir),
    ]
    if target.endswith(("create_app", "_app")) and "bare" not in target:
        command.append("--factory")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **env})  # noqa: ASYNC220
    server = Server(process, port)
    deadline = time.monotonic() + ready_s
    probe = "/bare" if "bare" in target else "/readyz"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{target} exited with {process.returncode}")
        try:
            conn = await RawConnection(port).open()
            status, _ = await conn.request("GET", probe)
            await conn.close()
            if status == 200:
                return server
        except OSError:
            pass
        await asyncio.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{target} did not become ready")


async def start_servers(*starting: Awaitable[Server]) -> list[Server]:
    """Start servers together (a start is mostly imports, so two cores overlap them); if
    one fails, the others are stopped and its error raised. They are measured one at a
    time afterwards: an idle server only wakes for housekeeping."""
    started = await asyncio.gather(*starting, return_exceptions=True)
    servers = [s for s in started if isinstance(s, Server)]
    failures = [s for s in started if isinstance(s, BaseException)]
    if failures:
        for server in servers:
            server.stop()
        raise failures[0]
    return servers


# -- measurements -------------------------------------------------------------------------


async def throughput(port: int, path: str, seconds: float, connections: int) -> float:
    """Completed requests per second with `connections` keep-alive clients in a closed loop."""
    conns = [await RawConnection(port).open() for _ in range(connections)]
    done = 0
    stop_at = time.perf_counter() + seconds

    async def loop(conn: RawConnection) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            status, _ = await conn.request("GET", path)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return done / elapsed


async def post_image(port: int, data: bytes, *, explain: bool = False) -> dict[str, Any]:
    conn = await RawConnection(port).open()
    body, content_type = multipart(data)
    path = "/v1/analyze?explain=true" if explain else "/v1/analyze"
    status, payload = await conn.request("POST", path, body, content_type)
    await conn.close()
    if status != 200:
        raise RuntimeError(f"analyze answered {status}: {payload[:200]!r}")
    result: dict[str, Any] = json.loads(payload)
    if explain and not isinstance(result.get("explanation"), str):
        raise RuntimeError("an explained analysis came back without its explanation")
    return result


async def bench_cached_get(env: dict[str, str], seconds: float, rounds: int) -> dict[str, float]:
    ours, bare = await start_servers(
        start_server("server.asgi:create_app", env, REPO_ROOT),
        start_server("bench_server:bare_app", {}, BENCH_DIR),
    )
    try:
        sha = (await post_image(ours.port, random_png(1)))["sha256"]
        path = f"/v1/analyses/{sha}"
        await throughput(ours.port, path, 0.5, 8)  # warm-up
        await throughput(bare.port, "/bare", 0.5, 8)
        ours_rps, bare_rps = [], []
        for _ in range(rounds):  # interleaved, so drift in the machine hits both alike
            bare_rps.append(await throughput(bare.port, "/bare", seconds, 16))
            ours_rps.append(await throughput(ours.port, path, seconds, 16))
    finally:
        ours.stop()
        bare.stop()
    ours_mean, bare_mean = statistics.mean(ours_rps), statistics.mean(bare_rps)
    return {"cached_get_rps": ours_mean, "bare_rps": bare_mean, "ratio": ours_mean / bare_mean}


async def bench_lookup(env: dict[str, str], samples: int) -> dict[str, float]:
    ours = await start_server("server.asgi:create_app", env, REPO_ROOT)
    try:
        # Fixed seeds: the second run (cache off) finds the first run's rows already stored.
        shas = [(await post_image(ours.port, random_png(1000 + i)))["sha256"] for i in range(100)]
        body = json.dumps({"sha256": shas}).encode()
        conn = await RawConnection(ours.port).open()
        for _ in range(10):  # warm-up
            await conn.request("POST", "/v1/lookup", body)
        latencies = []
        for _ in range(samples):
            started = time.perf_counter()
            status, payload = await conn.request("POST", "/v1/lookup", body)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200 or len(json.loads(payload)["results"]) != 100:
                raise RuntimeError(f"lookup answered {status}")
        await conn.close()
    finally:
        ours.stop()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return {"lookup_median_ms": statistics.median(latencies), "lookup_p99_ms": p99}


def tiny_checkpoint(env: dict[str, str]) -> Path:
    """The tiny checkpoint in the run's data folder (built on first use)."""
    from fakescope.tiny import build_tiny_checkpoint

    path = Path(env["FAKESCOPE_DATA_DIR"]) / "tiny"
    return path if (path / "config.json").is_file() else build_tiny_checkpoint(path)


async def start_model_server(
    env: dict[str, str], batch_size: int, target: str = "server.asgi:create_app", name: str = ""
) -> Server:
    """The server with the tiny checkpoint on CPU (its own database), warmed up."""
    checkpoint = tiny_checkpoint(env)
    model_env = {
        **env,
        "FAKESCOPE_MODEL": str(checkpoint),
        "FAKESCOPE_DEVICE": "cpu",
        "FAKESCOPE_QUANTIZATION": "none",
        "FAKESCOPE_BATCH_SIZE": str(batch_size),
        "FAKESCOPE_QUEUE_SIZE": str(max(64, batch_size * 2)),
        "FAKESCOPE_MAX_NEW_TOKENS": env.get("FAKESCOPE_MAX_NEW_TOKENS", str(EXPLAIN_TOKENS)),
        "FAKESCOPE_DATABASE_URL": env["FAKESCOPE_DATABASE_URL"].replace(".db", f"-model{name}.db"),
    }
    from server.db.migrate import upgrade_async

    async with MIGRATIONS:  # alembic's context is process-global: one migration at a time
        await upgrade_async(model_env["FAKESCOPE_DATABASE_URL"])
    app_dir = REPO_ROOT if target.startswith("server.") else BENCH_DIR
    ours = await start_server(target, model_env, app_dir, ready_s=180)
    try:
        await post_image(ours.port, random_png(99_999))  # warm-up: first forward pass
        await post_image(ours.port, random_png(99_998), explain=True)  # and first generation
    except BaseException:
        ours.stop()
        raise
    return ours


MIGRATIONS = asyncio.Lock()
EXPLAIN_TOKENS = 16  # short answers: the figure is about batching, not answer length
JOIN_TOKENS = 64  # the running answer's length: a late stream waits for its rest


async def sequential_vs_concurrent(
    port: int, count: int, concurrency: int, rounds: int, *, seed: int, explain: bool
) -> tuple[float, float]:
    """Median requests/s of `count` new images one at a time, and `concurrency` in flight."""
    slots = asyncio.Semaphore(concurrency)

    async def one(data: bytes) -> None:
        async with slots:
            await post_image(port, data, explain=explain)

    sequential_runs, concurrent_runs = [], []
    for round_no in range(rounds):  # alternated: a busy neighbour hits both alike
        images = [random_png(seed + 1000 * round_no + i) for i in range(2 * count)]
        started = time.perf_counter()
        for data in images[:count]:
            await post_image(port, data, explain=explain)
        sequential_runs.append(count / (time.perf_counter() - started))
        started = time.perf_counter()
        await asyncio.gather(*(one(d) for d in images[count:]))
        concurrent_runs.append(count / (time.perf_counter() - started))
    return statistics.median(sequential_runs), statistics.median(concurrent_runs)


async def ask_streamed(port: int, sha: str, question: str) -> None:
    """One streamed answer, read to its end (the response is streamed: read until close)."""
    reader, writer = await open_stream(port, sha, question)
    payload = await reader.read()  # until the server closes
    writer.close()
    await writer.wait_closed()
    if not payload.startswith(b"HTTP/1.1 200") or b"event: done" not in payload:
        raise RuntimeError(f"a streamed answer failed: {payload[:300]!r}")


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_stream(port: int, sha: str, question: str) -> Stream:
    """Sends a streamed question; the reader yields its SSE response (keep the writer:
    a collected writer closes the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"sha256": sha, "question": question}).encode()
    writer.write(
        (
            "POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    return reader, writer


async def first_token(stream: Stream) -> None:
    await stream[0].readuntil(b"event: token")


async def rest_of_stream(stream: Stream) -> None:
    reader, writer = stream
    payload = await reader.read()
    writer.close()
    await writer.wait_closed()
    if b"event: done" not in payload:
        raise RuntimeError(f"a streamed answer failed: {payload[-300:]!r}")


async def first_token_while_decoding(port: int, rounds: int, *, seed: int) -> float:
    """Median seconds to the first token of a stream sent while another one decodes."""
    shas = [(await post_image(port, random_png(seed + i)))["sha256"] for i in range(2)]
    waits = []
    for round_no in range(rounds):
        running = await open_stream(port, shas[0], f"Is sky {seed}-{round_no} consistent?")
        await first_token(running)  # it is decoding now
        started = time.perf_counter()
        late = await open_stream(port, shas[1], f"Are edges {seed}-{round_no} consistent?")
        await first_token(late)
        waits.append(time.perf_counter() - started)
        await asyncio.gather(rest_of_stream(running), rest_of_stream(late))
    return statistics.median(waits)


def joining_servers(env: dict[str, str]) -> list[Awaitable[Server]]:
    """The two servers `bench_joining` compares (answers of JOIN_TOKENS tokens)."""
    env = {**env, "FAKESCOPE_MAX_NEW_TOKENS": str(JOIN_TOKENS)}
    return [
        start_model_server(env, 8, f"bench_server:{name}_app", f"-{name}")
        for name in ("joining", "waiting")
    ]


async def bench_joining(joining: Server, waiting: Server, rounds: int) -> dict[str, float]:
    """Time to first token mid-decode, joining vs waiting: the same server otherwise."""
    figures: dict[str, float] = {"join_max_new_tokens": JOIN_TOKENS}
    for name, ours in (("joining", joining), ("waiting", waiting)):
        await first_token_while_decoding(ours.port, 1, seed=110_000)  # warm-up
        figures[f"ttft_{name}_s"] = await first_token_while_decoding(
            ours.port, rounds, seed=120_000
        )
    figures["ttft_ratio"] = figures["ttft_waiting_s"] / figures["ttft_joining_s"]
    return figures


async def streamed_sequential_vs_concurrent(
    port: int, count: int, rounds: int, *, seed: int
) -> tuple[float, float]:
    """Median streamed answers/s: `count` new questions one at a time, and all in flight."""
    shas = [(await post_image(port, random_png(seed + i)))["sha256"] for i in range(count)]
    sequential_runs, concurrent_runs = [], []
    for round_no in range(rounds):
        started = time.perf_counter()
        for i, sha in enumerate(shas):
            await ask_streamed(port, sha, f"Is detail {round_no}-{i} consistent?")
        sequential_runs.append(count / (time.perf_counter() - started))
        started = time.perf_counter()
        await asyncio.gather(
            *(
                ask_streamed(port, sha, f"Is part {round_no}-{i} consistent?")
                for i, sha in enumerate(shas)
            )
        )
        concurrent_runs.append(count / (time.perf_counter() - started))
    return statistics.median(sequential_runs), statistics.median(concurrent_runs)


async def bench_batching(
    ours: Server, count: int, concurrency: int, rounds: int, explain_count: int
) -> dict[str, float]:
    sequential, concurrent = await sequential_vs_concurrent(
        ours.port, count, concurrency, rounds, seed=50_000, explain=False
    )
    explain_sequential, explain_concurrent = await sequential_vs_concurrent(
        ours.port, explain_count, explain_count, rounds, seed=70_000, explain=True
    )
    streamed_sequential, streamed_concurrent = await streamed_sequential_vs_concurrent(
        ours.port, explain_count, rounds, seed=90_000
    )
    return {
        "sequential_per_s": sequential,
        "concurrent_per_s": concurrent,
        "batching_gain": concurrent / sequential,
        "explain_count": explain_count,
        "explain_max_new_tokens": EXPLAIN_TOKENS,
        "explain_sequential_per_s": explain_sequential,
        "explain_concurrent_per_s": explain_concurrent,
        "explain_batching_gain": explain_concurrent / explain_sequential,
        "streamed_sequential_per_s": streamed_sequential,
        "streamed_concurrent_per_s": streamed_concurrent,
        "streamed_batching_gain": streamed_concurrent / streamed_sequential,
    }


async def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts, no cache-off pass: a smoke run"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--skip-batching", action="store_true", help="no model (saves ~10 s)")
    args = parser.parse_args(argv)
    seconds, rounds, samples = (0.5, 1, 30) if args.quick else (4.0, 3, 500)
    count, concurrency = (32, 32) if not args.quick else (8, 8)
    explain_count = 4 if args.quick else 8

    with tempfile.TemporaryDirectory(prefix="fakescope-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        env = {
            "FAKESCOPE_DATA_DIR": tmp,
            "FAKESCOPE_DATABASE_URL": url,
            "FAKESCOPE_RATE_LIMIT": "off",
            "FAKESCOPE_MODEL": "",
            "HF_HUB_OFFLINE": "1",
        }
        from server.db.migrate import upgrade_async

        await upgrade_async(url)
        figures: dict[str, Any] = {
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
            "python": platform.python_version(),
            "quick": args.quick,
        }
        passes = [("", env, "")]
        if not args.quick:  # the smoke run skips the second pass: the same code, cache off
            passes.append((" [cache off]", {**env, "FAKESCOPE_CACHE_TTL_S": "0"}, "_no_cache"))
        for label, run_env, suffix in passes:
            got = await bench_cached_get(run_env, seconds, rounds)
            figures.update({k + suffix: v for k, v in got.items()})
            print(
                f"cached GET /v1/analyses/{{sha}}{label}: {got['cached_get_rps']:.0f} req/s; "
                f"bare Litestar JSON route: {got['bare_rps']:.0f} req/s; "
                f"ratio {got['ratio']:.2f} (target >= 0.5)"
            )
            got = await bench_lookup(run_env, samples)
            figures.update({k + suffix: v for k, v in got.items()})
            print(
                f"POST /v1/lookup{label}, 100 keys, SQLite: "
                f"median {got['lookup_median_ms']:.2f} ms, "
                f"p99 {got['lookup_p99_ms']:.2f} ms over {samples} requests (target p99 <= 20 ms)"
            )
        if not args.skip_batching:
            servers = await start_servers(
                start_model_server(env, concurrency), *joining_servers(env)
            )
            try:
                batching, joining, waiting = servers
                figures.update(
                    await bench_batching(batching, count, concurrency, rounds, explain_count)
                )
                batching.stop()
                figures.update(await bench_joining(joining, waiting, rounds * 3))
            finally:
                for server in servers:
                    server.stop()
            print(
                f"tiny checkpoint on CPU, uncached analyses (median of {rounds}): one at a time "
                f"{figures['sequential_per_s']:.1f}/s; {concurrency} in flight "
                f"{figures['concurrent_per_s']:.1f}/s; batching gain "
                f"{figures['batching_gain']:.2f}x (target >= 2x)"
            )
            print(
                f"tiny checkpoint on CPU, explained analyses ({EXPLAIN_TOKENS} new tokens, "
                f"median of {rounds}): one at a time {figures['explain_sequential_per_s']:.2f}/s; "
                f"{explain_count} in flight {figures['explain_concurrent_per_s']:.2f}/s; "
                f"explanation batching gain {figures['explain_batching_gain']:.2f}x"
            )
            print(
                f"tiny checkpoint on CPU, streamed answers ({EXPLAIN_TOKENS} new tokens, "
                f"median of {rounds}): one at a time {figures['streamed_sequential_per_s']:.2f}/s; "
                f"{explain_count} in flight {figures['streamed_concurrent_per_s']:.2f}/s; "
                f"streamed batching gain {figures['streamed_batching_gain']:.2f}x"
            )
            print(
                f"tiny checkpoint on CPU, graph decoder, time to first token of a stream sent "
                f"while a {JOIN_TOKENS}-token answer decodes (median of {rounds * 3}): "
                f"joining {figures['ttft_joining_s'] * 1000:.0f} ms; waiting for the next "
                f"batch {figures['ttft_waiting_s'] * 1000:.0f} ms; "
                f"ttft ratio {figures['ttft_ratio']:.2f}x"
            )
    print(f"machine: {figures['machine']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    asyncio.run(main())
