"""Routing a loaded model's small-batch NF4 matmuls to the Triton kernel (``nf4_matmul``).

``install_small_batch_kernel`` gives every supported ``bitsandbytes.nn.Linear4bit`` a
forward that sends inputs of ``rows[0]`` to ``rows[1]`` rows (a decode step at batch 2
to 16) to ``nf4_linear`` and everything else (prefill, batch 1, where bitsandbytes' gemv
is already good) to the layer's original forward. The decision is taken once per weight
shape (N, K), at load, never during a forward:

- ``"bitsandbytes"``: nothing is installed.
- ``"triton"``: installed on every supported layer whose shape passes the self-check.
- ``"auto"`` (CUDA only): per shape, every candidate configuration is self-checked, then
  timed against bitsandbytes at 8 rows; the kernel is installed only where it is faster,
  with its fastest configuration. Timings replay a CUDA graph of the calls (how decoding
  runs them: launch overhead would otherwise dominate kernels of a few microseconds),
  falling back to eager calls between CUDA events if a capture fails.

The self-check compares the kernel with the original forward on 8 random rows in the
layer's compute dtype: bfloat16 is only checked there (Triton's CPU interpreter cannot
run it). An exception or a failed check keeps bitsandbytes for that shape, with a
warning. On a model that is not on CUDA nothing is installed, except with
``policy="triton"`` while Triton runs in its interpreter (``TRITON_INTERPRET=1``), which
is how the tests exercise the installed forward on the CPU.

The installed forward decides from shapes only (rows = numel / in_features), so decode
steps stay capturable in a CUDA graph. ``uninstall_small_batch_kernel`` restores the
original forwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from fakescope.cuda_graphs import warm_up
from fakescope.kernels import nf4_matmul

POLICIES = ("auto", "triton", "bitsandbytes")
CHECK_ROWS = 8  # the batch the kernel is for; self-check and timing both use it
TIMING_REPS = 20
_WARMUP_CALLS = 3
_INSTALLED = "_fakescope_nf4_kernel"  # attribute of a layer holding its _Installed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShapeReport:
    """What was decided for the layers of one weight shape (N out, K in features)."""

    n: int
    k: int
    layers: int
    path: str  # "triton" or "bitsandbytes"
    max_rel_error: float | None = None
    triton_ms: float | None = None
    bitsandbytes_ms: float | None = None
    config: dict[str, int] | None = None  # the kernel's launch settings, where timed or used
    timing: str | None = None  # "cuda-graph" or "eager", where timed
    note: str | None = None  # why bitsandbytes was kept

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "k": self.k,
            "layers": self.layers,
            "path": self.path,
            "max_rel_error": self.max_rel_error,
            "triton_ms": self.triton_ms,
            "bitsandbytes_ms": self.bitsandbytes_ms,
            "config": self.config,
            "timing": self.timing,
            "note": self.note,
        }


@dataclass(frozen=True)
class KernelReport:
    """The outcome of ``install_small_batch_kernel``, for logs and benchmark JSON."""

    policy: str
    rows: tuple[int, int]
    shapes: tuple[ShapeReport, ...] = ()
    unsupported_layers: int = 0
    reason: str | None = None  # why nothing was installed, when nothing was
    installed_layers: int = field(init=False)

    def __post_init__(self) -> None:
        installed = sum(s.layers for s in self.shapes if s.path == "triton")
        object.__setattr__(self, "installed_layers", installed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "rows": list(self.rows),
            "installed_layers": self.installed_layers,
            "unsupported_layers": self.unsupported_layers,
            "reason": self.reason,
            "shapes": [s.to_dict() for s in self.shapes],
        }


@dataclass
class _Installed:
    original: Callable[..., torch.Tensor]  # the forward that ran before installing
    had_instance_forward: bool  # whether that forward was an instance attribute


def install_small_batch_kernel(
    model: torch.nn.Module, *, policy: str = "auto", rows: tuple[int, int] = (2, 16)
) -> KernelReport:
    """Route ``rows[0]``..``rows[1]``-row inputs of supported NF4 layers to the kernel.

    Replaces any earlier installation. Never raises for a kernel problem: the report
    says what was installed and why not elsewhere.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    low, high = rows
    if not 1 <= low <= high:
        raise ValueError(f"rows must be (low, high) with 1 <= low <= high, not {rows}")
    uninstall_small_batch_kernel(model)
    span = (low, high)

    if policy == "bitsandbytes":
        return KernelReport(policy, span, reason="policy 'bitsandbytes': nothing installed")
    if not nf4_matmul.available():
        return KernelReport(policy, span, reason="Triton is not available (it does not import)")
    layers = list(_linear4bit_layers(model))
    if not layers:
        return KernelReport(policy, span, reason="the model has no bitsandbytes 4-bit layers")

    by_shape: dict[tuple[int, int], list[Any]] = {}
    unsupported = 0
    for layer in layers:
        if nf4_matmul.unsupported_reason(layer.weight) is None:
            n, k = (int(d) for d in layer.weight.quant_state.shape)
            by_shape.setdefault((n, k), []).append(layer)
        else:
            unsupported += 1
    if not by_shape:
        reason = "no 4-bit layer has a shape or format the kernel supports"
        return KernelReport(policy, span, unsupported_layers=unsupported, reason=reason)

    device = next(iter(by_shape.values()))[0].weight.data.device
    interpreted = nf4_matmul.interpreting()
    if device.type != "cuda" and not (policy == "triton" and interpreted):
        reason = f"the model is on {device.type}: the kernel runs on CUDA"
        if policy == "triton":
            reason += " (or in Triton's interpreter, TRITON_INTERPRET=1)"
        return KernelReport(policy, span, unsupported_layers=unsupported, reason=reason)
    if device.type == "cuda" and interpreted:
        reason = "TRITON_INTERPRET=1 is set: the kernel would run on the CPU, not on CUDA"
        return KernelReport(policy, span, unsupported_layers=unsupported, reason=reason)

    shapes = []
    for (n, k), group in by_shape.items():
        shape, config = _decide(group, n, k, timed=policy == "auto")
        shapes.append(shape)
        if config is not None:
            for layer in group:
                _install(layer, span, config)
    installed = sum(s.layers for s in shapes if s.path == "triton")
    logger.info(
        "NF4 small-batch kernel (%s): %d of %d 4-bit layers", policy, installed, len(layers)
    )
    return KernelReport(
        policy,
        span,
        tuple(shapes),
        unsupported_layers=unsupported,
        reason=None if installed else "no weight shape passed the self-check and timing",
    )


