"""Every question FakeScope asks the model, in one versioned place.

The detect prompt follows FakeBench's FakeClass style and asks for the label word first,
so that the next-token logits at the answer position carry the verdict (token-based
probability estimation reads them). Explanations come in the two FakeBench modes, aspects
are the 14 FakeQA forgery attributes. Bump ``PROMPT_VERSION`` whenever any text here
changes: cached answers are keyed by it.
"""

from __future__ import annotations

import re

PROMPT_VERSION = "2026.11-1"

DETECT_PROMPT = (
    "What is the authenticity of this image, fake or real? Answer with one word: fake or real."
)

EXPLAIN_PROMPTS: dict[str, str] = {
    # Fault-finding: state the judgement, then justify it with visible faults.
    "fault_finding": (
        "Is this image fake or real? State your judgement first, then explain why, "
        "pointing to the visual evidence in the image."
    ),
    # Inference: reason from local to global traces and conclude at the end.
    "inference": (
        "Analyze the authenticity of this image step by step, from local details such as "
        "texture, edges and clarity to global properties such as light and shadow, layout, "
        "perspective and semantics, then conclude whether the image is fake or real."
    ),
}

ASPECTS: tuple[str, ...] = (
    "texture",
    "edge",
    "clarity",
    "light_and_shadow",
    "layout",
    "symmetry",
    "reflection",
    "perspective",
    "shape",
    "theme",
    "content_deficiency",
    "distortion",
    "unrealistic_aspect",
    "overall_tone",
)

# How each aspect reads inside a question (FakeQA writes "light & shadow").
_ASPECT_PHRASES: dict[str, str] = {
    aspect: aspect.replace("_and_", " & ").replace("_", " ") for aspect in ASPECTS
}

ASPECT_TEMPLATE = "How is the {aspect} regarding the authenticity of this image?"

ENHANCE_PROMPT = (
    "Give concrete, actionable suggestions about this image: what would make it more "
    "convincing as a real photograph, what gives it away, and what should a viewer check "
    "to decide whether it is fake or real?"
)

MAX_QUESTION_CHARS = 2000


def canonical_aspect(aspect: str) -> str:
    """The canonical snake_case name of an aspect given in any common spelling.

    Accepts "light & shadow", "Light and Shadow", "light-and-shadow", "light_and_shadow".
    Raises ValueError for anything that is not one of the 14 aspects.
    """
    words = re.sub(r"&", " and ", aspect.strip().lower())
    name = re.sub(r"[^a-z0-9]+", "_", words).strip("_")
    if name not in _ASPECT_PHRASES:
        raise ValueError(f"unknown aspect {aspect!r}; expected one of: {', '.join(ASPECTS)}")
    return name


def aspect_prompt(aspect: str) -> str:
    """The FakeQA question about one forgery aspect (ValueError on an unknown aspect)."""
    return ASPECT_TEMPLATE.format(aspect=_ASPECT_PHRASES[canonical_aspect(aspect)])


def explain_prompt(mode: str) -> str:
    """The explanation prompt of one mode: ``fault_finding`` or ``inference``."""
    try:
        return EXPLAIN_PROMPTS[mode]
    except KeyError:
        modes = ", ".join(EXPLAIN_PROMPTS)
        raise ValueError(f"unknown explanation mode {mode!r}; expected one of: {modes}") from None


def question_prompt(question: str) -> str:
    """A user's free question, whitespace-normalised and bounded in length.

    Raises ValueError when the question is empty or longer than ``MAX_QUESTION_CHARS``.
    """
    text = " ".join(question.split())
    if not text:
        raise ValueError("the question is empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise ValueError(f"the question is longer than {MAX_QUESTION_CHARS} characters")
    return text
