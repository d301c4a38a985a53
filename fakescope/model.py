"""A loaded forensic model: verdict scores from one forward pass, answers from generation.

The scoring path reads top to bottom:

    images ──prepare_detect──► inputs (chat template, left padding)
           ──forward (one pass, last position only)──► answer-position logits
           ──margin_from_logits──► margin per image
           ──sigmoid (or the model's calibration, calibration.py)──► p_fake per image

Left padding puts the answer position last in every row, so one slice reads it for the
whole batch; the attention mask hides the padding and explicit position ids keep every
row's positions what they would be alone. That is why a batched ``p_fake`` equals the
one-at-a-time ``p_fake``.

Answers (generation) come from ``answering.Answering``, which ``ForensicModel`` inherits.

Thread-safety: a ForensicModel is not safe for concurrent use. One worker thread uses a
model at a time (the server's batcher serialises calls). Preprocessing (``prepare``,
``prepare_detect``) touches no model state, so it may run on another thread than the
forward pass, overlapping with it; but only one thread at a time may preprocess, since
a fast tokenizer raises "Already borrowed" when two threads call it at once.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from transformers import BatchFeature

from fakescope.answering import Answering
from fakescope.compiled_layers import CompiledLayers, decoder_layers, run_compiled
from fakescope.cuda_graphs import GraphCaptureError, VerdictGraphs
from fakescope.kernels.nf4_dispatch import KernelReport
from fakescope.pixels import ClipPixels
from fakescope.prompts import DETECT_PROMPT
from fakescope.scoring import margin_from_logits, resolve_label_tokens

if TYPE_CHECKING:
    from fakescope.calibration import Calibration

logger = logging.getLogger(__name__)

_PIXEL_THREADS = 4  # preprocessing threads for a large detect batch


def model_key(
    model_id: str,
    revision: str | None,
    quantization: str,
    calibration: Calibration | None = None,
) -> str:
    """The cache identity of a checkpoint loaded with a quantization (`ModelInfo.key`), and
    with a calibration where one is applied (`+cal-<digest of a, b>`): a calibrated p_fake is
    another answer than the raw one, and must never be served for it (or the other way)."""
    key = f"{model_id}@{revision or '-'}:{quantization}"
    return calibration.key_of(key) if calibration is not None else key


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
    # Platt scaling applied to every p_fake the model gives (None: the raw TPE p_fake).
    calibration: Calibration | None = None

    @property
    def key(self) -> str:
        """Cache identity: the same key means the same weights, quantized the same way, and
        the same calibration of p_fake (or none)."""
        return model_key(self.id, self.revision, self.quantization, self.calibration)

    @property
    def base_key(self) -> str:
        """The identity of the weights alone: what a calibration is fitted for."""
        return model_key(self.id, self.revision, self.quantization)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "quantization": self.quantization,
            "untrained": self.untrained,
            "family": self.family,
            "calibration": self.calibration.describe() if self.calibration else None,
        }


class ForensicModel(Answering):
    """One checkpoint with its processor, asking the forensic questions of prompts.py.

    With ``compile_layers``, verdict forwards run the language model's decoder layers
    compiled (``compiled_layers``); ``warm_up`` compiles and captures ahead of traffic.

    Not thread-safe: use one model from one worker thread at a time.
    """

    def __init__(
        self, model: Any, processor: Any, info: ModelInfo, *, compile_layers: bool = False
    ) -> None:
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
        self._detect_ids = self._fixed_detect_ids()
        self._pixel_pool: ThreadPoolExecutor | None = None
        # The processor's pixels computed straight from PIL, where pixels.py can.
        self._fast_pixels = ClipPixels.for_processor(processor.image_processor)
        # CUDA graphs: on a GPU, with bitsandbytes NF4 or no quantization (both measured;
        # int8's outlier handling is not known to capture).
        on_graphs = self.model.device.type == "cuda" and info.quantization in ("nf4", "none")
        self._init_answering(on_graphs=on_graphs)
        layers = decoder_layers(model) if compile_layers else None
        self.compiled_layers = CompiledLayers(layers) if layers is not None else None
        self.verdict_graphs = self._verdict_graphs() if on_graphs else None
        # Set by the loader where it chose NF4 kernels for small batches (CUDA only).
        self.kernel_report: KernelReport | None = None

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
        """Model inputs for the detect prompt on each image (the input of ``score_inputs``).

        Where every image becomes the same number of tokens (LLaVA-1.5: a fixed crop),
        the prompt's ids are tokenized once and reused, and only the pixels are computed
        per image, on several threads for a large batch, straight from PIL where
        ``pixels.ClipPixels`` reproduces the processor: the same tensors the processor
        makes, at a fraction of the CPU time.
        """
        if self._detect_ids is None or not images:
            return self._encode(images, [self._detect_text] * len(images))
        ids = self._detect_ids.expand(len(images), -1).clone()
        return BatchFeature(
            {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "pixel_values": self._pixel_values(images),
            }
        )

    def _fixed_detect_ids(self) -> torch.Tensor | None:
        """The detect prompt's ids if they do not depend on the image, else None."""
        probes = [Image.new("RGB", (64, 48)), Image.new("RGB", (40, 96))]
        encoded = self._encode(probes, [self._detect_text] * 2)
        if set(encoded.keys()) != {"input_ids", "attention_mask", "pixel_values"}:
            return None  # image sizes or grids travel with the pixels: per-image tokens
        ids = encoded["input_ids"]
        if not bool(encoded["attention_mask"].all()) or not torch.equal(ids[0], ids[1]):
            return None
        return ids[:1].clone()

    def _pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        fast = self._fast_pixels
        processor = self.processor.image_processor

        def pixels(chunk: list[Image.Image]) -> torch.Tensor:
            if fast is not None:
                return fast.crops(chunk)  # uint8; normalised below, for the whole batch
            values: torch.Tensor = processor(images=chunk, return_tensors="pt")["pixel_values"]
            return values

        if len(rgb) < 2 * _PIXEL_THREADS:
            values = pixels(rgb)
        else:
            # PIL's resize releases the GIL: chunks of the batch resize in parallel.
            if self._pixel_pool is None:
                self._pixel_pool = ThreadPoolExecutor(_PIXEL_THREADS, "fakescope-pixels")
            size = -(-len(rgb) // _PIXEL_THREADS)
            chunks = [rgb[i : i + size] for i in range(0, len(rgb), size)]
            values = torch.cat(list(self._pixel_pool.map(pixels, chunks)))
        return values if fast is None else fast.normalize(values)

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
        """``p_fake`` for inputs made by ``prepare_detect``: one forward pass.

        Every p_fake the model gives leaves here (``score`` comes through too): with a
        calibration in ``info``, it is the calibrated one, computed from the margin itself.

        On a GPU, small LLaVA batches replay the forward as a CUDA graph (the same
        computation, without the Python and launch overhead that dominates at batch 1).
        """
        answer_logits = self._replayed_verdict_logits(inputs)
        if answer_logits is None:
            batch = self._to_model(inputs)
            extra: dict[str, Any] = {"use_cache": False}
            if self._keeps_last_logits_only:
                extra["logits_to_keep"] = 1  # only the answer position's logits are needed
            logits = run_compiled(self.compiled_layers, lambda: self.model(**batch, **extra).logits)
            answer_logits = logits[:, -1, :]  # left padding: the answer position is last
        margin = margin_from_logits(answer_logits, self.fake_ids, self.real_ids)
        calibration = self.info.calibration
        if calibration is not None:
            return [float(p) for p in calibration.apply_margin(margin.numpy())]
        return [float(p) for p in torch.sigmoid(margin)]

    def warm_up(self, max_batch: int) -> None:
        """Compile and capture now what the first requests would otherwise wait for.

        Verdict graphs are captured per batch size (up to ``max_batch``) and compiled
        layers compile on their first call; without either, this runs two small
        forwards (batch 1 and ``max_batch``), which also bring the process's lazy
        allocations forward.
        """
        sizes = {1, max_batch}
        if self.verdict_graphs is not None:
            sizes.update(range(1, min(max_batch, self.verdict_graphs.max_batch) + 1))
        blank = Image.new("RGB", (64, 64))
        for size in sorted(sizes):
            started = time.perf_counter()
            self.score([blank] * size)
            elapsed = time.perf_counter() - started
            logger.info("warmed up verdicts at batch %d in %.1f s", size, elapsed)

    def _verdict_graphs(self) -> VerdictGraphs | None:
        """Graphs for the LLaVA detect forward, where its prompt allows them."""
        if self.info.family != "llava" or self._detect_ids is None:
            return None
        try:
            return VerdictGraphs(self.model, self._detect_ids, compiled=self.compiled_layers)
        except ValueError:  # the image tokens are not one block
            return None

    def _replayed_verdict_logits(self, inputs: BatchFeature) -> torch.Tensor | None:
        """Answer logits from the verdict graphs, or None where they do not apply."""
        graphs, ids = self.verdict_graphs, inputs["input_ids"]
        if graphs is None or self._detect_ids is None or ids.shape[0] > graphs.max_batch:
            return None
        if ids.shape[1] != self._detect_ids.shape[1] or not bool((ids == self._detect_ids).all()):
            return None  # not the detect prompt alone
        pixels = inputs["pixel_values"].to(self.model.device, self.model.dtype)
        try:
            return graphs.logits(pixels)
        except GraphCaptureError as exc:
            failure = exc
        if graphs.compiled is not None:
            # Compiled layers that do not capture may still run compiled, eagerly (batches
            # above max_batch do); the plain layers may capture: small batches keep graphs.
            logger.warning("verdict graphs without compiled layers: %s", failure)
            graphs = self.verdict_graphs = VerdictGraphs(
                self.model, self._detect_ids, max_batch=graphs.max_batch
            )
            try:
                return graphs.logits(pixels)
            except GraphCaptureError as exc:
                failure = exc
        logger.warning("verdicts without CUDA graphs: %s", failure)
        self.verdict_graphs = None
        return None

    def _to_model(self, inputs: BatchFeature) -> dict[str, Any]:
        # Floating tensors (pixel values) take the model's dtype; ids stay integers.
        batch = dict(inputs.to(self.model.device, dtype=self.model.dtype))
        if self._explicit_positions:
            mask = batch["attention_mask"]
            batch["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return batch


def _computes_own_positions(model: Any) -> bool:
    inner = getattr(model, "model", None)
    return hasattr(model, "get_rope_index") or hasattr(inner, "get_rope_index")
