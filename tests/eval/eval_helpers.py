"""Helpers for the evaluation tests: tiny images written on the spot and a stand-in model."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image


def write_png(path: Path, shade: int = 128, size: tuple[int, int] = (16, 12)) -> Path:
    """A small solid-colour PNG; `shade` makes images distinguishable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 255 - shade, (shade * 7) % 256)).save(path, format="PNG")
    return path


@dataclass(frozen=True)
class StandInInfo:
    """The parts of ModelInfo evaluation reads."""

    id: str = "stand-in"
    untrained: bool = True

    @property
    def key(self) -> str:
        return f"{self.id}@-:none"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "revision": None, "quantization": "none", "untrained": True}


class StandInModel:
    """A deterministic detector: p_fake is the image's mean red level; answers follow it."""

    def __init__(self, fail_after_calls: int | None = None) -> None:
        self.info = StandInInfo()
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def score(self, images: Sequence[Image.Image]) -> list[float]:
        self.calls += 1
        if self.fail_after_calls is not None and self.calls > self.fail_after_calls:
            raise RuntimeError("simulated crash")
        return [sum(im.convert("RGB").getpixel((0, 0))[:1]) / 255.0 for im in images]

    def generate_batch(
        self, images: Sequence[Image.Image], prompts: Sequence[str], *, max_new_tokens: int = 256
    ) -> list[str]:
        scores = self.score(images)
        answers = ["Fake." if s >= 0.5 else "Real." for s in scores]
        return ["A" if "letter" in p else a for p, a in zip(prompts, answers, strict=True)]


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def prediction_rows(out: Path) -> list[dict[str, str]]:
    """The rows of an eval run's predictions.csv."""
    with (out / "predictions.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
