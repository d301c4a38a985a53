"""The answering half of a forensic model: text answers by generation.

``ForensicModel`` inherits ``Answering``: the verdict path stays in model.py, reading
straight through, and what answers questions about an image lives here.

    images, prompts ──prepare──► inputs ──greedy decode──► token ids ──► answer text

On a GPU, greedy answers decode through ``cuda_graphs.GraphDecoder`` (static KV cache,
each step one CUDA-graph replay): the same tokens as ``model.generate``, several times
faster at small batch sizes, where Python and kernel launches are the bottleneck. The rest
(sampling or other generate() options, a CPU, a sliding-window cache) takes
``model.generate``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from threading import Event, Thread
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from transformers import (
    BatchFeature,
    StaticCache,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from fakescope.answer_pieces import GENERATED_TOKENS, AnswerPieces, OnText, PieceStreamer
from fakescope.continuous import ContinuousDecoding
from fakescope.decoder_pool import DecoderPool
from fakescope.joining import AnswerRequest, JoinInbox

logger = logging.getLogger(__name__)


class Answering:
    """Generation for ``ForensicModel``: single, batched, streamed and continuous answers.

    A mixin: the model class supplies ``model``, ``tokenizer`` and ``prepare`` and calls
    ``_init_answering`` once they are set.
    """

    model: Any
    tokenizer: Any
    eos_ids: list[int]
    graph_decoding: bool
    _decoders: DecoderPool

    if TYPE_CHECKING:  # supplied by ForensicModel, next to the scoring path's preprocessing

        def prepare(
            self, images: Sequence[Image.Image], prompts: Sequence[str]
        ) -> BatchFeature: ...

    def _init_answering(self, *, on_graphs: bool) -> None:
        """Answering state; ``on_graphs``: this device and quantization capture graphs."""
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        # Decoding takes 1-D positions (LLaVA) and Qwen2-VL's 3-D multimodal-RoPE positions
        # alike. Rows join a decode by copying into full-length cache layers; a
        # sliding-window layer keeps another layout, so such models decode through generate().
        self.graph_decoding = on_graphs and not _has_sliding_cache_layers(self.model)
        self._decoders = DecoderPool(self.model)

    # -- answers to a batch, whole or streamed ---------------------------------------

    def generate(
        self,
        image: Image.Image,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        min_new_tokens: int = 0,
        **generate_kwargs: Any,
    ) -> str:
        """The model's answer to ``prompt`` about ``image`` (greedy unless told otherwise)."""
        answers = self.generate_batch(
            [image],
            [prompt],
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            **generate_kwargs,
        )
        return answers[0]

    @torch.inference_mode()
    def generate_batch(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 256,
        min_new_tokens: int = 0,
        on_text: OnText | None = None,
        should_stop: Callable[[], bool] | None = None,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Answers for image/prompt pairs in one left-padded batch.

        ``on_text(row, piece)`` is told each row's new text as it is decoded, on this
        thread (a batch of streamed answers); ``should_stop()``, asked after each step,
        ends decoding early, every row keeping what it has. On a GPU the graph decoder
        answers (a ``streamer`` is told of each step as ``model.generate`` tells it); any
        other ``generate_kwargs`` (e.g. sampling or ``cache_implementation``) send the
        batch to ``model.generate`` instead.
        """
        if not images:
            return []
        inputs = self.prepare(images, prompts)
        pieces = AnswerPieces(
            self.tokenizer, len(images), self.eos_ids, streamed=on_text is not None
        )
        if self._graph_decodes(generate_kwargs):
            streamer = generate_kwargs.get("streamer")
            if streamer is not None:  # told of the prompt, then of each step, like generate()
                streamer.put(inputs["input_ids"])
            for step in self._decode(inputs, max_new_tokens, min_new_tokens):
                if streamer is not None:
                    streamer.put(torch.tensor(step))
                for row, piece in pieces.add(step):
                    if on_text is not None:
                        on_text(row, piece)
                if should_stop is not None and should_stop():
                    break
            if on_text is not None:
                for row, piece in pieces.flush():
                    on_text(row, piece)
            if streamer is not None:
                streamer.end()
            return pieces.texts()
        settings = self._generation_settings(max_new_tokens, min_new_tokens, generate_kwargs)
        if on_text is not None:
            if "streamer" in settings:
                raise ValueError("give on_text or a streamer, not both")
            settings["streamer"] = PieceStreamer(pieces, on_text)
        if should_stop is not None:
            settings["stopping_criteria"] = StoppingCriteriaList(
                [*settings.get("stopping_criteria", []), _StopWhen(should_stop)]
            )
        output = self.model.generate(**self._generation_inputs(inputs), **settings)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        if on_text is None:  # a streamer counted them as they came
            for step in new_tokens.T.tolist():
                pieces.add(step)
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [text.strip() for text in texts]

    def stream(
        self,
        image: Image.Image,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        min_new_tokens: int = 0,
        **generate_kwargs: Any,
    ) -> Iterator[str]:
        """The answer as text pieces while it is generated.

        Graph decoding runs on the caller's thread; ``model.generate`` runs in a thread
        of its own. Closing the iterator early stops the generation either way.
        """
        inputs = self.prepare([image], [prompt])
        if self._graph_decodes(generate_kwargs):
            yield from self._stream_decoded(inputs, max_new_tokens, min_new_tokens)
            return
        streamer = _CountingTextStreamer(
            self.tokenizer, self.eos_ids, skip_prompt=True, skip_special_tokens=True
        )
        settings = self._generation_settings(max_new_tokens, min_new_tokens, generate_kwargs)
        # A reader that stops early (a client gone) stops the generation too.
        stop = Event()
        settings["stopping_criteria"] = StoppingCriteriaList(
            [*settings.get("stopping_criteria", []), _StopWhen(stop.is_set)]
        )
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(
                        **self._generation_inputs(inputs), streamer=streamer, **settings
                    )
            except BaseException as exc:
                failure.append(exc)
                streamer.end()  # unblock the reader; the error is re-raised below

        thread = Thread(target=run, name="fakescope-stream", daemon=True)
        thread.start()
        started = False
        try:
            for piece in streamer:
                if not started:
                    piece = piece.lstrip()  # as generate() strips the answer
                    started = bool(piece)
                if piece:
                    yield piece
        finally:
            stop.set()
            thread.join()
        if failure:
            raise failure[0]

    def _graph_decodes(self, generate_kwargs: dict[str, Any]) -> bool:
        """Greedy decoding without generate() options (a streamer aside) takes the graphs."""
        return self.graph_decoding and set(generate_kwargs) <= {"streamer"}

    def _stream_decoded(
        self, inputs: BatchFeature, max_new_tokens: int, min_new_tokens: int
    ) -> Iterator[str]:
        pieces = AnswerPieces(self.tokenizer, 1, self.eos_ids)
        for step in self._decode(inputs, max_new_tokens, min_new_tokens):
            for _, piece in pieces.add(step):
                yield piece
            if pieces.all_ended:
                break
        for _, piece in pieces.flush():
            yield piece

    def _decode(
        self, inputs: BatchFeature, max_new_tokens: int, min_new_tokens: int
    ) -> Iterator[list[int]]:
        """Greedy token ids per step from a graph decoder of this batch size, this
        decoding's alone until it ends (then kept for the next one)."""
        batch = self._generation_inputs(inputs)
        rows, length = batch["input_ids"].shape
        decoder = self._decoders.take(rows, length + max_new_tokens)
        try:
            yield from decoder.decode(
                batch,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min(min_new_tokens, max_new_tokens),
                eos_token_ids=self.eos_ids,
            )
        finally:
            self._decoders.give_back(decoder)

    def release_decoders(self) -> None:
        """Let go of the graph decoders kept for later (their KV caches and graphs).

        A decoding under way keeps its own; the others are rebuilt, and captured again,
        when next needed. For when the device runs short of memory.
        """
        dropped = self._decoders.clear()
        gc.collect()  # tensors of a failed call may still be held in reference cycles
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        logger.info("released %d kept graph decoders", dropped)

    # -- continuous batching: answers joining a running decode (fakescope/continuous.py) --

    @property
    def decodes_continuously(self) -> bool:
        """Whether ``answer_continuously`` can let answers join a running decode."""
        return self.graph_decoding

    @torch.inference_mode()
    def answer_continuously(
        self, requests: Sequence[AnswerRequest], inbox: JoinInbox, *, rows: int
    ) -> int:
        """Greedy answers to ``requests``, and to those offered to ``inbox`` meanwhile.

        The requests decode together in a graph decoder of at most ``rows`` rows (more
        where there are more requests); between steps, waiting requests join free rows,
        and each row leaves (``finish``) as soon as its answer ends. Returns once no row
        decodes, with how many requests joined; the inbox is then closed, holding the
        requests that never fitted.
        """

        def prepare(images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, Any]:
            return self._generation_inputs(self.prepare(images, prompts))

        session = ContinuousDecoding(
            prepare=prepare,
            decoders=self._decoders,
            tokenizer=self.tokenizer,
            eos_ids=self.eos_ids,
            inbox=inbox,
            release=self.release_decoders,
        )
        session.run(requests, rows=rows)
        return session.joined

    def _generation_inputs(self, inputs: BatchFeature) -> dict[str, Any]:
        # generate() derives positions from the attention mask itself.
        return dict(inputs.to(self.model.device, dtype=self.model.dtype))

    def _generation_settings(
        self, max_new_tokens: int, min_new_tokens: int, overrides: dict[str, Any]
    ) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": min(min_new_tokens, max_new_tokens),
            "do_sample": False,  # reproducible answers: they are cached
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if not settings["do_sample"]:
            # Silence sampling settings a checkpoint's generation_config may carry.
            settings.update({"temperature": None, "top_p": None, "top_k": None})
        settings.update(overrides)
        return settings


class _StopWhen(StoppingCriteria):
    """Stops a generation when ``stop()`` says so (asked after each step)."""

    def __init__(self, stop: Callable[[], bool]) -> None:
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        return torch.full(
            (input_ids.shape[0],), bool(self.stop()), dtype=torch.bool, device=input_ids.device
        )


class _CountingTextStreamer(TextIteratorStreamer):
    """A one-row text streamer that also counts the answer's tokens (``GENERATED_TOKENS``)."""

    def __init__(self, tokenizer: Any, eos_ids: list[int], **kwargs: Any) -> None:
        super().__init__(tokenizer, **kwargs)
        self._eos = set(eos_ids)
        self._prompt_seen = False
        self._ended = False

    def put(self, value: Any) -> None:
        if self._prompt_seen and not self._ended:
            tokens = value.reshape(-1).tolist()
            answer = [t for t in tokens if t not in self._eos]
            self._ended = len(answer) < len(tokens)
            if answer:
                GENERATED_TOKENS.add(len(answer))
        self._prompt_seen = True
        super().put(value)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end an answer, as ``model.generate`` reads them."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return [int(i) for i in ids if i is not None]


def _has_sliding_cache_layers(model: Any) -> bool:
    """Whether a static cache for ``model`` would hold a sliding-window layer."""
    cache = StaticCache(config=model.config, max_cache_len=8)  # lazy: allocates nothing
    return any(getattr(layer, "is_sliding", False) for layer in cache.layers)
