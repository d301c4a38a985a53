"""/healthz (the process answers), /readyz (model loaded or provenance-only), /metrics."""

from __future__ import annotations

import contextlib
from typing import Any

from litestar import Controller, Response, get, head
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import text

from server.admin.review_queue import queue_summary
from server.db.database import Database
from server.inference.host import ModelHost
from server.jobs import registry
from server.jobs.remote_host import RemoteHost
from server.jobs.store import JobStore
from server.metrics import Metrics
from server.settings import Settings

# Litestar appends "; charset=utf-8" to every text/* media type itself.
PROMETHEUS_MEDIA_TYPE = "text/plain; version=0.0.4"


async def _readiness(state: State) -> tuple[dict[str, Any], int, dict[str, str] | None]:
    """/readyz's body, status and headers: 503 while the model loads (with Retry-After),
    failed, or the database is unreachable."""
    host: ModelHost | RemoteHost = state.model_host
    db: Database = state.db
    body, ready = host.describe(), host.ready  # one moment's view, before any await
    try:
        async with db.read() as session:
            await session.execute(text("SELECT 1"))
        body["database"] = "ok"
    except Exception as exc:
        body["database"] = f"unreachable: {type(exc).__name__}"
        return {**body, "status": "unready"}, 503, None
    if not ready:
        headers = {"Retry-After": "5"} if body["state"] == "loading" else None
        return {**body, "status": "unready"}, 503, headers
    return {**body, "status": "ready"}, 200, None


class HealthController(Controller):
    tags = ["operations"]
    include_in_schema = True

    @get("/healthz", summary="Liveness: the process answers (even while the model loads)")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @head("/healthz", summary="Liveness, as a status code alone (load balancers, monitors)")
    async def healthz_head(self) -> None:
        return None

    @get(
        "/readyz",
        summary="Readiness: database reachable and model ready (or provenance-only)",
        responses={
            503: ResponseSpec(
                data_container=dict[str, Any],
                description="Not ready: the same body with `status: unready` (the model "
                "loading, with `Retry-After`; failed; or the database unreachable)",
                generate_examples=False,
            )
        },
    )
    async def readyz(self, state: State) -> Response[dict[str, Any]]:
        body, status, headers = await _readiness(state)
        return Response(body, status_code=status, headers=headers)

    @head(
        "/readyz",
        summary="Readiness, as a status code alone (200 or 503)",
        responses={503: ResponseSpec(data_container=None, description="Not ready")},
    )
    async def readyz_head(self, state: State) -> Response[None]:
        _, status, headers = await _readiness(state)
        return Response(None, status_code=status, headers=headers)

    @get("/metrics", summary="Prometheus metrics", media_type=PROMETHEUS_MEDIA_TYPE)
    async def metrics(self, state: State) -> Response[bytes]:
        metrics: Metrics = state.metrics
        host: ModelHost | RemoteHost = state.model_host
        metrics.queue_depth(host.queue.depth)
        # Read at every scrape: set once at startup, it said 0 for good on every process
        # whose checkpoint loads in the background (workers, all-in-one with a model).
        metrics.model_ready.set(1 if host.ready else 0)
        settings: Settings = state.settings
        if settings.role != "worker":  # workers review nothing
            with contextlib.suppress(Exception):  # the database is down: /readyz says so
                db: Database = state.db
                async with db.connect() as conn:
                    summary = await queue_summary(conn)
                metrics.review_queue(summary.counts, summary.oldest_open_s)
        if settings.role != "all":
            # The shared queue, for alerts and for scaling the workers: one query each.
            with contextlib.suppress(Exception):  # the database is down: /readyz says so
                jobs: JobStore = state.job_store
                metrics.jobs_by_state(await jobs.counts())
                live = await registry.live_workers(state.db, settings.job_lease_s)
                metrics.workers_live.set(len(live))
        return Response(metrics.render(), media_type=PROMETHEUS_MEDIA_TYPE)
