"""What a /v1/ask body asks: one aspect, the enhancement suggestions, or a free question."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fakescope import prompts
from server.problems import ProblemError
from server.requests import parse_bool, reject_nul, sha256_key


@dataclass(frozen=True)
class Question:
    sha256: str
    kind: str  # "aspect" | "enhance" | "question"
    text: str  # the aspect's canonical name, "enhance", or the normalised question
    prompt: str  # exactly what the model is asked

    @property
    def prompt_hash(self) -> str:
        return hashlib.sha256(f"{self.kind}\n{self.prompt}".encode()).hexdigest()


def parse_question(body: dict[str, Any]) -> Question:
    sha = sha256_key(body.get("sha256"))
    aspect, question = body.get("aspect"), body.get("question")
    enhance = parse_bool(body.get("enhance"), "enhance")
    asked = [name for name, v in (("aspect", aspect), ("question", question)) if v is not None]
    asked += ["enhance"] if enhance else []
    if len(asked) != 1:
        raise ProblemError(
            422,
            'ask exactly one of "aspect", "question" or "enhance": true'
            + (f" (got {', '.join(asked)})" if asked else ""),
        )
    if aspect is not None:
        if not isinstance(aspect, str):
            raise ProblemError(422, "aspect must be a string")
        try:
            name = prompts.canonical_aspect(aspect)
        except ValueError as exc:
            raise ProblemError(422, str(exc), code="unknown-aspect") from exc
        return Question(sha, "aspect", name, prompts.aspect_prompt(name))
    if enhance:
        return Question(sha, "enhance", "enhance", prompts.ENHANCE_PROMPT)
    if not isinstance(question, str):
        raise ProblemError(422, "question must be a string")
    reject_nul(question, "question")
    try:
        text = prompts.question_prompt(question)
    except ValueError as exc:
        raise ProblemError(422, str(exc)) from exc
    return Question(sha, "question", text, text)