def uninstall_small_batch_kernel(model: torch.nn.Module) -> int:
    """Give every layer back the forward it had before; returns how many were restored."""
    restored = 0
    for module in model.modules():
        installed = module.__dict__.pop(_INSTALLED, None)
        if not isinstance(installed, _Installed):
            continue
        if installed.had_instance_forward:
            module.forward = installed.original
        else:
            module.__dict__.pop("forward", None)
        restored += 1
    return restored


def installed_layers(model: torch.nn.Module) -> list[str]:
    """Names of the layers whose small-batch inputs go to the kernel."""
    return [name for name, module in model.named_modules() if _INSTALLED in module.__dict__]


# -- deciding -----------------------------------------------------------------------------


def _linear4bit_layers(model: torch.nn.Module) -> Iterator[Any]:
    try:
        import bitsandbytes as bnb
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            yield module


def _decide(
    group: list[Any], n: int, k: int, timed: bool
) -> tuple[ShapeReport, nf4_matmul.KernelConfig | None]:
    """Self-check (and if ``timed``, time) one shape; returns the config to install, if any."""
    layer = group[0]
    device = layer.weight.data.device
    candidates = (
        nf4_matmul.candidate_configs(n, k, device)
        if timed
        else (nf4_matmul.default_config(n, k, device),)
    )

    def keep(
        note: str, error: float | None = None, timing: str | None = None
    ) -> tuple[ShapeReport, None]:
        logger.warning("NF4 kernel not used for %dx%d: %s", n, k, note)
        report = ShapeReport(n, k, len(group), "bitsandbytes", error, timing=timing, note=note)
        return report, None

    try:
        x = _check_input(layer, k)
        with torch.no_grad():
            # The kernel first: on CPUs with AVX512-BF16, bitsandbytes' first forward
            # repacks the weight into a layout the kernel does not read.
            outputs = {cfg: _kernel_forward(layer, x, cfg) for cfg in candidates}
            reference = layer.forward(x)
        errors = {cfg: _rel_error(out, reference) for cfg, out in outputs.items()}
    except Exception as exc:
        return keep(f"self-check raised {type(exc).__name__}: {exc}")
    tolerance = _tolerance(x.dtype)
    passed = [cfg for cfg in candidates if errors[cfg] <= tolerance]
    if not passed:
        worst = max(errors.values())
        return keep(f"self-check failed: relative error {worst:.3g} > {tolerance}", worst)
    if not timed:
        chosen = passed[0]
        report = ShapeReport(n, k, len(group), "triton", errors[chosen], config=chosen.to_dict())
        return report, chosen

    try:
        with torch.no_grad():
            bnb_ms, method = _time_ms(lambda: layer.forward(x), "cuda-graph")
            kernel_ms = {cfg: _time_ms(_bound(layer, x, cfg), method)[0] for cfg in passed}
    except Exception as exc:
        return keep(f"timing raised {type(exc).__name__}: {exc}", errors[passed[0]])
    chosen = min(passed, key=lambda cfg: kernel_ms[cfg])
    fastest = kernel_ms[chosen]
    faster = fastest < bnb_ms
    report = ShapeReport(
        n,
        k,
        len(group),
        "triton" if faster else "bitsandbytes",
        errors[chosen],
        triton_ms=fastest,
        bitsandbytes_ms=bnb_ms,
        config=chosen.to_dict(),
        timing=method,
        note=None if faster else "bitsandbytes is faster",
    )
    if not faster:
        logger.info("NF4 kernel not used for %dx%d: bitsandbytes is faster", n, k)
    return report, chosen if faster else None


