"""CLIP-style pixel preprocessing straight from PIL: the processor's tensors, less CPU.

Without torchvision, transformers' LLaVA image processors run their PIL backend: each
image goes PIL → NumPy → PIL (to resize) → NumPy (to crop, rescale and normalise in
float64/float32 NumPy) → torch. For a detect batch that round trip, not the model, is
what the CPU spends its time on, and most of it holds the GIL while the model thread
wants it to launch kernels. ``ClipPixels`` does the same steps once each: PIL resizes
(the same resampling filter on the same uint8 pixels, so the same result) and crops,
then torch rescales and normalises the whole batch in one vectorised, GIL-free pass.

Measured on this project's 2-core CI machine, 8 images: 14.7 against 20.3 ms per 1024 px
image, 4.8 against 7.4 ms per 333 x 500 image; the values equal the processor's to 5e-7
(tests/core/test_pixels.py checks them on many sizes and modes).

Only the configurations it reproduces are taken (``for_processor`` returns None for the
rest, which keep the processor): the PIL backend of the CLIP and LLaVA-1.5 processors,
resizing the shortest edge, then centre-cropping to at most that size, no padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

_SUPPORTED = ("CLIPImageProcessorPil", "LlavaImageProcessorPil")


@dataclass(frozen=True)
class ClipPixels:
    """Shortest-edge resize, centre crop, rescale, normalise: ``(batch, 3, H, W)`` float32."""

    shortest_edge: int
    crop_height: int
    crop_width: int
    resample: Image.Resampling
    rescale_factor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def for_processor(cls, processor: Any) -> ClipPixels | None:
        """The fast path for ``processor``, or None where it would compute anything else."""
        if type(processor).__name__ not in _SUPPORTED:
            return None
        size, crop = processor.size, processor.crop_size
        wanted = (
            processor.do_resize,
            processor.do_center_crop,
            processor.do_rescale,
            processor.do_normalize,
        )
        if not all(wanted) or getattr(processor, "do_pad", False):
            return None
        edge = getattr(size, "shortest_edge", None)
        other_sizes = ("longest_edge", "height", "width", "max_height", "max_width")
        if not edge or any(getattr(size, name, None) for name in other_sizes):
            return None
        if not crop.height or not crop.width or max(crop.height, crop.width) > edge:
            return None  # a crop larger than the resized image pads: not reproduced here
        mean, std = _three(processor.image_mean), _three(processor.image_std)
        if mean is None or std is None or processor.resample is None:
            return None
        return cls(
            shortest_edge=int(edge),
            crop_height=int(crop.height),
            crop_width=int(crop.width),
            resample=Image.Resampling(int(processor.resample)),
            rescale_factor=float(processor.rescale_factor),
            mean=mean,
            std=std,
        )

    def crops(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resized and cropped RGB images as one ``(batch, H, W, 3)`` uint8 tensor.

        The per-image part (PIL releases the GIL while it resizes): call it from
        several threads on chunks of a batch, then ``normalize`` the concatenation.
        """
        return torch.stack([torch.from_numpy(self._crop(image)) for image in images])

    def normalize(self, crops: torch.Tensor) -> torch.Tensor:
        """``(batch, H, W, 3)`` uint8 → the processor's ``(batch, 3, H, W)`` float32 values."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        pixels = crops.permute(0, 3, 1, 2).to(torch.float32)
        return ((pixels * self.rescale_factor - mean) / std).contiguous()

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.normalize(self.crops(images))

    def _crop(self, image: Image.Image) -> np.ndarray:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        width, height = rgb.size
        # transformers' get_resize_output_image_size(default_to_square=False): the short
        # side becomes the edge, the long side keeps the ratio, truncated.
        if width <= height:
            new_width, new_height = self.shortest_edge, int(self.shortest_edge * height / width)
        else:
            new_width, new_height = int(self.shortest_edge * width / height), self.shortest_edge
        resized = rgb.resize((new_width, new_height), self.resample)
        top = (new_height - self.crop_height) // 2
        left = (new_width - self.crop_width) // 2
        box = (left, top, left + self.crop_width, top + self.crop_height)
        return np.array(resized.crop(box))  # a writable copy: torch wraps it as is


def _three(values: Any) -> tuple[float, float, float] | None:
    if values is None:
        return None
    items = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values] * 3)]
    return (items[0], items[1], items[2]) if len(items) == 3 else None
