"""The analysis workflow: cache first, then decode + provenance, then the batched model."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from fakescope.analysis import Inspection, build_analysis, inspect_image
from fakescope.images import ImageLimits, decode_image
from fakescope.prompts import explain_prompt
from fakescope.verdict import Thresholds
from server.analyze.image_store import ImageStore
from server.analyze.served_cache import ServedCache
from server.background import settle
from server.db.analyses import Identity, add_explanation, fetch_served, store_analysis
from server.db.coalesce import ReadCoalescer
from server.db.database import Database
from server.db.group_commit import GroupCommit
from server.inference.host import ModelHost, ModelState
from server.inference.queue_jobs import Announcement, DeviceMemoryError, QueueFullError
from server.jobs.remote_host import RemoteHost
from server.jobs.retry import request_budget_s
from server.jobs.store import JobOutcome
from server.metrics import Metrics
from server.problems import ProblemError, service_unavailable
from server.settings import Settings

HASH_IN_THREAD_BYTES = 1 << 20
RETRY_AFTER_BUSY_S = 2
RETRY_AFTER_LOADING_S = 5
RETRY_AFTER_NO_WORKERS_S = 5
RETRY_AFTER_MODEL_FAILED_S = 60
STOP_GRACE_S = 5.0  # at shutdown, for work in flight to store its result
EXPLAIN_MODE = "inference"  # what fakescope.tasks.explain asks by default


@dataclass(frozen=True)
class AnalyzeResult:
    analysis: dict[str, Any]
    cache_hit: bool


def storable_text(text: str) -> str:
    """Generated text without NUL characters: a model can decode a NUL byte token, and
    PostgreSQL text columns refuse it (the answer would be lost with a 500)."""
    return text.replace("\x00", "")


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


async def sha256_of(data: bytes) -> str:
    if len(data) < HASH_IN_THREAD_BYTES:
        return hashlib.sha256(data).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())


class AnalysisService:
    """Analyses images once per (sha256, model, prompt version); concurrent twins share work."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        host: ModelHost | RemoteHost,
        metrics: Metrics,
        images: ImageStore,
    ) -> None:
        self.settings = settings
        self.db = db
        self.host = host
        self.metrics = metrics
        self.images = images
        self.served = ServedCache(settings.cache_ttl_s)
        db.decision_listeners.append(self.served.invalidate)
        # Reading and storing analyses go on through a database outage for a few seconds
        # (a dropped connection: a terminated backend, a failover), then answer 503.
        retry_s = request_budget_s(settings.request_timeout_s)
        self._reads = ReadCoalescer(self._fetch_served, retry_s=retry_s)
        self._writes = GroupCommit(db, retry_s=retry_s)
        self.limits = ImageLimits(
            max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels
        )
        self.thresholds = Thresholds(fake=settings.fake_threshold, real=settings.real_threshold)
        self._inflight: dict[tuple[str, str, bool], asyncio.Task[dict[str, Any]]] = {}
        # Per (sha256, model key), the verdict one computation is scoring now, plain or
        # explained: True once stored, False if it failed. The others wait for it.
        self._verdicts: dict[tuple[str, str], asyncio.Future[bool]] = {}
        # Decoding a large image holds hundreds of MB; a few at a time is as fast and bounded.
        self._decode_slots = asyncio.Semaphore(max(2, os.cpu_count() or 2))

    async def stop(self) -> None:
        """At shutdown, after the model host stopped: let the analyses in flight store
        what they have (or fail), before the database goes."""
        await settle(list(self._inflight.values()), STOP_GRACE_S)

    def require_worker(self) -> None:
        """503 on an API process that has no live GPU worker to hand new work to."""
        if isinstance(self.host, RemoteHost) and not self.host.has_workers:
            raise service_unavailable(
                "no GPU worker is running: analyses wait for one (FAKESCOPE_ROLE=worker)",
                RETRY_AFTER_NO_WORKERS_S,
                "no-workers",
            )

    def require_ready(self) -> None:
        """503 unless results can be served (cached ones: an API process knows its
        workers' model from the workers table even while none is live)."""
        if self.host.state is ModelState.LOADING:
            raise service_unavailable(
                "the model is still loading", RETRY_AFTER_LOADING_S, "loading"
            )
        if self.host.state is ModelState.FAILED:
            # An operator must restart the server: retry, but not every few seconds.
            raise service_unavailable(
                f"the model failed to load: {self.host.error}",
                RETRY_AFTER_MODEL_FAILED_S,
                "model-failed",
            )

    def require_cached_reads(self) -> None:
        """503 unless cached results can be served: the model is ready, or it is loading (or
        failed to load) a checkpoint whose cache identity is known already (a restart serves
        its cache; new work still gets `require_ready`'s 503)."""
        if not self.host.serves_cached:
            self.require_ready()

    async def cached(self, sha256: str) -> dict[str, Any] | None:
        return (await self.cached_many([sha256])).get(sha256)

    async def cached_many(self, shas: list[str]) -> dict[str, dict[str, Any]]:
        """Served analyses of those `shas` analysed under the current model and prompts."""
        identity = self.host.identity
        found: dict[str, dict[str, Any]] = {}
        missing = []
        for sha in shas:
            hit = self.served.get(sha, identity)
            if hit is None:
                missing.append(sha)
            else:
                found[sha] = hit
        if missing:
            found.update(await self._reads.get_many(missing))
        return found

    async def _fetch_served(self, shas: list[str]) -> dict[str, Any]:
        identity = self.host.identity
        async with self.db.connect() as conn:
            stored = await fetch_served(conn, shas, identity)
        for sha, served in stored.items():
            self.served.put(sha, identity, served)
        return stored

    def _keeps_images(self) -> bool:
        """Whether this process keeps analysed bytes (for /v1/ask and the review page).

        Where a model runs here, yes. An API process hands its work to the workers, which
        keep what they analysed; with the database store it keeps bytes as well (they land
        in the same shared table).
        """
        if isinstance(self.host, ModelHost):
            return self.host.model is not None
        return self.settings.images_in_database

    async def analyze(self, data: bytes, *, explain: bool) -> AnalyzeResult:
        self.require_cached_reads()
        sha = await sha256_of(data)
        identity = self.host.identity
        # While the model loads, `model` is None: an explanation is then asked for, not
        # dropped (only a cached one can answer before the model is ready).
        explain = explain and (self.host.model is not None or not self.host.ready)
        existing = await self.cached(sha)
        if existing is not None and (not explain or existing["explanation"] is not None):
            self.metrics.cache_result("analyze", hit=True)
            if self._keeps_images():
                # The bytes may have been purged (image retention): keep them again, so
                # that /v1/ask works after this request, and restart their clock.
                await self.images.save(sha, data)
            return AnalyzeResult(existing, cache_hit=True)
        self.metrics.cache_result("analyze", hit=False)
        self.require_ready()
        self.require_worker()
        key = (sha, identity.model_key, explain)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._compute(data, sha, identity, explain, has_row=existing is not None)
            )
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                result = await asyncio.shield(task)
        except TimeoutError as exc:
            raise service_unavailable(
                f"analysis did not finish within {self.settings.request_timeout_s:g} s",
                RETRY_AFTER_BUSY_S,
                "timeout",
            ) from exc
        except QueueFullError as exc:
            self.metrics.rejected.inc()
            raise busy_problem(exc) from exc
        return AnalyzeResult(result, cache_hit=False)

    def _finished(self, key: tuple[str, str, bool], task: asyncio.Task[dict[str, Any]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so that an unawaited failure is not logged twice

    async def _compute(
        self, data: bytes, sha: str, identity: Identity, explain: bool, *, has_row: bool
    ) -> dict[str, Any]:
        verdict = None if has_row else await self._claim_verdict(sha, identity, explain)
        try:
            if verdict is None and not explain:
                return await self._served(sha)  # a twin stored it: nothing left to do
            if isinstance(self.host, RemoteHost):
                analysis = await self._compute_remotely(self.host, data, sha, explain)
                if verdict is not None:
                    verdict.set_result(True)  # the worker stored it (with the explanation)
                return analysis
            assert isinstance(self.host, ModelHost)
            # An explanation is generated after the verdict; announcing it lets the batcher
            # wait a batch window for concurrent explanations and generate them together.
            announcement = self.host.queue.announce_generation() if explain else None
            try:
                return await self._analyse(data, sha, identity, explain, announcement, verdict)
            finally:
                if announcement is not None:
                    announcement.withdraw()
        finally:
            if verdict is not None:
                self._release_verdict((sha, identity.model_key), verdict)

    async def _claim_verdict(
        self, sha: str, identity: Identity, explain: bool
    ) -> asyncio.Future[bool] | None:
        """This computation's claim to score the image, or None once a twin stored its verdict.

        Plain and explained requests for the same image score it once: whichever comes
        first scores it, the other waits for that verdict to be stored (an explanation is
        then added to it). A twin's failure is its own: then this one starts over.

        On an API process a plain request does not wait for an explained twin: the worker
        stores that verdict long before its job ends, and only the job's end is seen here.
        It queues its own job (on the twin's worker, that one waits for the stored verdict)
        under a claim nobody waits for.
        """
        key = (sha, identity.model_key)
        while (twin := self._verdicts.get(key)) is not None:
            if not explain and isinstance(self.host, RemoteHost):
                return asyncio.get_running_loop().create_future()
            if await asyncio.shield(twin):
                return None
        claim: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._verdicts[key] = claim
        return claim

    def _release_verdict(self, key: tuple[str, str], claim: asyncio.Future[bool]) -> None:
        if self._verdicts.get(key) is claim:
            del self._verdicts[key]
        if not claim.done():
            claim.set_result(False)  # failed (or cancelled) before its verdict was stored

    async def _compute_remotely(
        self, remote: RemoteHost, data: bytes, sha: str, explain: bool
    ) -> dict[str, Any]:
        """A GPU worker analyses the image (FAKESCOPE_ROLE=api); bad bytes never reach one."""
        async with self._decode_slots:
            await asyncio.to_thread(decode_image, data, self.limits)
        raise_for_outcome(await remote.run("analyze", sha, image=data, explain=explain))
        return await self._served(sha)

    async def _analyse(
        self,
        data: bytes,
        sha: str,
        identity: Identity,
        explain: bool,
        announcement: Announcement | None,
        verdict: asyncio.Future[bool] | None,
    ) -> dict[str, Any]:
        """Score and store the verdict (unless stored already: `verdict` is None), then add
        the explanation when one is asked for. The verdict is stored first so that a plain
        twin waiting for it is answered before the explanation is generated."""
        assert isinstance(self.host, ModelHost)
        model = self.host.model
        will_score = model is not None and verdict is not None
        if will_score:
            self.host.queue.announce()
        try:
            async with self._decode_slots:
                inspection: Inspection = await asyncio.to_thread(inspect_image, data, self.limits)
        except BaseException:
            if will_score:
                self.host.queue.withdraw()
            raise
        if verdict is not None:
            await self._store_verdict(data, inspection, identity)
            verdict.set_result(True)
        elif model is not None:
            # The bytes are kept again, as for a cache hit (retention may have deleted them).
            await self.images.save(sha, data)
        if explain:
            timings: dict[str, float] = {}
            explanation = await self._explain(inspection, timings, announcement)
            # A generation batch ends together: its explanations share one commit.
            await self._writes.run(
                lambda session: add_explanation(
                    session, sha, identity, explanation, timings["explain"]
                )
            )
        return await self._served(sha)

    async def _store_verdict(self, data: bytes, inspection: Inspection, identity: Identity) -> None:
        assert isinstance(self.host, ModelHost)
        model = self.host.model
        sha = inspection.image.sha256
        # The bytes are kept (for /v1/ask) while the model runs: on the database store a
        # save is a commit of up to 25 MiB, which would otherwise add to the latency.
        keeping = (
            asyncio.get_running_loop().create_task(self.images.save(sha, data))
            if model is not None
            else None
        )
        timings: dict[str, float] = {}
        try:
            p_fake = None
            if model is not None:
                started = time.perf_counter()
                p_fake = await self.host.queue.score(inspection.image.rgb, announced=True)
                timings["score"] = _elapsed_ms(started)
            if keeping is not None:
                await keeping
        except BaseException:
            if keeping is not None:
                keeping.cancel()
                await asyncio.gather(keeping, return_exceptions=True)
            raise
        analysis = build_analysis(
            inspection,
            p_fake=p_fake,
            model_info=model.info if model is not None else None,
            thresholds=self.thresholds,
            timings_ms=timings,
        ).to_dict()
        # One transaction with the other analyses finishing now (one commit for all). An
        # IntegrityError: another process stored this verdict first; theirs is kept.
        with contextlib.suppress(IntegrityError):
            await self._writes.run(lambda session: store_analysis(session, analysis, identity))

    async def _explain(
        self, inspection: Inspection, timings: dict[str, float], announcement: Announcement | None
    ) -> str:
        """The explanation, generated in one batch with the others waiting (same as alone:
        greedy decoding, and the batch's left padding is masked)."""
        assert isinstance(self.host, ModelHost)
        started = time.perf_counter()
        text = await self.host.queue.generate(
            inspection.image.rgb,
            explain_prompt(EXPLAIN_MODE),
            max_new_tokens=self.settings.max_new_tokens,
            key=inspection.image.sha256,
            announcement=announcement,
        )
        timings["explain"] = _elapsed_ms(started)
        return storable_text(text)

    async def _served(self, sha: str) -> dict[str, Any]:
        """The analysis just stored, as served (fresh from the database, review applied)."""
        self.served.invalidate(sha)
        found = await self._reads.get_many([sha])
        return dict(found[sha])


# The message uvicorn's Server.shutdown cancels the requests it gives up on with.
SERVER_SHUTDOWN_CANCEL = "Task cancelled, timeout graceful shutdown exceeded"


@contextlib.contextmanager
def answered_when_cancelled() -> Iterator[None]:
    """Around an HTTP handler's wait for the model: the server cancelling the request
    becomes a 503 `shutting-down` with Retry-After.

    uvicorn cancels the requests still running when its graceful shutdown times out (a
    restart under load), and answers a cancelled request with a bare text/plain 500. Not for
    the job worker: its own cancellation at stop must stay one (it gives the job back).

    Only that cancellation is answered (told by its message): any other (an enclosing
    asyncio.timeout, a TaskGroup whose sibling failed, an anyio cancel scope) belongs to
    whoever cancelled, and uncancelling it here would swallow it: a timeout would surface
    as `shutting-down` instead of TimeoutError, a TaskGroup would wait on a task it stopped.
    """
    try:
        yield
    except asyncio.CancelledError as exc:
        if not (exc.args and exc.args[0] == SERVER_SHUTDOWN_CANCEL):
            raise
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            task.uncancel()  # answered: the request's task ends normally
        raise service_unavailable(
            "the server is shutting down; try again shortly",
            RETRY_AFTER_BUSY_S,
            "shutting-down",
        ) from exc


def busy_problem(exc: QueueFullError) -> ProblemError:
    """503 with Retry-After: the queue is full, or the GPU ran short of memory for the job."""
    if isinstance(exc, DeviceMemoryError):
        return service_unavailable(str(exc), RETRY_AFTER_BUSY_S, "gpu-out-of-memory")
    return service_unavailable(f"server busy: {exc}", RETRY_AFTER_BUSY_S)


def raise_for_outcome(outcome: JobOutcome) -> None:
    """A failed job's problem, raised here as the worker raised it there."""
    if outcome.state == "failed":
        status = outcome.error_status or 503
        headers = {"Retry-After": str(RETRY_AFTER_BUSY_S)} if status == 503 else None
        raise ProblemError(
            status,
            outcome.error_detail or "the GPU worker could not finish this job",
            code=outcome.error_code,
            headers=headers,
        )
