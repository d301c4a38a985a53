"""The two detection protocols, and multiple choice, as functions of a model and a batch.

- quantitative: p_fake from token-based probability estimation (one forward pass); the label
  is fake when p_fake >= 0.5, the usual operating point for accuracy in the detection papers.
- closed: the verdict read from a short generated answer, as in the paper's closed-ended
  setting. Images with their own benchmark question (FakeBench FakeClass) are asked that
  question, yes/no templates included; the others go through `tasks.detect_closed_answers`.
With provenance on, evidence that decides by the core's verdict rules (decisive or strong
"generated" evidence) sets the final label (fake) and score (1.0); the model-only values are
kept beside them so that robustness and ablations can use the model alone.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL import Image

    from fakescope.analysis import Inspection

QUANTITATIVE, CLOSED, MCQ = "quantitative", "closed", "mcq"
FAKE_WORD, REAL_WORD, UNKNOWN = "fake", "real", "unknown"
DECISION_THRESHOLD = 0.5
CLOSED_MAX_NEW_TOKENS = 16

_VERDICT_WORDS = re.compile(
    r"\b(?:(not|isn't|isn\u2019t)\s+(?:an?\s+)?)?"
    r"(fake|generated|synthetic|artificial|ai-generated|forged|real|authentic|genuine|natural)\b",
    re.IGNORECASE,
)
_FAKE_STEMS = {"fake", "generated", "synthetic", "artificial", "ai-generated", "forged"}
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


class EvalModel(Protocol):
    """What evaluation needs from a `ForensicModel` (tests pass stand-ins)."""

    @property
    def info(self) -> Any: ...

    def score(self, images: Sequence[Image.Image]) -> list[float]: ...

    def generate_batch(
        self, images: Sequence[Image.Image], prompts: Sequence[str], *, max_new_tokens: int = 256
    ) -> list[str]: ...


def parse_verdict(text: str) -> str:
    """fake / real / unknown from a free answer; "not" ("not a", "isn't") flips a word.

    An answer that opens with a verdict word says it; otherwise every verdict word must agree,
    and an answer that names both ("I cannot tell whether it is fake or real") is unknown.
    """
    verdicts = []
    for match in _VERDICT_WORDS.finditer(text):
        is_fake = match.group(2).lower() in _FAKE_STEMS
        if match.group(1):
            is_fake = not is_fake
        verdicts.append((match.start(), FAKE_WORD if is_fake else REAL_WORD))
    if not verdicts:
        return UNKNOWN
    first_at, first = verdicts[0]
    if not text[:first_at].strip(" \t\n\"'*(["):
        return first
    return first if all(v == first for _, v in verdicts) else UNKNOWN


def yes_means(question: str) -> str | None:
    """For a yes/no question, the verdict a "yes" gives ("Is this a fake image?" -> fake)."""
    lowered = question.lower()
    if "yes or no" not in lowered and not re.match(r"\s*(is|does|was|are)\b", lowered):
        return None
    asked = parse_verdict(lowered.replace("yes or no", ""))
    return None if asked == UNKNOWN else asked


def parse_closed_answer(question: str | None, answer: str) -> str:
    """The verdict in an answer to the image's question (or to the detect prompt)."""
    positive = yes_means(question) if question else None
    if positive is None:
        return parse_verdict(answer)
    match = _YES_NO.search(answer)
    if match is None:
        return parse_verdict(answer)
    if match.group(1).lower() == "yes":
        return positive
    return REAL_WORD if positive == FAKE_WORD else FAKE_WORD


def label_of(word: str) -> int | None:
    return {FAKE_WORD: 1, REAL_WORD: 0}.get(word)


def word_of(p_fake: float) -> str:
    return FAKE_WORD if p_fake >= DECISION_THRESHOLD else REAL_WORD


def closed(
    model: EvalModel, images: Sequence[Image.Image], questions: Sequence[str | None]
) -> list[tuple[str, str]]:
    """(verdict word, answer text) per image."""
    results: list[tuple[str, str] | None] = [None] * len(images)
    asked = [i for i, q in enumerate(questions) if q]
    if asked:
        answers = model.generate_batch(
            [images[i] for i in asked],
            [str(questions[i]) for i in asked],
            max_new_tokens=CLOSED_MAX_NEW_TOKENS,
        )
        for i, answer in zip(asked, answers, strict=True):
            results[i] = (parse_closed_answer(questions[i], answer), answer)
    plain = [i for i, q in enumerate(questions) if not q]
    if plain:
        from fakescope.tasks import detect_closed_answers

        # The answer text is kept (predictions.csv), not only the word read from it.
        pairs = detect_closed_answers(model, [images[i] for i in plain])  # type: ignore[arg-type]
        for i, (word, answer) in zip(plain, pairs, strict=True):
            results[i] = (word if word in (FAKE_WORD, REAL_WORD) else UNKNOWN, answer)
    return [r for r in results if r is not None]


def apply_provenance(inspection: Inspection | None, model_info: Any, p_fake: float | None) -> bool:
    """True when provenance evidence decides "fake" under the core's verdict rules."""
    if inspection is None:
        return False
    from fakescope.analysis import build_analysis

    analysis = build_analysis(inspection, p_fake=p_fake, model_info=model_info)
    return analysis.decided_by == "provenance" and analysis.label == FAKE_WORD


def mcq_prompt(question: str, options: Sequence[str]) -> str:
    lines = [question.strip()]
    lines += [
        f"{letter}. {option}"
        for letter, option in zip(string.ascii_uppercase, options, strict=False)
    ]
    lines.append("Answer with the option's letter from the given choices directly.")
    return "\n".join(lines)


# After "A" or "I", a word that makes the letter the article or the pronoun ("A generated
# image...", "I think..."), unless it is a verb an option letter takes ("A is correct").
_WORD_AFTER_ARTICLE = re.compile(r"\s+(?!(?:is|was|would|seems|looks|appears|fits)\b)[a-z]")


def parse_mcq_answer(answer: str, n_options: int) -> str | None:
    """The option letter the answer gives: the first standalone one ("B", "(B)", "B. ...",
    "The answer is A."), where an "A" or "I" that begins a phrase in prose ("A generated
    image shows...") is read as the word it is, not as an option."""
    letters = string.ascii_uppercase[:n_options]
    for match in re.finditer(rf"\b([{letters}])\b", answer):
        letter = match.group(1)
        bracketed = answer[match.start() - 1 : match.start()] == "("
        if letter in "AI" and not bracketed and _WORD_AFTER_ARTICLE.match(answer, match.end()):
            continue
        return letter
    return None
