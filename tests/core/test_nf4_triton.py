"""The NF4 small-batch Triton kernel and its dispatcher, run in Triton's CPU interpreter.

The kernel module builds its jitted kernel on first use for the mode in force then, so
setting ``TRITON_INTERPRET=1`` works even if the module was imported earlier; a
module-scoped fixture sets it (and restores it afterwards, leaving other tests alone).
The interpreter computes float16 and float32 correctly but not bfloat16, so these tests
use float16; bfloat16 is checked on the GPU by the dispatcher's self-check.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bitsandbytes as bnb
import bitsandbytes.functional as bnbf
import pytest
import torch
from nf4_layout import gpu_layout_on_cpu

from fakescope.kernels import nf4_dispatch, nf4_matmul
from fakescope.kernels.nf4_dispatch import (
    install_small_batch_kernel,
    installed_layers,
    uninstall_small_batch_kernel,
)
from fakescope.kernels.nf4_matmul import KernelConfig, nf4_linear


@pytest.fixture(scope="module", autouse=True)
def interpreter() -> Iterator[None]:
    assert nf4_matmul.available(), (
        "Triton is not installed: these tests need it (pip install triton; Linux x86-64)"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "1")
        assert nf4_matmul.interpreting()
        yield


def quantized(n: int, k: int, *, nested: bool = True, seed: int = 0, **options: Any) -> Any:
    """A Params4bit of shape (n, k) quantized on the CPU, as bitsandbytes stores it."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=generator, dtype=torch.float16)
    options.setdefault("quant_type", "nf4")
    return bnb.nn.Params4bit(
        w, requires_grad=False, compress_statistics=nested, **options
    )._quantize("cpu")


def dequantized(weight: Any) -> torch.Tensor:
    return bnbf.dequantize_4bit(weight.data, weight.quant_state).float()


def rel_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return float((out.float() - reference.float()).abs().max() / reference.abs().max())


