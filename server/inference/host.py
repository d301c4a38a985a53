"""The process's one model: loaded once at startup on the model thread, then served by a queue."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from server.db.analyses import PROVENANCE_ONLY_KEY, Identity
from server.inference.model_thread import model_executor
from server.inference.queue import InferenceQueue
from server.inference.queue_jobs import QueueObserver
from server.settings import Settings

if TYPE_CHECKING:
    from fakescope.joining import AnswerRequest, JoinInbox

log = logging.getLogger("fakescope.server")
ModelLoader = Callable[[], Any]


class ModelState(StrEnum):
    NONE = "provenance-only"  # no model configured: provenance evidence only, by design
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class CheckpointLoader:
    """Loads settings.model; `expected_key` tells its cache identity before the weights load.

    With FAKESCOPE_CALIBRATION, the model's p_fake are calibrated, and both keys say so
    (`+cal-<digest>`): analyses cached without it are not served as calibrated ones.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.calibration = settings.load_calibration()

    @property
    def model(self) -> str:
        assert self.settings.model is not None, "a checkpoint loader without a checkpoint"
        return self.settings.model

    def expected_key(self) -> str:
        from fakescope.loading import expected_model_key

        return expected_model_key(
            self.model,
            quantization=self.settings.quantization,
            device=self.settings.device,
            calibration=self.calibration,
        )

    def __call__(self) -> Any:
        from fakescope.loading import load_model  # torch is imported only when a model is used

        settings = self.settings
        model = load_model(
            self.model,
            quantization=settings.quantization,
            device=settings.device,
            compile=settings.compile,
            nf4_kernel=settings.nf4_kernel,
            progress=False,
            calibration=self.calibration,
        )
        # Graph captures and compilation happen now, before /readyz says ready, rather
        # than in the first requests of each batch size.
        model.warm_up(settings.batch_size)
        return model


def has_two_stages(model: Any) -> bool:
    """Whether the model's class splits scoring into `prepare_detect` and `score_inputs`.

    Asked of the class, not the instance: a wrapper that overrides `score` and forwards
    everything else through `__getattr__` (tests count calls that way) keeps its `score`.
    """
    kind = type(model)
    return callable(getattr(kind, "prepare_detect", None)) and callable(
        getattr(kind, "score_inputs", None)
    )


def streams_batches(model: Any) -> bool:
    """Whether the model's `generate_batch` takes `on_text` and `should_stop` (streams)."""
    method = getattr(model, "generate_batch", None)
    if method is None:
        return False
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    names = {p.name for p in parameters}
    forwards_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return {"on_text", "should_stop"} <= names or forwards_all


