"""The forensic tasks: each asks its prompt; closed-form answers parse into labels."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from PIL import Image

from fakescope import prompts, tasks
from fakescope.model import ForensicModel


class RecordingModel:
    """Stands in for a ForensicModel: records prompts, answers with canned text."""

    def __init__(self, answers: Sequence[str] = ("Fake. The hands have six fingers.",)) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def generate(self, image: Image.Image, prompt: str, **kwargs: Any) -> str:
        self.prompts.append(prompt)
        return self.answers[0]

    def generate_batch(
        self, images: Sequence[Image.Image], prompts: Sequence[str], **kwargs: Any
    ) -> list[str]:
        self.prompts.extend(prompts)
        return self.answers[: len(images)]

    def stream(self, image: Image.Image, prompt: str, **kwargs: Any) -> Iterator[str]:
        self.prompts.append(prompt)
        yield from self.answers[0].split(" ")


IMAGE = Image.new("RGB", (8, 8))


def test_each_task_asks_its_prompt() -> None:
    model: Any = RecordingModel()
    tasks.explain(model, IMAGE)
    tasks.explain(model, IMAGE, "fault_finding")
    tasks.discuss_aspect(model, IMAGE, "light & shadow")
    tasks.suggest_enhancements(model, IMAGE)
    tasks.ask(model, IMAGE, "  Who took it? ")
    assert model.prompts == [
        prompts.EXPLAIN_PROMPTS["inference"],
        prompts.EXPLAIN_PROMPTS["fault_finding"],
        prompts.aspect_prompt("light_and_shadow"),
        prompts.ENHANCE_PROMPT,
        "Who took it?",
    ]


def test_bad_task_input_raises_value_error_before_generation() -> None:
    model: Any = RecordingModel()
    with pytest.raises(ValueError):
        tasks.discuss_aspect(model, IMAGE, "vibes")
    with pytest.raises(ValueError):
        tasks.explain(model, IMAGE, "haiku")
    with pytest.raises(ValueError):
        tasks.ask(model, IMAGE, "   ")
    assert model.prompts == []


def test_answer_stream_yields_the_pieces() -> None:
    model: Any = RecordingModel(["Real photo"])
    assert list(tasks.answer_stream(model, IMAGE, "Why?")) == ["Real", "photo"]


def test_detect_closed_asks_the_detect_prompt_and_parses_answers() -> None:
    model: Any = RecordingModel(["Fake.", "real", "I cannot tell"])
    assert tasks.detect_closed(model, [IMAGE] * 3) == ["fake", "real", "unknown"]
    assert model.prompts == [prompts.DETECT_PROMPT] * 3


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Fake", "fake"),
        (" real.", "real"),
        ("REAL, the lighting is consistent", "real"),
        ("The image is fake because of the texture", "fake"),
        ("It is not fake", "unknown"),
        ("fake or real? hard to say", "fake"),
        ("Hard to say: fake or real", "unknown"),
        ("", "unknown"),
        ("Fakeness everywhere", "unknown"),
    ],
)
def test_parse_label(answer: str, label: str) -> None:
    assert tasks.parse_label(answer) == label


def test_detect_closed_on_the_tiny_model_gives_labels(tiny_model: ForensicModel) -> None:
    labels = tasks.detect_closed(tiny_model, [IMAGE, Image.new("RGB", (40, 20), "red")])
    assert len(labels) == 2
    assert set(labels) <= {"fake", "real", "unknown"}
