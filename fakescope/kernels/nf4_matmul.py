"""A Triton GEMM for a few rows times an NF4 weight, dequantizing the weight on the fly.

Why: decoding an explanation at batch 8 runs every 4-bit layer on 8 rows. bitsandbytes'
``Linear4bit`` does that by dequantizing the whole weight to bf16 and then running a
matmul: on an H100 with a 7B model that costs 17 ms a step, against a 3.1 ms floor for
reading the 3.7 GB of packed weights once (464 tokens/s where 800 is the target; its own
fused kernel forced at 8 rows measured no better). This kernel reads each packed byte
once and never writes a dequantized weight: the weight tile is decoded in registers and
fed to ``tl.dot`` with the rows of ``x`` (weight-only quantized GEMM, as in Marlin or
gemlite). Batch 1 stays on bitsandbytes' own gemv, which is already good.

bitsandbytes' storage, checked against ``bitsandbytes.functional.dequantize_4bit``:

- ``weight.data`` is uint8 of shape (N*K/2, 1): the (N, K) weight flattened row-major,
  two consecutive elements per byte, the first in the high nibble.
- ``quant_state.code`` holds the 16 NF4 values; element i is
  ``code[nibble_i] * absmax[i // blocksize]``, with ``blocksize`` 64 here, so the scale
  of element (n, k) is ``absmax[n * K/64 + k/64]`` when K is a multiple of 64.
- With double quantization (``nested``, how FakeScope loads) ``absmax`` is itself uint8:
  ``state2.code[absmax[j]] * state2.absmax[j // state2.blocksize] + offset``. The kernel
  decodes it too, per (row, 64-block), rather than keeping a float copy of absmax: memory
  matters (an 8 GB GPU must fit the model).

Layout of the computation: a program owns BLOCK_N output columns, all rows of one
16-row tile of ``x`` and one slice of K (split-K: small N alone does not fill an H100).
Per 64-element block of K it loads 32 packed bytes per weight row, looks the high and
low nibbles up in the code table, and multiplies them with the even and odd columns of
``x`` (two ``tl.dot`` of depth 32); the block's scale is applied to the (rows, BLOCK_N)
partial product, not to each weight element. Split-K partial sums meet in a float32
buffer through ``tl.atomic_add`` (so the last bits vary run to run), then one cast.

Nothing on the host depends on tensor values and the grid comes from shapes only, so a
call can be recorded in a CUDA graph (compile it once before capturing). Configurations
are chosen by a static heuristic or given by the caller; nothing benchmarks at runtime.

Triton is imported on first use: ``available()`` says whether it can be. Under
``TRITON_INTERPRET=1`` the kernel runs in Triton's CPU interpreter, which is how the
tests check it; there float16 and float32 are right but bfloat16 is not (an interpreter
limitation), so bfloat16 is only checked on the GPU, by the dispatcher's self-check.
``triton.jit`` fixes the mode when it wraps a function, so the kernel is wrapped on first
use, per mode, not at import. Triton's own ``@jit`` library functions (``tl.zeros``,
``tl.sum``, ...) are wrapped when Triton is first imported, which bitsandbytes does
early, in compiled mode; an interpreted kernel cannot call those, so the kernel uses
builtins only (``tl.full``, not ``tl.zeros``). The interpreter then works whenever the
variable is set at call time, whatever was imported before.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

BLOCKSIZE = 64  # the only bitsandbytes block size the kernel handles
BLOCK_M = 16  # rows per program: tl.dot's smallest tile; fewer rows are masked
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_MAX_BYTES = 2**31  # packed offsets are int32 inside the kernel

# Bound by _triton() on first use: the kernel's source refers to them as globals.
triton: Any = None
tl: Any = None

_KERNELS: dict[bool, Any] = {}  # interpreted?, -> the jitted kernel
_SM_COUNTS: dict[int, int] = {}


@dataclass(frozen=True)
class KernelConfig:
    """Launch settings: output columns per program, K slices, warps and pipeline stages."""

    block_n: int = 64
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3

    def __post_init__(self) -> None:
        if self.block_n < 16 or self.block_n & (self.block_n - 1):
            raise ValueError(f"block_n must be a power of two >= 16, not {self.block_n}")
        if self.split_k < 1:
            raise ValueError(f"split_k must be >= 1, not {self.split_k}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def available() -> bool:
    """Whether Triton imports (importing it if need be; the kernel also needs CUDA or the
    interpreter)."""
    try:
        _triton()
    except RuntimeError:
        return False
    return True


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    if triton is not None and hasattr(triton, "knobs"):
        return bool(triton.knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in {"1", "true", "yes", "on"}


def unsupported_reason(weight: Any) -> str | None:
    """Why the kernel cannot multiply by ``weight`` (a ``Params4bit``), or None if it can."""
    state = getattr(weight, "quant_state", None)
    if state is None:
        return "the weight is not quantized (no quant_state)"
    if getattr(state, "quant_type", None) != "nf4":
        return f"quant_type {getattr(state, 'quant_type', None)!r} is not 'nf4'"
    if getattr(state, "packing_format_for_cpu", False):
        return "the weight is repacked for bitsandbytes' CPU kernel"
    shape = tuple(state.shape)
    if len(shape) != 2:
        return f"the weight has shape {shape}, not (out_features, in_features)"
    n, k = (int(d) for d in shape)
    if state.blocksize != BLOCKSIZE:
        return f"blocksize {state.blocksize} is not {BLOCKSIZE}"
    if k % BLOCKSIZE:
        return f"in_features {k} is not a multiple of {BLOCKSIZE}"
    data = weight.data
    if data.dtype != torch.uint8 or data.numel() * 2 != n * k or not data.is_contiguous():
        return f"packed data {tuple(data.shape)} {data.dtype} does not hold {n}x{k} nibbles"
    if data.numel() >= _MAX_BYTES:
        return f"the weight has {data.numel()} packed bytes, too many for int32 offsets"
    if state.nested:
        inner = state.state2
        if state.absmax.dtype != torch.uint8 or inner is None:
            return f"nested absmax of dtype {state.absmax.dtype}, expected uint8"
    elif state.absmax.dtype != torch.float32:
        return f"absmax of dtype {state.absmax.dtype}, expected float32"
    return None


def default_config(n: int, k: int, device: torch.device) -> KernelConfig:
    """A static choice: enough programs (N tiles x K slices) to fill the GPU a few times."""
    return _config_for(n, k, device, block_n=64)


def candidate_configs(n: int, k: int, device: torch.device) -> tuple[KernelConfig, ...]:
    """The default first, then variants worth timing once per weight shape (ahead of use)."""
    first = default_config(n, k, device)
    variants = [
        first,
        _config_for(n, k, device, block_n=128),
        _config_for(n, k, device, block_n=32, waves=2),
        # No split: no zeroed float32 buffer and no cast (two launches fewer), no atomics.
        KernelConfig(block_n=32, split_k=1),
    ]
    return tuple(dict.fromkeys(variants))


def _config_for(
    n: int, k: int, device: torch.device, *, block_n: int, waves: int = 4
) -> KernelConfig:
    n_tiles = -(-n // block_n)
    groups = max(k // BLOCKSIZE, 1)
    target = waves * _sm_count(device)
    split = 1
    # Powers of two, each slice keeping at least two 64-blocks of K.
    while n_tiles * split * 2 <= target and split * 2 * 2 <= groups:
        split *= 2
    return KernelConfig(block_n=block_n, split_k=split, num_warps=4, num_stages=3)


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4  # the interpreter: a little split-K, so the tests run that path
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNTS:
        _SM_COUNTS[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNTS[index]


def nf4_linear(
    x: torch.Tensor,
    weight: Any,
    bias: torch.Tensor | None = None,
    *,
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """``x @ W.T + bias`` for an NF4 ``Params4bit`` W of shape (N, K), x of shape (..., K).

    The result has x's dtype and shape (..., N). Raises ValueError where the kernel does
    not apply (see ``unsupported_reason``; also a wrong x, or no CUDA outside the
    interpreter): callers fall back to bitsandbytes. RuntimeError if Triton is missing.
    """
    problem = unsupported_reason(weight)
    if problem is not None:
        raise ValueError(f"nf4_linear: {problem}")
    state = weight.quant_state
    n, k = (int(d) for d in state.shape)
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"nf4_linear: x has shape {tuple(x.shape)}, expected (..., {k})")
    if x.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"nf4_linear: x of dtype {x.dtype} (expected float16/bfloat16/float32)")
    if x.device != weight.data.device:
        raise ValueError(f"nf4_linear: x on {x.device}, weight on {weight.data.device}")
    if x.device.type != "cuda" and not interpreting():
        raise ValueError(f"nf4_linear: needs CUDA (x is on {x.device}) or TRITON_INTERPRET=1")
    if bias is not None and bias.shape != (n,):
        raise ValueError(f"nf4_linear: bias of shape {tuple(bias.shape)}, expected ({n},)")

    lead = x.shape[:-1]
    rows = x.reshape(-1, k)
    m = rows.shape[0]
    if m == 0:
        return x.new_empty((*lead, n))
    cfg = config or default_config(n, k, x.device)
    groups = k // BLOCKSIZE
    per_split = -(-groups // min(cfg.split_k, groups))
    splits = -(-groups // per_split)
    atomic = splits > 1
    out = (
        torch.zeros((m, n), device=x.device, dtype=torch.float32)
        if atomic
        else torch.empty((m, n), device=x.device, dtype=x.dtype)
    )
    absmax, code2, absmax2, offset, blocksize2 = _scales(state, x.device)
    kernel = _kernel()
    grid = (-(-n // cfg.block_n), splits, -(-m // BLOCK_M))
    kernel[grid](
        rows,
        weight.data,
        absmax,
        _on(state.code, x.device),
        absmax2,
        code2,
        offset,
        bias if bias is not None else out,
        out,
        m,
        n,
        groups,
        k // 2,
        rows.stride(0),
        rows.stride(1),
        per_split,
        blocksize2,
        NESTED=bool(state.nested),
        HAS_BIAS=bias is not None,
        ATOMIC=atomic,
        BLOCK_M=BLOCK_M,
        BLOCK_N=cfg.block_n,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    if atomic:
        out = out.to(x.dtype)
    return out.reshape(*lead, n)


def _on(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    # bitsandbytes keeps its statistics on the weight's device; the copy is a safety net
    # for hand-made states (it would not be capturable, but never runs for loaded ones).
    return tensor if tensor.device == device else tensor.to(device)


def _scales(
    state: Any, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """absmax, then (nested only; else placeholders) state2's code and absmax, offset."""
    absmax = _on(state.absmax, device)
    if not state.nested:
        return absmax, absmax, absmax, absmax, 1
    inner = state.state2
    offset = state.offset
    if not isinstance(offset, torch.Tensor):
        offset = torch.tensor(float(offset), dtype=torch.float32)
    return (
        absmax,
        _on(inner.code, device),
        _on(inner.absmax, device),
        _on(offset.reshape(1).to(torch.float32), device),
        int(inner.blocksize),
    )


