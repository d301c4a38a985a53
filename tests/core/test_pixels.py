"""The PIL fast path computes the pixels transformers' processor computes, or declines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from fakescope.model import ForensicModel
from fakescope.pixels import ClipPixels

# LLaVA-1.5's published preprocessing: CLIP ViT-L/14 at 336 px.
LLAVA_15 = {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}}
SIZES = [(1024, 1024), (1000, 700), (481, 640), (333, 500), (336, 336), (337, 2000), (40, 30)]


def _noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed + width * 7 + height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return image if mode == "RGB" else image.convert(mode)


@pytest.mark.parametrize("processor_class", [CLIPImageProcessorPil, LlavaImageProcessorPil])
def test_pixels_equal_the_processor_on_every_shape(processor_class: type) -> None:
    processor = processor_class(**LLAVA_15)
    fast = ClipPixels.for_processor(processor)
    assert fast is not None
    images = [_noise(w, h, seed=i) for i, (w, h) in enumerate(SIZES)]
    for image in images:  # one at a time: shapes differ before the crop
        expected = processor(images=[image], return_tensors="pt")["pixel_values"]
        got = fast([image])
        assert got.shape == expected.shape == (1, 3, 336, 336)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_a_batch_equals_the_processor_batch() -> None:
    processor = CLIPImageProcessorPil(**LLAVA_15)
    fast = ClipPixels.for_processor(processor)
    assert fast is not None
    images = [_noise(w, h, seed=i) for i, (w, h) in enumerate(SIZES)]
    expected = processor(images=images, return_tensors="pt")["pixel_values"]
    # Chunks resized apart (as the model's threads do), normalised together.
    crops = torch.cat([fast.crops(images[:3]), fast.crops(images[3:])])
    assert crops.dtype == torch.uint8
    torch.testing.assert_close(fast.normalize(crops), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_other_modes_become_rgb_as_the_model_gives_them(mode: str) -> None:
    processor = CLIPImageProcessorPil(**LLAVA_15)
    fast = ClipPixels.for_processor(processor)
    assert fast is not None
    image = _noise(500, 400, mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = image.convert("I;16")
    rgb = image.convert("RGB")
    expected = processor(images=[rgb], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(fast([image]), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"do_pad": True}, "padding to a square"),
        ({"size": {"height": 336, "width": 336}}, "a fixed size"),
        ({"crop_size": {"height": 400, "width": 400}}, "a crop larger than the resize"),
        ({"do_center_crop": False}, "no crop"),
        ({"do_normalize": False}, "no normalisation"),
    ],
)
def test_other_configurations_keep_the_processor(settings: dict, why: str) -> None:
    processor = LlavaImageProcessorPil(**{**LLAVA_15, **settings})
    assert ClipPixels.for_processor(processor) is None, why


def test_processors_of_other_families_keep_their_own_code() -> None:
    class Qwen2VLImageProcessorPil:  # a name is all for_processor looks at first
        pass

    assert ClipPixels.for_processor(Qwen2VLImageProcessorPil()) is None


def test_the_model_uses_the_fast_path_and_gets_the_processor_pixels(
    tiny_model: ForensicModel,
) -> None:
    assert tiny_model._fast_pixels is not None  # the tiny LLaVA processor is supported
    images = [_noise(w, h, seed=i) for i, (w, h) in enumerate(SIZES)] * 2  # 14: threaded
    images[1] = images[1].convert("RGBA")
    got = tiny_model.prepare_detect(images)["pixel_values"]
    rgb = [image.convert("RGB") for image in images]
    processor = tiny_model.processor.image_processor
    expected = processor(images=rgb, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_the_preprocessing_benchmark_runs_and_checks_its_values(tmp_path: Path) -> None:
    out = tmp_path / "preprocess.json"
    command = [sys.executable, "benchmarks/bench_preprocess.py", "--quick", "--size", "400"]
    completed = subprocess.run(
        [*command, "--json", str(out)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert set(figures["batches"]) == {"1", "8"}
    for batch in figures["batches"].values():
        assert batch["processor_ms"] > 0 and batch["pixels_ms"] > 0
        assert batch["max_abs_diff"] < 1e-5
