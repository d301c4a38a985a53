"""Helpers for the server tests: images, row counts, an in-process app runner, problems."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import uvicorn
from litestar import Litestar
from PIL import Image
from sqlalchemy import text

from server.app import create_app
from server.db.engine import create_engine
from server.db.models import Base
from server.settings import Settings

HOSTILE_PATH = Path(__file__).resolve().parent.parent / "core" / "hostile_images.py"
TABLES = [table.name for table in Base.metadata.sorted_tables]
_image_seeds = itertools.count(1)


def load_hostile() -> ModuleType:
    """The core's builders of hostile images (tests/core/hostile_images.py)."""
    spec = importlib.util.spec_from_file_location("hostile_images", HOSTILE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unique_png(size: int = 64) -> bytes:
    """A small PNG nobody has analysed before (random pixels, fresh seed each call)."""
    rng = np.random.default_rng(next(_image_seeds) * 7919)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def upload(data: bytes, name: str = "image.png", media_type: str = "image/png") -> dict[str, Any]:
    """httpx keyword arguments for a multipart upload of ``data`` as the field ``file``."""
    return {"files": {"file": (name, data, media_type)}}


async def count_rows(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return {
                t: (await conn.execute(text(f"SELECT COUNT(*) FROM {t}"))).scalar_one()
                for t in TABLES
            }
    finally:
        await engine.dispose()


async def run_sql(database_url: str, statement: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


class StartupFailed(RuntimeError):
    """The app's startup hooks failed (the message is the one the ASGI server would print)."""


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """Drive the ASGI lifespan protocol in its own task, as a server does.

    (Litestar's own `app.lifespan()` holds an anyio cancel scope, which breaks when pytest
    sets a fixture up and tears it down in different tasks.)
    """
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: Any) -> None:
        await outbox.put(dict(message))

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        await asyncio.gather(task, return_exceptions=True)
        raise StartupFailed(started.get("message", "startup failed"))
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await asyncio.gather(task, return_exceptions=True)


class AppClient(httpx.AsyncClient):
    """An httpx client calling the app in-process (concurrent requests really run concurrently)."""

    app: Litestar


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[AppClient]:
    """The app with its lifespan (startup checks, model loading) running, and a client."""
    transport = httpx.ASGITransport(app=app)
    async with (
        lifespan(app),
        AppClient(transport=transport, base_url="http://testserver.local", timeout=60) as client,
    ):
        client.app = app
        yield client


def in_flight(client: AppClient, *, explain: bool) -> bool:
    """Whether the app behind `client` is computing an analysis with (or without) explanation."""
    inflight = client.app.state.analysis_service._inflight
    return any(flag is explain for _sha, _model, flag in inflight)


@asynccontextmanager
async def running_worker(settings: Settings, model: Any) -> AsyncIterator[AppClient]:
    """A GPU worker process's app (`FAKESCOPE_ROLE=worker`) serving `model`, once registered."""
    app = create_app(replace(settings, role="worker"), model_loader=lambda: model)
    async with running(app) as client:
        await until(lambda: app.state.job_worker.registered.is_set())
        yield client


class CountingModel:
    """Wraps a ForensicModel and records how many images each score() call got."""

    def __init__(self, model: Any, score_delay_s: float = 0.0) -> None:
        self.inner = model
        self.info = model.info
        self.score_calls: list[int] = []
        self.score_delay_s = score_delay_s

    def score(self, images: Any) -> list[float]:
        self.score_calls.append(len(images))
        if self.score_delay_s:
            time.sleep(self.score_delay_s)
        return list(self.inner.score(images))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


GATE_S = 60  # a gate never opened fails the test instead of hanging it


class GatedModel(CountingModel):
    """Counts verdict passes; scoring and explanation generation each wait for their gate
    (open until a test clears it), and `scoring` is set once a verdict pass has begun."""

    decodes_continuously = False  # explanations go through generate_batch

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.scoring = threading.Event()
        self.score_gate = threading.Event()
        self.generate_gate = threading.Event()
        self.open_gates()

    def score(self, images: Any) -> list[float]:
        self.score_calls.append(len(images))
        self.scoring.set()
        assert self.score_gate.wait(GATE_S)
        return list(self.inner.score(images))

    def generate_batch(self, images: Any, prompts: Any, **kwargs: Any) -> list[str]:
        assert self.generate_gate.wait(GATE_S)
        return list(self.inner.generate_batch(images, prompts, **kwargs))

    def open_gates(self) -> None:
        self.score_gate.set()
        self.generate_gate.set()


async def until(check: Callable[[], object], within_s: float = 30.0) -> None:
    """Wait until `check()` is true, polling (for state no event announces)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not check():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def behind_uvicorn(app: Litestar) -> AsyncIterator[int]:
    """`app` behind uvicorn on a free loopback port (real HTTP): the port."""
    from live_server import free_port

    chosen = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=chosen, log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started or serving.done())
        assert server.started, "uvicorn did not start"
        yield chosen
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)


async def wait_until_ready(client: AppClient, within_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the app never became ready")


def problem(response: Any) -> dict[str, Any]:
    """Assert an RFC 9457 problem response and return its body."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["title"] and body["detail"] and body["type"]
    return body


def run_quick_bench(script: str, out: Path, timeout_s: float = 240) -> str:
    """Run `benchmarks/<script> --quick --json out` offline; its stdout (it must succeed)."""
    import os
    import subprocess
    import sys

    repo_root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / script), "--quick", "--json", str(out)],
        cwd=repo_root,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
