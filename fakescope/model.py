"""A loaded forensic model: verdict scores from one forward pass, answers from generation.

The scoring path reads top to bottom:

    images ──prepare_detect──► inputs (chat template, left padding)
           ──forward (one pass, last position only)──► answer-position logits
           ──p_fake_from_logits──► p_fake per image

Left padding puts the answer position last in every row, so one slice reads it for the
whole batch; the attention mask hides the padding and explicit position ids keep every
row's positions what they would be alone. That is why a batched ``p_fake`` equals the
one-at-a-time ``p_fake``.

Thread-safety: a ForensicModel is not safe for concurrent use. One worker thread uses a
model at a time (the server's batcher serialises calls). Preprocessing (``prepare``,
``prepare_detect``) touches no model state, so it may run on another thread than the
forward pass, overlapping with it; but only one thread at a time may preprocess, since
a fast tokenizer raises "Already borrowed" when two threads call it at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from threading import Event, Thread
from typing import Any

import torch
from PIL import Image
from transformers import (
    BatchFeature,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from fakescope.prompts import DETECT_PROMPT
from fakescope.scoring import p_fake_from_logits, resolve_label_tokens


@dataclass(frozen=True)
class ModelInfo:
    """What produced a result: enough to cache it and to say how much to trust it."""

    id: str
    revision: str | None
    quantization: str  # "nf4" | "int8" | "none"
    device: str
    dtype: str
    family: str  # config.model_type: "llava", "llava_next", "qwen2_vl", ...
    untrained: bool  # random weights (tiny / benchmark checkpoints): outputs mean nothing

    @property
    def key(self) -> str:
        """Cache identity: the same key means the same weights, quantized the same way."""
        return f"{self.id}@{self.revision or '-'}:{self.quantization}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "quantization": self.quantization,
            "untrained": self.untrained,
            "family": self.family,
        }


class ForensicModel:
    """One checkpoint with its processor, asking the forensic questions of prompts.py.

    Not thread-safe: use one model from one worker thread at a time.
    """

    def __init__(self, model: Any, processor: Any, info: ModelInfo) -> None:
        self.model = model
        self.processor = processor
        self.info = info
        self.tokenizer = processor.tokenizer
        # Left padding: the answer position is the last one in every row of a batch.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.fake_ids, self.real_ids = resolve_label_tokens(self.tokenizer)
        forward_params = inspect.signature(model.forward).parameters
        self._keeps_last_logits_only = "logits_to_keep" in forward_params
        # Multimodal-RoPE families (Qwen2-VL...) derive positions from the mask themselves.
        self._explicit_positions = not _computes_own_positions(model)
        self._detect_text = self.chat_text(DETECT_PROMPT)

    # -- preprocessing (no model state: may run off the inference thread, one at a time) -

    def chat_text(self, prompt: str) -> str:
        """The prompt with one image, rendered by the checkpoint's own chat template."""
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
        ]
        text: str = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        return text

    def prepare(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> BatchFeature:
        """Model inputs for image/prompt pairs: chat template, left padding, CPU tensors."""
        if len(images) != len(prompts):
            raise ValueError("images and prompts must have the same length")
        texts = [self.chat_text(prompt) for prompt in prompts]
        return self._encode(images, texts)

    def prepare_detect(self, images: Sequence[Image.Image]) -> BatchFeature:
        """Model inputs for the detect prompt on each image (the input of ``score_inputs``)."""
        return self._encode(images, [self._detect_text] * len(images))

    def _encode(self, images: Sequence[Image.Image], texts: list[str]) -> BatchFeature:
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        inputs: BatchFeature = self.processor(
            text=texts, images=rgb, padding=True, return_tensors="pt"
        )
        return inputs

    # -- scoring: one forward pass per batch ------------------------------------------

    def score(self, images: Sequence[Image.Image]) -> list[float]:
        """``p_fake`` of each image by token-based probability estimation (no generation)."""
        if not images:
            return []
        return self.score_inputs(self.prepare_detect(images))

    @torch.inference_mode()
    def score_inputs(self, inputs: BatchFeature) -> list[float]:
        """``p_fake`` for inputs made by ``prepare_detect``: one forward pass."""
        batch = self._to_model(inputs)
        extra: dict[str, Any] = {"use_cache": False}
        if self._keeps_last_logits_only:
            extra["logits_to_keep"] = 1  # only the answer position's logits are needed
        logits = self.model(**batch, **extra).logits
        answer_logits = logits[:, -1, :]  # left padding: the answer position is last
        p_fake = p_fake_from_logits(answer_logits, self.fake_ids, self.real_ids)
        return [float(p) for p in p_fake.cpu()]

    def _to_model(self, inputs: BatchFeature) -> dict[str, Any]:
        # Floating tensors (pixel values) take the model's dtype; ids stay integers.
        batch = dict(inputs.to(self.model.device, dtype=self.model.dtype))
        if self._explicit_positions:
            mask = batch["attention_mask"]
            batch["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return batch

    # -- generation -------------------------------------------------------------------

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
        **generate_kwargs: Any,
    ) -> list[str]:
        """Answers for image/prompt pairs in one left-padded batch.

        ``generate_kwargs`` go to ``model.generate`` (e.g. ``cache_implementation``).
        """
        if not images:
            return []
        inputs = self.prepare(images, prompts)
        output = self.model.generate(
            **self._generation_inputs(inputs),
            **self._generation_settings(max_new_tokens, min_new_tokens, generate_kwargs),
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
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
        """The answer as text pieces while it is generated (generation runs in a thread)."""
        inputs = self.prepare([image], [prompt])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        settings = self._generation_settings(max_new_tokens, min_new_tokens, generate_kwargs)
        # A reader that stops early (a client gone) stops the generation too.
        stop = _StopWhenSet()
        settings["stopping_criteria"] = StoppingCriteriaList(
            [*settings.get("stopping_criteria", []), stop]
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
            stop.event.set()
            thread.join()
        if failure:
            raise failure[0]

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


class _StopWhenSet(StoppingCriteria):
    """Stops a generation from another thread."""

    def __init__(self) -> None:
        self.event = Event()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


def _computes_own_positions(model: Any) -> bool:
    inner = getattr(model, "model", None)
    return hasattr(model, "get_rope_index") or hasattr(inner, "get_rope_index")
