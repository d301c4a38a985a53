"""Regional compilation of the language model's decoder layers for the verdict forward.

A verdict at batch 32 spends most of its time in the language model's 32 decoder
layers. Between their large matrix products run many small element-wise kernels (RMSNorm,
rotary embedding, SiLU gating, residual adds), each reading and writing the whole
activation tensor. ``torch.compile`` fuses them. Compiling each decoder layer (regional
compilation) instead of the whole model compiles one layer's graph once and reuses it for
all layers, whose parameters become graph inputs: seconds of compilation, not minutes.

Measured on one H100 (LLaVA-1.5-7B shape, random weights, NF4, benchmarks/bench_gpu.py):
the detect forward at batch 32 went from 18.1 to 14.0 ms per image, 50.5 to 64.5
sustained verdicts/s; compilation took 5.6 s.

Only the verdict forward uses the compiled layers: ``CompiledLayers.active()`` swaps
them into the model for the duration of one call and restores the plain layers after,
so decoding (static KV cache, CUDA graphs) keeps its own measured path. The batch
dimension is compiled as dynamic: one compilation serves every batch size above one,
instead of one compilation (seconds each) per batch size the server happens to form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import torch
import torch._dynamo
from torch import nn

logger = logging.getLogger(__name__)
T = TypeVar("T")

COMPILE_MODES = ("auto", "on", "off")


def resolve_compile(mode: str | None, device: torch.device, quantization: str = "none") -> bool:
    """Whether to compile: ``auto`` (the default) compiles on CUDA, for NF4 or no
    quantization (the two measured; int8's outlier handling has data-dependent shapes).

    On the CPU, compiling a real model's layers takes minutes and the element-wise work
    it removes is a small share of a CPU forward; on CUDA it is what separates the
    forward from its arithmetic floor.
    """
    choice = (mode or "auto").strip().lower()
    if choice not in COMPILE_MODES:
        raise ValueError(
            f"unknown compile mode {mode!r}; expected one of {', '.join(COMPILE_MODES)}"
        )
    if choice == "auto":
        return device.type == "cuda" and quantization in ("nf4", "none")
    return choice == "on"


def decoder_layers(model: Any) -> nn.ModuleList | None:
    """The language model's decoder layers, where the model keeps them where LLaVA does."""
    inner = getattr(model, "model", None)
    language_model = getattr(inner, "language_model", None)
    layers = getattr(language_model, "layers", None)
    return layers if isinstance(layers, nn.ModuleList) and len(layers) > 0 else None


class CompiledLayers:
    """Compiled stand-ins for a model's decoder layers, swapped in by ``active()``.

    Compilation itself happens on the first call inside ``active()`` (and once more for
    batch 1, which ``torch.compile`` specialises). ``failed`` says why compilation was
    given up, if it was. Not thread-safe, like the model.
    """

    def __init__(
        self, layers: nn.ModuleList, *, dynamic: bool = True, backend: Any = "inductor"
    ) -> None:
        self.layers = layers
        self._plain = list(layers)
        # The layers share one code object: every layer is one more cache entry for it
        # when parameters are not inlined as graph inputs. Leave room for all of them.
        cache = torch._dynamo.config
        cache.cache_size_limit = max(cache.cache_size_limit, 4 * len(layers))
        # torch.compile of a module is a module (OptimizedModule): a ModuleList takes it.
        self._compiled = [
            cast(nn.Module, torch.compile(layer, dynamic=dynamic, backend=backend))
            for layer in self._plain
        ]
        self.failed: str | None = None

    @contextmanager
    def active(self) -> Iterator[None]:
        """The compiled layers in place for the body, the plain ones again after it."""
        for index, compiled in enumerate(self._compiled):
            self.layers[index] = compiled
        try:
            yield
        finally:
            for index, plain in enumerate(self._plain):
                self.layers[index] = plain


def run_compiled(layers: CompiledLayers | None, call: Callable[[], T]) -> T:
    """``call()`` with compiled layers if there are any; with plain ones if they fail.

    A compiler failure (dynamo cannot trace a layer, a backend cannot build a kernel)
    turns compilation off for good with a warning, and the plain layers answer: a
    verdict never fails because of it. Errors of the call itself propagate.
    """
    if layers is None or layers.failed is not None:
        return call()
    try:
        with layers.active():
            return call()
    except torch._dynamo.exc.TorchDynamoException as exc:
        layers.failed = f"{type(exc).__name__}: {exc}"
        logger.warning("verdicts without compiled layers: %s", layers.failed)
        return call()
