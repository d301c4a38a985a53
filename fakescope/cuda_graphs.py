"""CUDA-graph replays of the two hot model calls: the verdict forward and a decode step.

At small batch sizes a 7B model on a GPU waits on Python, not on arithmetic: one forward
launches thousands of kernels (bitsandbytes adds its own dispatch per 4-bit layer) and
the CPU cannot issue them as fast as the GPU runs them. A CUDA graph records the
kernels of one call once and replays them with a single launch, so the GPU runs back
to back. A graph needs fixed shapes and fixed memory addresses: inputs are copied into
static buffers before a replay and outputs read from static buffers after it.

- ``GraphDecoder`` decodes greedily over a static KV cache, each step one replay. The
  step keeps its whole state on the GPU (next token, positions, attention mask; the
  cache's own write index), so replays need nothing from the host. On an H100 with a
  LLaVA-1.5-7B-shaped model (benchmarks/bench_gpu.py), NF4 at batch 1 went from 22 to
  150 tokens/s. Qwen2-VL families decode through it too: their prompt positions come
  from the model's own multimodal-RoPE index (three rows), which then advance together.
  Rows share the cache's write index, so a prompt may enter a free row between steps
  (``admit``): prefilled on its own, its keys and values are copied into the row's slots
  just before the write index, where left padding would have put them. Keys carry their
  rotary positions, not their slots, so the row decodes what it would alone; the copy
  changes buffer contents only, never addresses, and the captured graph stays valid.
- ``VerdictGraphs`` replays the LLaVA detect forward per batch size. transformers'
  own forward does not capture (its image-token merge fails inside a capture), its
  parts do: the vision tower, then the image features written over the prompt's image
  tokens (one fixed block of positions), then the language model on the last position.

On the CPU (and wherever ``use_graph`` is false) the same code runs eagerly, which is
how the tests check that it computes what ``model.generate`` does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import StaticCache
from transformers.cache_utils import StaticLayer

from fakescope.compiled_layers import CompiledLayers, run_compiled

# Eager runs before capture: the first calls allocate lazily and pick kernels.
_WARMUP_CALLS = 2

logger = logging.getLogger(__name__)


class GraphCaptureError(RuntimeError):
    """A call could not be recorded as a CUDA graph (the eager path still works)."""


@contextmanager
def capturing() -> Iterator[None]:
    """transformers' input checks read tensor values on the host, which a capture forbids."""
    previous = os.environ.get("TRANSFORMERS_DISABLE_TORCH_CHECK")
    os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"]
        else:
            os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = previous


