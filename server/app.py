"""The app factory: settings in, a Litestar app out, with every plugin wired in one place."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.stores.base import Store

from server import openapi_docs
from server.admin.limit_exemption import rate_limited
from server.admin.routes import admin_routers
from server.allow_header import AllowEveryMethod, methods_by_template
from server.analyze.controller import MULTIPART_OVERHEAD, AnalyzeController
from server.analyze.image_rows import DatabaseImageStore
from server.analyze.image_store import FileImageStore, ImageStore
from server.analyze.retention import ImageRetention
from server.analyze.service import AnalysisService
from server.ask.controller import AskController
from server.ask.service import AskService
from server.auth import require_client_token
from server.db.database import DECISIONS_CHANNEL, Database
from server.db.engine import create_engine
from server.db.migrate import ensure_migrated
from server.db.notify import Wakeups
from server.health.controller import HealthController
from server.inference.host import ModelHost, ModelLoader, ModelState
from server.jobs.remote_host import RemoteHost
from server.jobs.retry import request_budget_s
from server.jobs.store import JobStore
from server.jobs.worker import JobWorker
from server.limits import DatabaseStore, SharedRateLimitMiddleware
from server.limits.client_address import client_of
from server.log_output import LogOutput
from server.lookup.controller import LookupController
from server.lookup.live_index import LivePdqIndex
from server.metrics import Metrics, RequestMetricsMiddleware
from server.net.ssrf import FetchLimits, GuardedFetcher
from server.problems import EXCEPTION_HANDLERS, CorsRefusalProblems
from server.reports.controller import ReportsController
from server.requests import ApiRequest, check_declared_json_body
from server.settings import Settings, SettingsError
from server.unreadable_requests import RefuseUnreadableRequests

log = logging.getLogger("fakescope.server")
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
UNLIMITED_PATHS = ["^/healthz$", "^/readyz$", "^/metrics$", "^/schema"]


def template_config() -> Any:
    """Jinja on server/templates (HTML autoescaped), for the admin page."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from litestar.plugins.jinja import JinjaTemplateEngine
    from litestar.template.config import TemplateConfig

    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "jinja"], default=True),
    )
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def no_schema_page(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the /schema router: a path no page there has is the app's 404 problem.

    Litestar answers `/schema/{path}` with its own handler, which returns an HTML 404 page
    (and raises the 404 only for .json/.yaml names); the documentation pages themselves
    take no path parameter.
    """
    if "path" in connection.path_params:
        raise NotFoundException()


def create_app(
    settings: Settings | None = None, *, model_loader: ModelLoader | None = None
) -> Litestar:
    """Build the app. `model_loader` replaces loading settings.model (tests inject models)."""
    settings = settings or Settings.from_env()
    metrics = Metrics()
    engine = create_engine(settings.database_url, **settings.pool_options)
    write_engine = (
        create_engine(settings.database_url, immediate=True, **settings.pool_options)
        if "sqlite" in engine.dialect.name
        else None
    )
    db = Database(engine, write_engine)
    metrics.watch_pools(
        {"main": engine.sync_engine.pool}
        | ({"writes": write_engine.sync_engine.pool} if write_engine is not None else {}),
        limit=settings.db_pool_size + settings.db_pool_overflow,
    )
    jobs = JobStore(db, lease_s=settings.job_lease_s, attempts=settings.job_attempts)
    # The API role runs no model: its analyses and answers are jobs for the workers.
    host: ModelHost | RemoteHost = (
        RemoteHost(settings, db, jobs)
        if settings.role == "api"
        else ModelHost(settings, metrics, loader=model_loader)
    )
    if settings.role == "worker" and host.state is ModelState.NONE:
        raise SettingsError("FAKESCOPE_ROLE=worker needs a model (FAKESCOPE_MODEL)")
    images: ImageStore = (
        DatabaseImageStore(db, retry_s=request_budget_s(settings.request_timeout_s))
        if settings.images_in_database
        else FileImageStore(settings.image_store_dir)
    )
    analyses = AnalysisService(settings, db, host, metrics, images)
    ask = AskService(analyses)
    worker = (
        JobWorker(host, analyses, ask, jobs, metrics)
        if isinstance(host, ModelHost) and settings.role == "worker"
        else None
    )
    # Review decisions made in other processes (PostgreSQL): drop the image's served entry.
    decisions = (
        Wakeups(settings.database_url, [DECISIONS_CHANNEL], on_payload=analyses.served.invalidate)
        if settings.role != "worker"
        else None
    )
    # Files are kept where the model runs (all-in-one, or the workers); rows in the
    # database are purged by every process (each pass is one query when nothing is due).
    keeps_images = settings.role != "api" or settings.images_in_database
    retention = (
        ImageRetention(images, db, settings.image_retention_days, metrics.images_purged.inc)
        if settings.image_retention_days is not None and keeps_images
        else None
    )
    fetcher = GuardedFetcher(
        FetchLimits(
            max_bytes=settings.max_upload_bytes, total_timeout_s=settings.url_fetch_timeout_s
        ),
        allow_loopback=settings.allow_private_urls,
    )
    alchemy = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
        create_all=False,
    )

    async def check_database(_app: Litestar) -> None:
        await ensure_migrated(engine)

    async def start_model(_app: Litestar) -> None:
        await host.start()
        metrics.model_ready.set(1 if host.ready else 0)
        if retention is not None:
            retention.start()
        if worker is not None:
            worker.start()
        if decisions is not None:
            decisions.start()

    async def stop_model(_app: Litestar) -> None:
        if decisions is not None:
            await decisions.stop()
        if worker is not None:
            await worker.stop()  # gives back the jobs it could not finish
        if retention is not None:
            await retention.stop()
        await host.stop()  # fails the work still queued
        await ask.stop()  # then lets what is in flight store its result or fail
        await analyses.stop()
        await db.dispose()

    async def warm_pdq_index(app: Litestar) -> None:
        if settings.role != "worker":  # the roles that answer /v1/lookup; startup goes on
            app.state.pdq_index.start_warm_up()

    async def stop_pdq_index(app: Litestar) -> None:
        await app.state.pdq_index.stop_warm_up()

    log_output = LogOutput()  # started first, stopped last: startup and shutdown logs too
    middleware: list[Any] = []
    stores: dict[str, Store] = {}
    if settings.rate_limit is not None:
        unit, count = settings.rate_limit
        limit = RateLimitConfig(
            rate_limit=(unit, count),  # type: ignore[arg-type]
            exclude=UNLIMITED_PATHS,
            check_throttle_handler=rate_limited,  # reviewers at work skip the per-address limit
            identifier_for_request=client_of,  # an IPv6 client is its /64
        )
        if settings.limits_in_database:
            # Counted in SQL, atomically: N API processes allow the rate, not N times it.
            limit.middleware_class = SharedRateLimitMiddleware
            stores[limit.store] = DatabaseStore(db)
        middleware.append(limit.middleware)
    cors = None
    if settings.cors_origins:
        cors = CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", "Authorization", "Accept"],
            expose_headers=["X-Cache", "Retry-After"],
        )
    # Litestar copies the handler for every guard call: no guard at all when tokens are off.
    guards = [require_client_token] if settings.require_token else []
    public = [AnalyzeController, LookupController, AskController, ReportsController]
    # A worker answers health checks and metrics only; its work comes from the job queue.
    route_handlers: list[Any] = [HealthController]
    if settings.role != "worker":
        route_handlers += [Router("/", route_handlers=public, guards=guards)]
        route_handlers += admin_routers()
    app = Litestar(
        route_handlers=route_handlers,
        plugins=[SQLAlchemyPlugin(config=alchemy)],
        on_startup=[log_output.start, check_database, start_model, warm_pdq_index],
        on_shutdown=[stop_pdq_index, stop_model, log_output.stop],
        logging_config=None,  # the app's own, bound to its lifespan (server/log_output.py)
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=middleware,
        stores=stores,
        cors_config=cors,
        request_max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        request_class=ApiRequest,
        before_request=check_declared_json_body,
        openapi_config=OpenAPIConfig(
            title="FakeScope",
            version="1",
            description="AI-generated image forensics: verdicts, evidence and explanations.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            openapi_router=Router(
                "/schema", route_handlers=[], include_in_schema=False, guards=[no_schema_page]
            ),
            components=openapi_docs.COMPONENTS,
        ),
        template_config=template_config(),
        state=State(
            {
                "settings": settings,
                "db": db,
                "metrics": metrics,
                "model_host": host,
                "fetcher": fetcher,
                "analysis_service": analyses,
                "ask_service": ask,
                "job_worker": worker,
                "job_store": jobs,
                "decision_feed": decisions,
                "image_retention": retention,
                "image_store": images,
                "pdq_index": LivePdqIndex(db),
            }
        ),
    )
    if cors is not None:  # Litestar's CORS decides; a preflight it refuses gets a problem
        app.asgi_handler = CorsRefusalProblems(app.asgi_handler, cors)
    # Litestar's OPTIONS answers list only the methods a route had when first registered.
    app.asgi_handler = AllowEveryMethod(app.asgi_handler, methods_by_template(app))
    # Before anything builds request.url: a Host header or target it cannot parse is a 400.
    app.asgi_handler = RefuseUnreadableRequests(app.asgi_handler)
    # Counted around the router, not as route middleware: requests no route answers (404,
    # 405, a bad Host) never reach route middleware, and would be missing from the metrics.
    app.asgi_handler = RequestMetricsMiddleware(app.asgi_handler, metrics=metrics)
    return app
