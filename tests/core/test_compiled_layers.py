"""Compiled decoder layers give the verdicts the plain layers give, and fail safe.

The compiler is the real one (inductor, C++ kernels on the CPU): the tiny model compiles
in about half a minute on two cores, once for the module (the batch dimension is
dynamic, so a second batch size reuses the compilation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from nf4_layout import gpu_layout_on_cpu
from PIL import Image
from torch._dynamo.utils import counters

from fakescope.compiled_layers import (
    CompiledLayers,
    decoder_layers,
    resolve_compile,
    run_compiled,
)
from fakescope.cuda_graphs import VerdictGraphs
from fakescope.errors import ModelLoadError
from fakescope.loading import load_model
from fakescope.model import ForensicModel
from server.settings import Settings, SettingsError


def _images(count: int) -> list[Image.Image]:
    colours = [(200, 30, 30), (20, 160, 40), (30, 40, 220), (240, 240, 20), (90, 90, 90)]
    return [Image.new("RGB", (48 + 7 * i, 40 + 3 * i), colours[i % 5]) for i in range(count)]


@pytest.fixture(scope="module")
def compiled_model(tiny_model_dir: Path) -> Iterator[ForensicModel]:
    model = load_model(str(tiny_model_dir), device="cpu", compile="on", progress=False)
    yield model
    torch._dynamo.reset()


def test_compile_auto_means_cuda_only() -> None:
    assert resolve_compile(None, torch.device("cpu")) is False
    assert resolve_compile("auto", torch.device("cuda", 0)) is True
    assert resolve_compile("auto", torch.device("cuda", 0), "nf4") is True
    assert resolve_compile("auto", torch.device("cuda", 0), "int8") is False
    assert resolve_compile("on", torch.device("cuda", 0), "int8") is True
    assert resolve_compile(" ON ", torch.device("cpu")) is True
    assert resolve_compile("off", torch.device("cuda", 0)) is False
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        resolve_compile("fast", torch.device("cpu"))


def test_an_unknown_compile_mode_is_a_load_error(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="compile mode"):
        load_model(str(tiny_model_dir), device="cpu", compile="always", progress=False)


def test_the_server_refuses_an_unknown_compile_setting() -> None:
    assert Settings.from_env({"FAKESCOPE_COMPILE": "off"}).compile == "off"
    with pytest.raises(SettingsError, match="FAKESCOPE_COMPILE"):
        Settings.from_env({"FAKESCOPE_COMPILE": "maybe"})


def test_plain_models_compile_nothing(tiny_model: ForensicModel) -> None:
    assert tiny_model.compiled_layers is None


def test_compiled_verdicts_equal_plain_verdicts(
    compiled_model: ForensicModel, tiny_model: ForensicModel
) -> None:
    compiled = compiled_model.compiled_layers
    assert compiled is not None
    counters["stats"].clear()
    for count in (3, 5):  # two batch sizes, one compilation (the batch is dynamic)
        images = _images(count)
        assert compiled_model.score(images) == pytest.approx(tiny_model.score(images), abs=1e-5)
    assert compiled.failed is None
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really compiled the layers
    # The swap is undone: the model holds its plain layers, with their own names.
    layers = decoder_layers(compiled_model.model)
    assert layers is not None
    assert all(type(layer).__name__ == "LlamaDecoderLayer" for layer in layers)
    assert set(compiled_model.model.state_dict()) == set(tiny_model.model.state_dict())


def test_the_graph_forward_records_compiled_layers(compiled_model: ForensicModel) -> None:
    """What a verdict graph would capture on CUDA, with the compiled layers swapped in."""
    assert compiled_model._detect_ids is not None
    inputs = compiled_model.prepare_detect(_images(3))
    plain = VerdictGraphs(compiled_model.model, compiled_model._detect_ids)
    graphs = VerdictGraphs(
        compiled_model.model, compiled_model._detect_ids, compiled=compiled_model.compiled_layers
    )
    with torch.inference_mode():
        torch.testing.assert_close(
            graphs.forward(inputs["pixel_values"]),
            plain.forward(inputs["pixel_values"]),
            rtol=1e-4,
            atol=1e-5,
        )


def _refusing_backend(graph: Any, example_inputs: Any) -> Any:
    raise RuntimeError("this backend compiles nothing")


def test_a_compiler_failure_falls_back_to_the_plain_layers(
    tiny_model: ForensicModel, caplog: pytest.LogCaptureFixture
) -> None:
    layers = decoder_layers(tiny_model.model)
    assert layers is not None
    refusing = CompiledLayers(layers, backend=_refusing_backend)
    inputs = tiny_model.prepare_detect(_images(2))
    with torch.inference_mode():
        expected = tiny_model.model(**inputs, use_cache=False).logits
        got = run_compiled(refusing, lambda: tiny_model.model(**inputs, use_cache=False).logits)
    torch.testing.assert_close(got, expected)
    assert refusing.failed is not None and "compiles nothing" in refusing.failed
    assert "verdicts without compiled layers" in caplog.text
    assert all(type(layer).__name__ == "LlamaDecoderLayer" for layer in layers)
    torch._dynamo.reset()


def test_errors_of_the_call_itself_propagate(tiny_model: ForensicModel) -> None:
    layers = decoder_layers(tiny_model.model)
    assert layers is not None
    compiled = CompiledLayers(layers, backend="eager")

    def broken() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        run_compiled(compiled, broken)
    assert compiled.failed is None  # not the compiler's fault: compilation stays on
    assert all(type(layer).__name__ == "LlamaDecoderLayer" for layer in layers)


def test_warm_up_scores_the_batch_sizes_it_will_serve(
    tiny_model: ForensicModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    original = tiny_model.score

    def counting(images: list[Image.Image]) -> list[float]:
        seen.append(len(images))
        return original(images)

    monkeypatch.setattr(tiny_model, "score", counting)
    tiny_model.warm_up(8)
    assert seen == [1, 8]  # no graphs on the CPU: the smallest and the largest batch


def test_nf4_layers_compile_whole_with_bitsandbytes_ops_inside(tiny_model_dir: Path) -> None:
    """bitsandbytes' 4-bit matmuls trace as custom ops: one graph, no breaks, same values."""
    plain = gpu_layout_on_cpu(
        load_model(str(tiny_model_dir), device="cpu", quantization="nf4", progress=False)
    )
    compiled = gpu_layout_on_cpu(
        load_model(
            str(tiny_model_dir), device="cpu", quantization="nf4", compile="on", progress=False
        )
    )
    assert compiled.compiled_layers is not None
    torch._dynamo.reset()
    counters.clear()
    images = _images(4)
    assert compiled.score(images) == pytest.approx(plain.score(images), abs=1e-5)
    assert compiled.compiled_layers.failed is None
    assert counters["stats"]["unique_graphs"] == 1
    assert dict(counters["graph_break"]) == {}
    torch._dynamo.reset()


def test_qwen_layers_compile_with_their_3d_positions(tmp_path: Path) -> None:
    """Qwen2.5-VL (multimodal RoPE, per-image token counts) compiles as one graph too."""
    from fakescope.tiny import build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path / "qwen", family="qwen2_5_vl")
    plain = load_model(str(path), device="cpu", progress=False)
    compiled = load_model(str(path), device="cpu", compile="on", progress=False)
    assert compiled.compiled_layers is not None
    torch._dynamo.reset()
    counters.clear()
    images = _images(4)  # four sizes: four image-token counts, one batch
    assert compiled.score(images) == pytest.approx(plain.score(images), abs=1e-5)
    assert compiled.compiled_layers.failed is None
    assert counters["stats"]["unique_graphs"] >= 1
    assert dict(counters["graph_break"]) == {}
    torch._dynamo.reset()
