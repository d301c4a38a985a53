"""Reading verdicts, yes/no answers and option letters out of generated text."""

from __future__ import annotations

import pytest

from fakescope.evaluation.protocols import (
    mcq_prompt,
    parse_closed_answer,
    parse_mcq_answer,
    parse_verdict,
    yes_means,
)

FAKE_OR_REAL = "What is the authenticity of this image, fake or real?"


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("Fake.", "fake"),
        ("This image is real.", "real"),
        ("It looks AI-generated, with smooth textures", "fake"),
        ("The photo is not real", "fake"),
        ("It is not fake; the noise is natural", "real"),
        ("I cannot tell", "unknown"),
        ("", "unknown"),
        ("This is not a real photo", "fake"),  # "not a" negates too
        ("It isn't an authentic image", "fake"),
        ("I cannot tell whether it is fake or real", "unknown"),  # a hedge is no verdict
        ("Real or fake? Hard to say, maybe generated", "real"),  # opening word decides
        ("Fake. The lighting looks natural", "fake"),
        ("The image is real, not fake", "real"),
    ],
)
def test_verdict_is_the_first_verdict_word_with_negation_flipping_it(
    answer: str, verdict: str
) -> None:
    assert parse_verdict(answer) == verdict


def test_yes_no_templates_know_what_yes_means() -> None:
    assert yes_means("Is this a fake image, yes or no?") == "fake"
    assert yes_means("Is this image real, yes or no?") == "real"
    assert yes_means(FAKE_OR_REAL) is None


@pytest.mark.parametrize(
    ("question", "answer", "verdict"),
    [
        ("Is this a fake image, yes or no?", "Yes, it is.", "fake"),
        ("Is this a fake image, yes or no?", "No.", "real"),
        ("Is this image real, yes or no?", "no", "fake"),
        ("Is this a fake image, yes or no?", "It is generated.", "fake"),
        (FAKE_OR_REAL, "real", "real"),
        (None, "fake", "fake"),
    ],
)
def test_closed_answers_follow_the_question_asked(
    question: str | None, answer: str, verdict: str
) -> None:
    assert parse_closed_answer(question, answer) == verdict


def test_multiple_choice_prompt_lists_lettered_options() -> None:
    prompt = mcq_prompt("Which flaw?", ["none", "warped text"])
    assert "A. none\nB. warped text" in prompt
    assert parse_mcq_answer("(B) warped text", 2) == "B"
    assert parse_mcq_answer("The answer is A.", 2) == "A"
    assert parse_mcq_answer("C", 2) is None
    assert parse_mcq_answer("no idea", 2) is None


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("A", "A"),
        ("A.", "A"),
        ("A. a real photograph", "A"),
        ("(A) a real photograph", "A"),
        ("A is correct: the hands are warped", "A"),
        ("Answer: A", "A"),
        ("A generated image shows warped text, so the answer is C.", "C"),
        ("A generated image like this one", None),  # the article, and no option given
        ("I think it is D", "D"),
        ("I", "I"),
    ],
)
def test_an_article_or_pronoun_is_not_read_as_an_option(answer: str, letter: str | None) -> None:
    assert parse_mcq_answer(answer, 9) == letter
