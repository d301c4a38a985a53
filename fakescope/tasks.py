"""The forensic tasks beyond the verdict score: explain, aspects, enhancements, questions.

Each task is one prompt from prompts.py and one generation. ``detect_closed`` is the
closed-form verdict (the label word the model writes), for comparison with the
token-probability score of ``ForensicModel.score``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from PIL import Image

from fakescope.prompts import (
    DETECT_PROMPT,
    ENHANCE_PROMPT,
    aspect_prompt,
    explain_prompt,
    question_prompt,
)

if TYPE_CHECKING:
    from fakescope.model import ForensicModel

_WORD = re.compile(r"[a-z]+")
_NEGATED = re.compile(r"\bnot\s+(?:a\s+|an\s+)?(fake|real)\b")


def explain(
    model: ForensicModel, image: Image.Image, mode: str = "inference", *, max_new_tokens: int = 256
) -> str:
    """A reasoned explanation, in ``inference`` or ``fault_finding`` mode."""
    return model.generate(image, explain_prompt(mode), max_new_tokens=max_new_tokens)


def discuss_aspect(
    model: ForensicModel, image: Image.Image, aspect: str, *, max_new_tokens: int = 256
) -> str:
    """The model's discussion of one FakeQA aspect (ValueError on an unknown aspect)."""
    return model.generate(image, aspect_prompt(aspect), max_new_tokens=max_new_tokens)


def suggest_enhancements(
    model: ForensicModel, image: Image.Image, *, max_new_tokens: int = 256
) -> str:
    """Actionable suggestions: what gives the image away and what to check."""
    return model.generate(image, ENHANCE_PROMPT, max_new_tokens=max_new_tokens)


def ask(
    model: ForensicModel, image: Image.Image, question: str, *, max_new_tokens: int = 256
) -> str:
    """The answer to a free question (ValueError when it is empty or too long)."""
    return model.generate(image, question_prompt(question), max_new_tokens=max_new_tokens)


def answer_stream(
    model: ForensicModel, image: Image.Image, prompt: str, *, max_new_tokens: int = 256
) -> Iterator[str]:
    """Any of the answers above, as text pieces while they are generated."""
    return model.stream(image, prompt, max_new_tokens=max_new_tokens)


def detect_closed(
    model: ForensicModel, images: Sequence[Image.Image], *, max_new_tokens: int = 8
) -> list[str]:
    """The verdict each image gets in words: "fake", "real" or "unknown" (unparseable)."""
    pairs = detect_closed_answers(model, images, max_new_tokens=max_new_tokens)
    return [label for label, _answer in pairs]


def detect_closed_answers(
    model: ForensicModel, images: Sequence[Image.Image], *, max_new_tokens: int = 8
) -> list[tuple[str, str]]:
    """(verdict word, the answer as generated) per image, for records that keep the text."""
    answers = model.generate_batch(
        images, [DETECT_PROMPT] * len(images), max_new_tokens=max_new_tokens
    )
    return [(parse_label(answer), answer) for answer in answers]


def parse_label(answer: str) -> str:
    """The label a short answer gives: its first word if that is a label, else the only
    label word it mentions without negation; "unknown" when neither settles it."""
    text = answer.lower()
    words = _WORD.findall(text)
    if words and words[0] in {"fake", "real"}:
        return words[0]
    if _NEGATED.search(text):
        return "unknown"
    mentioned = {word for word in words if word in {"fake", "real"}}
    return mentioned.pop() if len(mentioned) == 1 else "unknown"