class ModelHost:
    """Owns the model, its thread and its queue. `identity` keys cached results."""

    def __init__(
        self,
        settings: Settings,
        observer: QueueObserver,
        loader: ModelLoader | None = None,
    ) -> None:
        from fakescope.prompts import PROMPT_VERSION

        self.settings = settings
        self.prompt_version = PROMPT_VERSION
        self.model: Any = None
        self.error: str | None = None
        self.state = (
            ModelState.NONE if settings.provenance_only and loader is None else ModelState.LOADING
        )
        self._loader = loader or CheckpointLoader(settings)
        # The cache identity the loading model will have, once the loader can tell it:
        # cached results are served under it while the weights load.
        self.expected_key: str | None = None
        self._executor = model_executor()
        self._load_task: asyncio.Future[Any] | None = None
        self._settled = asyncio.Event()  # set once `_loaded` has run
        self._two_stage = False  # set when the model is loaded
        self._streams_batches = False  # likewise
        self.queue = InferenceQueue(
            self._score,
            max_queue=settings.queue_size,
            batch_size=settings.batch_size,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            executor=self._executor,
            observer=observer,
            prepare=self._prepare,
            score_inputs=self._score_inputs,
            generate_batch=self._generate_batch,
            generate_continuously=self._generate_continuously,
            release_memory=self._release_memory,
        )

    # The queue's stages. With a two-stage model, preprocessing (`prepare_detect`) runs on
    # the preprocessing thread and only the forward (`score_inputs`) on the model thread.
    # Otherwise the images pass through and `score()` does both on the model thread (no
    # tokenizer conflict: the preprocessing thread then touches nothing of the model).

    def _score(self, images: Sequence[Any]) -> list[float]:
        return [float(p) for p in self.model.score(images)]

    def _prepare(self, images: Sequence[Any]) -> Any:
        return self.model.prepare_detect(images) if self._two_stage else images

    def _score_inputs(self, inputs: Any) -> list[float]:
        if self._two_stage:
            return [float(p) for p in self.model.score_inputs(inputs)]
        return self._score(inputs)

    def _generate_batch(
        self,
        images: Sequence[Any],
        prompts: Sequence[str],
        max_new_tokens: int,
        *,
        on_text: Callable[[int, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]:
        streamed = on_text is not None or should_stop is not None
        if streamed and self._streams_batches:
            answers = self.model.generate_batch(
                images,
                prompts,
                max_new_tokens=max_new_tokens,
                on_text=on_text,
                should_stop=should_stop,
            )
            return [str(answer) for answer in answers]
        if hasattr(self.model, "generate_batch"):
            answers = self.model.generate_batch(images, prompts, max_new_tokens=max_new_tokens)
        else:
            answers = [
                self.model.generate(image, prompt, max_new_tokens=max_new_tokens)
                for image, prompt in zip(images, prompts, strict=True)
            ]
        texts = [str(answer) for answer in answers]
        if on_text is not None:  # a model that cannot stream a batch: each answer at once
            for row, text in enumerate(texts):
                on_text(row, text)
        return texts

    def _release_memory(self) -> None:
        """After running out of device memory: the model lets go of what it keeps."""
        release = getattr(self.model, "release_decoders", None)
        if callable(release):
            release()

    def _generate_continuously(self, requests: Sequence[AnswerRequest], joiners: JoinInbox) -> bool:
        """Continuous batching where the model decodes through its graph decoder: the
        queue's late generations join the running decode. False (nothing done) elsewhere."""
        if getattr(self.model, "decodes_continuously", False) is not True:
            return False
        self.model.answer_continuously(requests, joiners, rows=self.settings.batch_size)
        return True

    @property
    def ready(self) -> bool:
        return self.state in (ModelState.READY, ModelState.NONE)

    @property
    def identity(self) -> Identity:
        if self.model is not None:
            key = str(self.model.info.key)
        else:
            key = self._checkpoint_key or PROVENANCE_ONLY_KEY
        return Identity(model_key=key, prompt_version=self.prompt_version)

    @property
    def _checkpoint_key(self) -> str | None:
        """The identity read from the checkpoint's files, while its weights load or after
        their load failed (None where it could not be read).

        A failed load keeps it: the results stored under it are what this checkpoint said
        when it loaded before, so they are still its answers. (Weights damaged to another
        size read as another identity, under which nothing is stored.)
        """
        if self.state in (ModelState.LOADING, ModelState.FAILED):
            return self.expected_key
        return None

    @property
    def serves_cached(self) -> bool:
        """Whether cached results can be served: ready, or loading (or failed to load) a
        checkpoint whose cache identity is known; new work still needs `ready`."""
        return self.ready or self._checkpoint_key is not None

    def describe(self) -> dict[str, Any]:
        mode = "provenance-only" if self.state is ModelState.NONE else "model"
        info = self.model.info.to_dict() if self.model is not None else None
        return {"mode": mode, "state": self.state.value, "model": info, "error": self.error}

    async def start(self) -> None:
        if self.state is ModelState.NONE:
            return
        loop = asyncio.get_running_loop()
        # Loading runs on the model thread, so the event loop keeps answering /healthz meanwhile.
        self._load_task = loop.run_in_executor(self._executor, self._expect_then_load)
        self._load_task.add_done_callback(self._loaded)
        self.queue.start()

    def _expect_then_load(self) -> Any:
        expected = getattr(self._loader, "expected_key", None)
        if callable(expected):
            try:
                self.expected_key = str(expected())
            except Exception as exc:  # the load itself will fail and say why
                log.debug("the model's cache identity is not known before loading: %s", exc)
        return self._loader()

    def _loaded(self, future: asyncio.Future[Any]) -> None:
        try:
            self._take_loaded(future)
        finally:
            self._settled.set()

    def _take_loaded(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.state, self.error = ModelState.FAILED, "loading was cancelled"
            return
        exc = future.exception()
        if exc is not None:
            self.state, self.error = ModelState.FAILED, f"{type(exc).__name__}: {exc}"
            log.error("model failed to load: %s", self.error)
            return
        self.model = future.result()
        self._two_stage = has_two_stages(self.model)
        self._streams_batches = streams_batches(self.model)
        self.state = ModelState.READY
        log.info("model ready: %s", self.model.info.key)
        if self.expected_key is not None and self.expected_key != self.model.info.key:
            log.warning(
                "the loaded model's cache identity %s is not the %s served while it loaded",
                self.model.info.key,
                self.expected_key,
            )

    async def wait_ready(self, within_s: float | None = None) -> None:
        """Until loading has ended (ready or failed: see `state`), or `within_s` passed.

        Waits for `_loaded` itself, not the load: a load that ends at once has its result
        before its done-callback has set `state`.
        """
        if self._load_task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_s):
                    await self._settled.wait()

    async def stop(self) -> None:
        await self.queue.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