def _check_input(layer: Any, k: int) -> torch.Tensor:
    device = layer.weight.data.device
    dtype = getattr(layer, "compute_dtype", None) or torch.float32
    generator = torch.Generator(device=device).manual_seed(0)
    return torch.randn(CHECK_ROWS, k, generator=generator, device=device, dtype=dtype)


def _rel_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest difference relative to the reference's largest magnitude (not per element:
    outputs near zero would make a per-element ratio meaningless)."""
    scale = reference.float().abs().max().clamp_min(1e-6)
    return float((out.float() - reference.float()).abs().max() / scale)


def _tolerance(dtype: torch.dtype) -> float:
    # bfloat16 keeps 8 bits of mantissa: the kernel and bitsandbytes round the weight at
    # different points, which costs a few units of 2**-8. A wrong kernel is off by ~1.
    return 3e-2 if dtype == torch.bfloat16 else 1e-2


def _bound(layer: Any, x: torch.Tensor, cfg: Any) -> Callable[[], torch.Tensor]:
    return lambda: _kernel_forward(layer, x, cfg)


def _time_ms(call: Callable[[], Any], method: str) -> tuple[float, str]:
    """GPU milliseconds per call, and how they were measured: a CUDA graph of
    TIMING_REPS calls replayed (``method="cuda-graph"``), else calls between events."""
    warm_up(call, _WARMUP_CALLS)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    if method == "cuda-graph":
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(TIMING_REPS):
                    call()
            graph.replay()
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / TIMING_REPS, method
        except Exception as exc:
            logger.info("timing eagerly, a CUDA graph capture failed: %s", exc)
            torch.cuda.synchronize()
    start.record()
    for _ in range(TIMING_REPS):
        call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / TIMING_REPS, "eager"


# -- the installed forward ----------------------------------------------------------------


def _kernel_forward(layer: Any, x: torch.Tensor, config: Any) -> torch.Tensor:
    """What bitsandbytes' forward does around its matmul: compute dtype in, input dtype out."""
    compute = layer.compute_dtype or x.dtype
    out = nf4_matmul.nf4_linear(x.to(compute), layer.weight, layer.bias, config=config)
    return out.to(x.dtype)


def _install(layer: Any, rows: tuple[int, int], config: Any) -> None:
    had_instance_forward = "forward" in layer.__dict__
    original = layer.forward
    low, high = rows

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        k = x.shape[-1]
        count = x.numel() // k if k else 0
        state = layer.weight.quant_state
        if (
            low <= count <= high
            and not args
            and not kwargs
            and state is not None
            and not getattr(state, "packing_format_for_cpu", False)
            and not (x.requires_grad and torch.is_grad_enabled())
        ):
            return _kernel_forward(layer, x, config)
        return original(x, *args, **kwargs)

    layer.__dict__[_INSTALLED] = _Installed(original, had_instance_forward)
    layer.forward = forward