def warm_up(call: Callable[[], Any], times: int) -> None:
    """Run ``call`` eagerly on a side stream, as PyTorch asks before a capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(times):
            call()
    torch.cuda.current_stream().wait_stream(side)


class GraphDecoder:
    """Greedy decoding for a fixed batch size with a static KV cache.

    ``decode`` yields one list of token ids (one per row) per step. Each step after the
    first is one replay of a captured graph on CUDA (``use_graph``), an eager call
    elsewhere. The decoder, its cache and its graph are reused across calls of the same
    batch size; a call's prompt plus answer must fit ``max_cache_len``.

    ``start``, ``admit`` and ``step`` are the same decoding one row at a time, for
    continuous batching (``fakescope.continuous``): prompts join free rows between steps.
    """

    def __init__(
        self,
        model: Any,
        *,
        batch_size: int,
        max_cache_len: int,
        use_graph: bool | None = None,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.max_cache_len = max_cache_len
        device = model.device
        self.use_graph = device.type == "cuda" if use_graph is None else use_graph
        self.cache = StaticCache(config=model.config, max_cache_len=max_cache_len)
        vocab = model.get_output_embeddings().out_features
        self._tokens = torch.zeros((batch_size, 1), dtype=torch.long, device=device)
        # Multimodal RoPE (Qwen2-VL, Qwen2.5-VL): three position rows (time, height,
        # width); after the prompt's last token they advance together, one per token.
        self._rope_index = _rope_index_of(model)
        sections = (3,) if self._rope_index is not None else ()
        self._positions = torch.zeros((*sections, batch_size, 1), dtype=torch.long, device=device)
        self._mask = torch.zeros((batch_size, max_cache_len), dtype=torch.long, device=device)
        # Added to each row's logits: -inf on end-of-sequence ids while that row has not
        # met its min_new_tokens.
        self._bias = torch.zeros((batch_size, vocab), dtype=torch.float32, device=device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._eager_steps = 0
        # The cache's write index as the host knows it (the device holds its own copy).
        self.write_index = 0

    @torch.inference_mode()
    def decode(
        self,
        inputs: Mapping[str, torch.Tensor],
        *,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        eos_token_ids: Sequence[int] = (),
    ) -> Iterator[list[int]]:
        """Token ids of each step for left-padded ``inputs`` already on the model's device.

        Stops after ``max_new_tokens`` steps, or once every row has produced an end id
        (not before ``min_new_tokens``). Rows that finished early keep producing ids;
        the caller cuts each row at its first end id.
        """
        input_ids = inputs["input_ids"]
        rows, length = input_ids.shape
        if rows != self.batch_size:
            raise ValueError(f"decoder is for batches of {self.batch_size}, got {rows}")
        if length + max_new_tokens > self.max_cache_len:
            raise ValueError(
                f"prompt ({length}) + answer ({max_new_tokens}) exceed the cache "
                f"({self.max_cache_len} tokens)"
            )
        if max_new_tokens <= 0:
            return
        eos = list(eos_token_ids)
        self.start(length)
        first = self.admit(range(rows), inputs, banned=[eos if min_new_tokens > 0 else []] * rows)
        finished = [False] * rows
        for step in range(max_new_tokens):
            if step > 0:
                if step == min_new_tokens:
                    self._bias.zero_()
                tokens = self.step()
            else:
                tokens = first
            yield tokens
            finished = [done or token in eos for done, token in zip(finished, tokens, strict=True)]
            if all(finished) and step + 1 >= min_new_tokens:
                return

    # -- row by row: what continuous batching needs ---------------------------------------

    def start(self, write_index: int) -> None:
        """Begin anew, every row free; the first prompts admitted end at ``write_index``.

        Slots before a prompt are masked, so a write index past the first prompts leaves
        room for longer prompts to join later.
        """
        if not 0 <= write_index <= self.max_cache_len:
            raise ValueError(f"write index {write_index} outside the cache")
        self._mask.zero_()
        self._bias.zero_()
        self.write_index = write_index

    def fits(self, length: int, max_new_tokens: int) -> bool:
        """Whether a prompt of ``length`` tokens could join now and answer in full."""
        end = self.write_index + max_new_tokens
        return length <= self.write_index and end <= self.max_cache_len

    @torch.inference_mode()
    def admit(
        self,
        rows: Iterable[int],
        inputs: Mapping[str, torch.Tensor],
        *,
        banned: Sequence[Sequence[int]] = (),
    ) -> list[int]:
        """Prefill left-padded ``inputs`` into ``rows``, ending at the write index.

        The prompts run through the model on their own (eagerly: their shape changes per
        call); their keys and values are copied into the rows' slots just before the write
        index, the rows' masks and positions set to theirs. Returns each prompt's first
        token. ``banned`` holds each row's ids that may not be chosen until ``allow``
        (its end ids, until its min_new_tokens is met).
        """
        rows = list(rows)
        index = torch.tensor(rows, dtype=torch.long, device=self._tokens.device)
        count, length = inputs["input_ids"].shape
        if count != len(index):
            raise ValueError(f"{count} prompts for {len(index)} rows")
        if length > self.write_index:
            raise ValueError(f"prompt ({length}) longer than the write index ({self.write_index})")
        mask = inputs["attention_mask"].long()
        positions = self._prompt_positions(inputs, mask)
        extra = {k: v for k, v in inputs.items() if k not in ("attention_mask", "position_ids")}
        out = self.model(
            **extra, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
        )
        slots = slice(self.write_index - length, self.write_index)
        layers: list[Any] = list(self.cache.layers)  # StaticLayers (checked below)
        for layer, prompt in zip(layers, out.cache.layers, strict=True):
            self._prepare_layer(layer, prompt.keys, prompt.values)
            layer.keys[index, :, slots] = prompt.keys.to(layer.keys.dtype)
            layer.values[index, :, slots] = prompt.values.to(layer.values.dtype)
        self._mask[index] = 0
        self._mask[index, slots] = mask
        self._bias[index] = 0
        for row, ids in zip(rows, banned, strict=False):
            if ids:
                self._bias[row, list(ids)] = float("-inf")
        first = (out.logits[:, -1, :].float() + self._bias[index]).argmax(-1)
        self._tokens[index] = first[:, None]
        self._positions[..., index, :] = positions[..., -1:] + 1  # left padding: last is real
        tokens: list[int] = first.tolist()
        return tokens

    @torch.inference_mode()
    def adopt(self, other: GraphDecoder) -> None:
        """Go on with ``other``'s rows as rows ``0..other.batch_size - 1`` (a decoder with
        more rows, whose cache is at least as long, takes over a full one between steps).
        Slots, masks, positions, next tokens and bans carry over as they are."""
        rows, length = other.batch_size, other.max_cache_len
        if rows > self.batch_size or length > self.max_cache_len:
            raise ValueError("a decoder can only adopt a smaller one")
        self.write_index = other.write_index
        layers: list[Any] = list(self.cache.layers)
        others: list[Any] = list(other.cache.layers)
        for mine, theirs in zip(layers, others, strict=True):
            self._prepare_layer(mine, theirs.keys, theirs.values)
            mine.keys[:rows, :, :length] = theirs.keys
            mine.values[:rows, :, :length] = theirs.values
        self._mask.zero_()
        self._mask[:rows, :length] = other._mask
        self._bias.zero_()
        self._bias[:rows] = other._bias
        self._tokens[:rows] = other._tokens
        self._positions[..., :rows, :] = other._positions

    def allow(self, rows: Iterable[int]) -> None:
        """Lift the ban on end ids in ``rows`` (their min_new_tokens is met)."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self._bias.device)
        self._bias[index] = 0

    def step(self) -> list[int]:
        """One decode step of every row (free rows decode what nobody reads): its ids."""
        self._run_step()
        self.write_index += 1
        tokens: list[int] = self._tokens[:, 0].tolist()
        return tokens

    def _prepare_layer(self, layer: Any, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Allocate a cache layer on first use and set its write index to the host's."""
        if not isinstance(layer, StaticLayer) or layer.is_sliding:
            raise TypeError(f"rows cannot join a {type(layer).__name__} (a sliding window)")
        if not layer.is_initialized:
            heads, dims = keys.shape[1], (keys.shape[-1], values.shape[-1])
            layer.lazy_initialization(
                keys.new_empty((self.batch_size, heads, 1, dims[0])),
                values.new_empty((self.batch_size, heads, 1, dims[1])),
            )
        layer.cumulative_length.fill_(self.write_index)

    def _prompt_positions(self, inputs: Mapping[str, torch.Tensor], mask: torch.Tensor) -> Any:
        """The prompt's position ids: the mask's running count (padding at 0), or, with
        multimodal RoPE, the model's own 3-D positions of the image and text tokens."""
        if self._rope_index is None:
            return (mask.cumsum(-1) - 1).clamp(min=0)
        extra = {k: inputs[k] for k in ("image_grid_thw", "mm_token_type_ids") if k in inputs}
        positions, _ = self._rope_index(inputs["input_ids"], attention_mask=mask, **extra)
        return positions

    def _step(self) -> None:
        """One decode step, entirely on the device (this is what the graph records)."""
        # The cache's write index is where this token goes: let the mask see it.
        first_layer: Any = self.cache.layers[0]  # a StaticLayer: its length lives on the device
        write_index = first_layer.cumulative_length.view(1)
        self._mask.index_fill_(1, write_index, 1)
        out = self.model(
            input_ids=self._tokens,
            attention_mask=self._mask,
            position_ids=self._positions,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        next_tokens = (out.logits[:, -1, :].float() + self._bias).argmax(-1)
        self._tokens.copy_(next_tokens[:, None])
        self._positions.add_(1)

    def _run_step(self) -> None:
        if not self.use_graph:
            self._step()
            return
        if self._graph is None:
            try:
                if self._eager_steps < _WARMUP_CALLS:
                    # The first steps run eagerly on a side stream: a capture's warm-up.
                    warm_up(self._step, 1)
                    self._eager_steps += 1
                    return
                graph = torch.cuda.CUDAGraph()
                with capturing(), torch.cuda.graph(graph):
                    self._step()  # recorded, not run: the replay below runs it
                self._graph = graph
            except RuntimeError as exc:  # CUDA errors included; nothing ran
                logger.warning("decoding without CUDA graphs: capture failed (%s)", exc)
                self.use_graph = False
                self._step()
                return
        self._graph.replay()


def _rope_index_of(model: Any) -> Any:
    """The model's multimodal-RoPE position function (Qwen2-VL families), else None."""
    inner = getattr(model, "model", None)
    return getattr(inner, "get_rope_index", None) or getattr(model, "get_rope_index", None)


class VerdictGraphs:
    """The detect forward of a LLaVA-style model, captured once per batch size.

    For prompts whose ids do not depend on the image (``prompt_ids``, one row) and whose
    image tokens form one block. ``logits(pixel_values)`` returns the answer-position
    logits ``(batch, vocab)``; ``forward`` is the recorded computation, run eagerly.
    """

    def __init__(
        self,
        model: Any,
        prompt_ids: torch.Tensor,
        *,
        max_batch: int = 8,
        compiled: CompiledLayers | None = None,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.compiled = compiled  # compiled decoder layers to record, if any
        image_positions = (prompt_ids[0] == model.config.image_token_id).nonzero().flatten()
        start, count = int(image_positions[0]), len(image_positions)
        if image_positions.tolist() != list(range(start, start + count)):
            raise ValueError("the prompt's image tokens are not one block")
        self._image_block = slice(start, start + count)
        self.prompt_ids = prompt_ids.to(model.device)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._pool: Any = None  # shared: replays never overlap, outputs are read at once

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Vision tower, image features over the image tokens, language model, last logits."""
        model, config = self.model, self.model.config
        image = model.model.get_image_features(
            pixel_values=pixel_values,
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            return_dict=True,
        )
        features = torch.stack(list(image.pooler_output))  # (batch, image tokens, hidden)
        ids = self.prompt_ids.expand(pixel_values.shape[0], -1)
        embeds = model.get_input_embeddings()(ids)
        embeds[:, self._image_block] = features.to(embeds.dtype)
        # No padding: no mask, positions 0..n-1 (what the mask and positions would give).
        hidden = run_compiled(
            self.compiled,
            lambda: model.model.language_model(inputs_embeds=embeds, use_cache=False),
        )
        logits: torch.Tensor = model.lm_head(hidden.last_hidden_state[:, -1, :])
        return logits

    @torch.inference_mode()
    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Answer-position logits; GraphCaptureError if this batch size cannot be captured."""
        batch = pixel_values.shape[0]
        if batch not in self._graphs:
            self._graphs[batch] = self._capture(pixel_values)
        graph, static_pixels, output = self._graphs[batch]
        static_pixels.copy_(pixel_values)
        graph.replay()
        return output

    def _capture(
        self, pixel_values: torch.Tensor
    ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_pixels = pixel_values.clone()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        try:
            with capturing():
                warm_up(lambda: self.forward(static_pixels), _WARMUP_CALLS)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=self._pool):
                    output = self.forward(static_pixels)
        except RuntimeError as exc:  # CUDA errors included
            raise GraphCaptureError(f"cannot capture the verdict forward: {exc}") from exc
        return graph, static_pixels, output