def _triton() -> Any:
    """Import Triton and bind ``triton`` and ``tl`` for the kernel's source."""
    global triton, tl
    if triton is None:
        try:
            import triton as triton_module
            import triton.language as language
        except Exception as exc:  # not installed, or broken on this platform
            raise RuntimeError(
                f"the NF4 kernel needs Triton, which does not import: {exc}"
            ) from exc
        tl = language
        triton = triton_module
    return triton


def _kernel() -> Any:
    """The jitted kernel, built on first use for the current mode (compiled or interpreted).

    ``triton.jit`` picks interpreter or compiler when it wraps a function, so wrapping
    here rather than at import lets ``TRITON_INTERPRET`` be set after this module loads.
    """
    module = _triton()
    mode = interpreting()
    if mode not in _KERNELS:
        _KERNELS[mode] = module.jit(do_not_specialize=["M"])(_nf4_matmul_kernel)
    return _KERNELS[mode]


def _nf4_matmul_kernel(  # type: ignore[no-untyped-def]  # Triton source: typed at launch
    x_ptr,
    w_ptr,
    absmax_ptr,
    code_ptr,
    absmax2_ptr,
    code2_ptr,
    offset_ptr,
    bias_ptr,
    out_ptr,
    M,
    N,
    groups,  # 64-blocks per weight row: K / 64
    row_bytes,  # packed bytes per weight row: K / 2 (an argument, so its alignment is known)
    stride_xm,
    stride_xk,
    groups_per_split,
    blocksize2,
    NESTED: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ATOMIC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_j = tl.arange(0, 32)  # byte j of a 64-block holds elements 2j (high) and 2j+1
    mask_m = offs_m < M
    mask_n = offs_n < N
    first = pid_k * groups_per_split
    last = tl.minimum(first + groups_per_split, groups)

    x_rows = x_ptr + offs_m[:, None] * stride_xm
    w_cols = w_ptr + offs_n[None, :] * row_bytes + offs_j[:, None]
    compute = x_ptr.dtype.element_ty
    if NESTED:
        offset = tl.load(offset_ptr)
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)  # not tl.zeros: see the docstring
    for g in range(first, last):
        k0 = g * 64
        packed = tl.load(w_cols + g * 32, mask=mask_n[None, :], other=0)  # (32, BLOCK_N)
        high = tl.load(code_ptr + (packed >> 4).to(tl.int32)).to(compute)
        low = tl.load(code_ptr + (packed & 15).to(tl.int32)).to(compute)
        x_even = tl.load(
            x_rows + (k0 + 2 * offs_j[None, :]) * stride_xk, mask=mask_m[:, None], other=0.0
        )
        x_odd = tl.load(
            x_rows + (k0 + 2 * offs_j[None, :] + 1) * stride_xk, mask=mask_m[:, None], other=0.0
        )
        part = tl.dot(x_even, high)
        part = tl.dot(x_odd, low, part)
        block = offs_n * groups + g
        if NESTED:
            quantized = tl.load(absmax_ptr + block, mask=mask_n, other=0).to(tl.int32)
            scale = (
                tl.load(code2_ptr + quantized)
                * tl.load(absmax2_ptr + block // blocksize2, mask=mask_n, other=0.0)
                + offset
            )
        else:
            scale = tl.load(absmax_ptr + block, mask=mask_n, other=0.0)
        acc += part * scale[None, :]

    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        acc += tl.where(pid_k == 0, bias, 0.0)[None, :]  # once, not once per K slice
    out_ptrs = out_ptr + offs_m[:, None] * N + offs_n[None, :]
    mask = mask_m[:, None] & mask_n[None, :]
    if ATOMIC:
        tl.atomic_add(out_ptrs, acc, mask=mask)
    else:
        tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)