def randn(*shape: int, seed: int = 1, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -- bitsandbytes' storage, as the kernel reads it ----------------------------------------


def decode(weight: Any, *, high_first: bool = True) -> torch.Tensor:
    """The layout the kernel assumes, written out in PyTorch."""
    state = weight.quant_state
    n, k = state.shape
    packed = weight.data.view(-1).long()
    high, low = packed >> 4, packed & 15
    pairs = (high, low) if high_first else (low, high)
    nibbles = torch.stack(pairs, dim=1).reshape(n, k)
    if state.nested:
        inner = state.state2
        index = torch.arange(state.absmax.numel())
        scales = inner.code[state.absmax.long()] * inner.absmax[index // inner.blocksize]
        scales = scales + state.offset
    else:
        scales = state.absmax
    blocks = torch.arange(n)[:, None] * (k // 64) + torch.arange(k)[None, :] // 64
    return state.code[nibbles] * scales[blocks]


@pytest.mark.parametrize("nested", [True, False])
def test_layout_high_nibble_first_and_absmax_per_row_block(nested: bool) -> None:
    weight = quantized(32, 192, nested=nested)
    state = weight.quant_state
    assert weight.data.dtype == torch.uint8 and tuple(weight.data.shape) == (32 * 192 // 2, 1)
    assert state.blocksize == 64 and state.nested is nested
    assert state.absmax.dtype == (torch.uint8 if nested else torch.float32)
    reference = dequantized(weight)
    assert torch.allclose(decode(weight), reference, atol=1e-3, rtol=1e-3)
    # The other nibble order is far off: the check above does tell them apart.
    assert (decode(weight, high_first=False) - reference).abs().max() > 0.5


def test_nested_absmax_matches_dequantize_blockwise() -> None:
    state = quantized(64, 256).quant_state
    inner = state.state2
    index = torch.arange(state.absmax.numel())
    ours = inner.code[state.absmax.long()] * inner.absmax[index // inner.blocksize] + state.offset
    theirs = bnbf.dequantize_blockwise(state.absmax, inner) + state.offset
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    assert ours.min() > 0  # real scales, not the uint8 codes


# -- the kernel ---------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 2, 5, 8, 16])
@pytest.mark.parametrize(
    ("n", "k", "config"),
    [
        # K = 3 x 64: no power-of-two tile fits it; split in 2 slices of 2 and 1 blocks.
        (48, 192, KernelConfig(block_n=32, split_k=2)),
        (80, 128, KernelConfig(block_n=64, split_k=1)),  # N over a partial tile, no split
    ],
)
def test_nf4_linear_matches_dequantized_matmul(
    rows: int, n: int, k: int, config: KernelConfig
) -> None:
    weight = quantized(n, k, seed=n + k)
    bias = randn(n, seed=3)
    x = randn(rows, k, seed=rows)
    out = nf4_linear(x, weight, bias, config=config)
    reference = x.float() @ dequantized(weight).T + bias.float()
    assert out.dtype == torch.float16 and out.shape == (rows, n)
    assert rel_error(out, reference) < 2e-3


@pytest.mark.parametrize("rows", [2, 8])
def test_nf4_linear_without_double_quantization(rows: int) -> None:
    weight = quantized(64, 192, nested=False, seed=5)
    assert not weight.quant_state.nested
    x = randn(rows, 192)
    out = nf4_linear(x, weight, None, config=KernelConfig(block_n=32, split_k=3))
    assert rel_error(out, x.float() @ dequantized(weight).T) < 2e-3


def test_nf4_linear_default_config_and_float32() -> None:
    weight = quantized(40, 256, seed=7)
    config = nf4_matmul.default_config(40, 256, torch.device("cpu"))
    assert config.split_k > 1  # the default splits K here, so this runs the atomics path
    x = randn(3, 256, dtype=torch.float32)
    out = nf4_linear(x, weight)
    assert out.dtype == torch.float32
    # Exact against the float32 decoding; bitsandbytes rounds its weight to float16.
    assert rel_error(out, x @ decode(weight).T.float()) < 1e-5
    assert rel_error(out, x @ dequantized(weight).T) < 1e-3


def test_nf4_linear_leading_dims_strides_and_many_rows() -> None:
    weight = quantized(32, 128, seed=9)
    deq = dequantized(weight)
    wide = randn(20, 256, seed=2)
    x = wide[:, 64:192]  # rows 256 apart: not contiguous
    assert not x.is_contiguous()
    out = nf4_linear(x, weight)  # 20 rows: two 16-row tiles
    assert rel_error(out, x.float() @ deq.T) < 2e-3
    batched = randn(2, 3, 128, seed=4)
    out = nf4_linear(batched, weight)
    assert out.shape == (2, 3, 32)
    assert rel_error(out, batched.float() @ deq.T) < 2e-3
    assert nf4_linear(randn(0, 128), weight).shape == (0, 32)


def test_nf4_linear_refuses_what_it_does_not_support() -> None:
    x = randn(4, 96)
    with pytest.raises(ValueError, match="in_features 96 is not a multiple of 64"):
        nf4_linear(x, quantized(32, 96))
    with pytest.raises(ValueError, match="blocksize 128 is not 64"):
        nf4_linear(randn(4, 128), quantized(32, 128, blocksize=128))
    with pytest.raises(ValueError, match="quant_type 'fp4'"):
        nf4_linear(randn(4, 128), quantized(32, 128, quant_type="fp4"))
    weight = quantized(32, 128)
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 128\)"):
        nf4_linear(randn(4, 64), weight)
    with pytest.raises(ValueError, match=r"dtype torch\.int64"):
        nf4_linear(torch.ones(4, 128, dtype=torch.long), weight)
    with pytest.raises(ValueError, match="bias of shape"):
        nf4_linear(randn(4, 128), weight, randn(31))
    with pytest.raises(ValueError, match="not quantized"):
        nf4_linear(randn(4, 128), torch.zeros(32, 128))


def test_nf4_linear_needs_cuda_outside_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not nf4_matmul.interpreting()
    with pytest.raises(ValueError, match="needs CUDA"):
        nf4_linear(randn(4, 128), quantized(32, 128))


def test_configs() -> None:
    cpu = torch.device("cpu")
    for n, k in [(4096, 4096), (11008, 4096), (4096, 11008), (48, 192)]:
        configs = nf4_matmul.candidate_configs(n, k, cpu)
        assert configs[0] == nf4_matmul.default_config(n, k, cpu)
        assert len(set(configs)) == len(configs)
        for config in configs:
            assert 1 <= config.split_k <= max(1, k // 64 // 2)
    with pytest.raises(ValueError, match="power of two"):
        KernelConfig(block_n=48)
    with pytest.raises(ValueError, match="split_k"):
        KernelConfig(split_k=0)


# -- the dispatcher -----------------------------------------------------------------------


class Stack(torch.nn.Module):
    """Two supported 4-bit layers around one the kernel refuses (K = 96)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = self._layer(128, 96, bias=True)
        self.odd = self._layer(96, 64, bias=False)  # in_features 96: not a multiple of 64
        self.last = self._layer(64, 48, bias=True)

    @staticmethod
    def _layer(k: int, n: int, *, bias: bool) -> Any:
        layer = bnb.nn.Linear4bit(
            k, n, bias=bias, compute_dtype=torch.float16, quant_type="nf4"
        ).to("cpu")
        # On CPUs with AVX512-BF16 bitsandbytes repacks weights at the first forward;
        # keep the one layout on every machine.
        layer.support_avx512bf16_for_cpu = False
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.odd(self.first(x)))


@pytest.fixture
def stack() -> Stack:
    model = Stack()
    assert model.first.weight.quant_state.nested  # Linear4bit's default: double quantized
    return model


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Shapes of the inputs the kernel received."""
    calls: list[tuple[int, ...]] = []
    real = nf4_matmul.nf4_linear

    def spy(x: torch.Tensor, weight: Any, bias: Any = None, **options: Any) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return real(x, weight, bias, **options)

    monkeypatch.setattr(nf4_matmul, "nf4_linear", spy)
    return calls


def test_install_triton_routes_small_batches(
    stack: Stack, kernel_calls: list[tuple[int, ...]]
) -> None:
    inputs = {rows: randn(rows, 128, seed=rows) for rows in (1, 2, 8, 16, 17)}
    inputs[6] = randn(2, 3, 128, seed=6)  # 6 rows in a 3-D input
    with torch.no_grad():
        expected = {rows: stack(x) for rows, x in inputs.items()}

        report = install_small_batch_kernel(stack, policy="triton", rows=(2, 16))
        assert report.policy == "triton" and report.reason is None
        assert report.installed_layers == 2 and report.unsupported_layers == 1
        by_shape = {(s.n, s.k): s for s in report.shapes}
        assert set(by_shape) == {(96, 128), (48, 64)}
        for shape in report.shapes:
            assert shape.path == "triton" and shape.layers == 1
            assert shape.max_rel_error is not None and shape.max_rel_error < 1e-2
            assert shape.triton_ms is None and shape.bitsandbytes_ms is None
        assert installed_layers(stack) == ["first", "last"]
        kernel_calls.clear()  # the self-check's calls

        for rows, x in inputs.items():
            out = stack(x)
            assert out.shape == (*x.shape[:-1], 48)
            assert rel_error(out, expected[rows]) < 1e-2
            if 2 <= rows <= 16:
                lead = tuple(x.shape[:-1])
                assert kernel_calls == [(*lead, 128), (*lead, 64)]
            else:
                assert kernel_calls == []  # batch 1 and prefill-sized inputs: bitsandbytes
            kernel_calls.clear()

    assert uninstall_small_batch_kernel(stack) == 2
    assert installed_layers(stack) == []
    assert "forward" not in stack.first.__dict__ and "forward" not in stack.last.__dict__
    with torch.no_grad():
        assert torch.equal(stack(inputs[8]), expected[8])  # bitsandbytes again, bit for bit
    assert kernel_calls == []


def test_install_keeps_and_restores_an_instance_forward(stack: Stack) -> None:
    seen: list[int] = []
    bnb_forward = stack.first.forward

    def hooked(x: torch.Tensor) -> torch.Tensor:  # as accelerate's hooks wrap forward
        seen.append(x.shape[0])
        return bnb_forward(x)

    stack.first.forward = hooked
    install_small_batch_kernel(stack, policy="triton")
    with torch.no_grad():
        stack.first(randn(1, 128))  # batch 1: the original, hook included
        stack.first(randn(4, 128))  # the kernel
    assert seen == [8, 1]  # the self-check's reference (8 rows), then batch 1
    uninstall_small_batch_kernel(stack)
    assert stack.first.forward is hooked


def test_reinstall_replaces_the_previous_installation(stack: Stack) -> None:
    install_small_batch_kernel(stack, policy="triton", rows=(2, 4))
    report = install_small_batch_kernel(stack, policy="triton", rows=(4, 8))
    assert report.rows == (4, 8)
    assert uninstall_small_batch_kernel(stack) == 2  # one layer, one installation
    assert "forward" not in stack.first.__dict__


def test_auto_on_cpu_installs_nothing(stack: Stack) -> None:
    report = install_small_batch_kernel(stack)
    assert report.policy == "auto" and report.installed_layers == 0
    assert report.reason is not None and "cpu" in report.reason and "CUDA" in report.reason
    assert report.shapes == () and report.unsupported_layers == 1
    assert installed_layers(stack) == []
    assert report.to_dict()["reason"] == report.reason


def test_triton_policy_outside_the_interpreter_on_cpu_installs_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    report = install_small_batch_kernel(stack, policy="triton")
    assert report.installed_layers == 0 and "TRITON_INTERPRET" in (report.reason or "")
    assert installed_layers(stack) == []


def test_bitsandbytes_policy_and_bad_arguments(stack: Stack) -> None:
    report = install_small_batch_kernel(stack, policy="bitsandbytes")
    assert report.installed_layers == 0 and "bitsandbytes" in (report.reason or "")
    assert installed_layers(stack) == []
    with pytest.raises(ValueError, match="unknown policy"):
        install_small_batch_kernel(stack, policy="fastest")
    with pytest.raises(ValueError, match="rows"):
        install_small_batch_kernel(stack, policy="triton", rows=(8, 2))
    plain = torch.nn.Linear(64, 64)
    assert "no bitsandbytes 4-bit layers" in (
        install_small_batch_kernel(plain, policy="triton").reason or ""
    )


def test_without_triton_nothing_is_installed(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "triton", None)  # "import triton" raises ImportError
    monkeypatch.setitem(sys.modules, "triton.language", None)
    monkeypatch.setattr(nf4_matmul, "triton", None)
    assert not nf4_matmul.available()
    report = install_small_batch_kernel(stack, policy="triton")
    assert report.installed_layers == 0 and "Triton" in (report.reason or "")
    with pytest.raises(RuntimeError, match="needs Triton"):
        nf4_linear(randn(4, 128), stack.first.weight)


def test_report_is_json(stack: Stack) -> None:
    report = install_small_batch_kernel(stack, policy="triton", rows=(2, 8))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["policy"] == "triton" and data["rows"] == [2, 8]
    assert data["installed_layers"] == 2 and data["unsupported_layers"] == 1
    first = next(s for s in data["shapes"] if (s["n"], s["k"]) == (96, 128))
    assert first["path"] == "triton" and first["layers"] == 1
    assert first["config"] == nf4_matmul.default_config(96, 128, torch.device("cpu")).to_dict()
    assert first["triton_ms"] is None and first["bitsandbytes_ms"] is None
    assert 0 <= first["max_rel_error"] < 1e-2


def test_failed_self_check_keeps_bitsandbytes(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = nf4_matmul.nf4_linear

    def wrong(x: torch.Tensor, weight: Any, bias: Any = None, **options: Any) -> torch.Tensor:
        out = real(x, weight, bias, **options)
        return -out if out.shape[-1] == 96 else out  # broken for one shape only

    monkeypatch.setattr(nf4_matmul, "nf4_linear", wrong)
    with caplog.at_level(logging.WARNING, logger=nf4_dispatch.__name__):
        report = install_small_batch_kernel(stack, policy="triton")
    by_shape = {(s.n, s.k): s for s in report.shapes}
    failed = by_shape[(96, 128)]
    assert failed.path == "bitsandbytes" and "self-check failed" in (failed.note or "")
    assert failed.max_rel_error is not None and failed.max_rel_error > 1
    assert by_shape[(48, 64)].path == "triton"
    assert installed_layers(stack) == ["last"]
    assert "96x128" in caplog.text

    def broken(*args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError("no kernel today")

    monkeypatch.setattr(nf4_matmul, "nf4_linear", broken)
    report = install_small_batch_kernel(stack, policy="triton")
    assert report.installed_layers == 0 and installed_layers(stack) == []
    assert all("no kernel today" in (s.note or "") for s in report.shapes)
    assert report.reason is not None
    assert [s["path"] for s in report.to_dict()["shapes"]] == ["bitsandbytes"] * 2


def test_tiny_llava_decoder_with_the_kernel(tiny_model_dir: Path) -> None:
    from fakescope.loading import load_model

    forensic = gpu_layout_on_cpu(
        load_model(
            str(tiny_model_dir), quantization="nf4", device="cpu", dtype="float16", progress=False
        )
    )
    model = forensic.model
    decoder = model.model.language_model
    ids = torch.tensor([[5], [7], [9]])  # one decode step at batch 3
    with torch.no_grad():
        expected = decoder(input_ids=ids).last_hidden_state
        report = install_small_batch_kernel(model, policy="triton")
        assert report.reason is None and report.unsupported_layers == 0
        assert report.installed_layers == 14  # 2 layers x (q, k, v, o, gate, up, down)
        assert all(name.startswith("model.language_model.") for name in installed_layers(model))
        out = decoder(input_ids=ids).last_hidden_state
    assert out.dtype == torch.float16
    assert rel_error(out, expected) < 1e-2
    assert uninstall_small_batch_kernel(model) == 14


def test_the_loader_refuses_an_unknown_kernel_policy(tiny_model_dir: Path) -> None:
    from fakescope.errors import ModelLoadError
    from fakescope.loading import load_model

    with pytest.raises(ModelLoadError, match="NF4 kernel policy 'cuda'"):
        load_model(str(tiny_model_dir), device="cpu", nf4_kernel="cuda", progress=False)


def test_the_loader_installs_nothing_off_cuda(tiny_model_dir: Path) -> None:
    from fakescope.loading import load_model

    model = load_model(str(tiny_model_dir), device="cpu", quantization="nf4", progress=False)
    assert model.kernel_report is None  # chosen at load on CUDA only
    assert installed_layers(model.model) == []


def test_the_server_refuses_an_unknown_kernel_setting() -> None:
    from server.settings import Settings, SettingsError

    assert Settings.from_env({"FAKESCOPE_NF4_KERNEL": "triton"}).nf4_kernel == "triton"
    with pytest.raises(SettingsError, match="FAKESCOPE_NF4_KERNEL"):
        Settings.from_env({"FAKESCOPE_NF4_KERNEL": "marlin"})
