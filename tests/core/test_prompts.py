"""The prompts: one versioned place, the 14 FakeQA aspects, input checks."""

from __future__ import annotations

import pytest

from fakescope import prompts


def test_there_are_the_fourteen_fakeqa_aspects_in_snake_case() -> None:
    assert len(prompts.ASPECTS) == 14
    assert len(set(prompts.ASPECTS)) == 14
    assert all(a == a.lower() and " " not in a for a in prompts.ASPECTS)
    assert {"light_and_shadow", "content_deficiency", "overall_tone"} <= set(prompts.ASPECTS)


def test_aspect_prompt_follows_the_fakeqa_template() -> None:
    assert prompts.aspect_prompt("texture") == (
        "How is the texture regarding the authenticity of this image?"
    )
    assert prompts.aspect_prompt("light_and_shadow") == (
        "How is the light & shadow regarding the authenticity of this image?"
    )


@pytest.mark.parametrize(
    "spelling", ["light & shadow", "Light and Shadow", "light-and-shadow", " LIGHT_AND_SHADOW "]
)
def test_aspect_spellings_are_accepted(spelling: str) -> None:
    assert prompts.canonical_aspect(spelling) == "light_and_shadow"
    assert prompts.aspect_prompt(spelling) == prompts.aspect_prompt("light_and_shadow")


@pytest.mark.parametrize("aspect", ["", "colour", "texture and edge", "overall"])
def test_unknown_aspects_raise_value_error(aspect: str) -> None:
    with pytest.raises(ValueError, match="unknown aspect"):
        prompts.aspect_prompt(aspect)


def test_detect_prompt_asks_for_the_label_word_first() -> None:
    text = prompts.DETECT_PROMPT.lower()
    assert "authenticity" in text
    assert "fake or real" in text


def test_both_explanation_modes_exist_and_unknown_modes_are_rejected() -> None:
    assert set(prompts.EXPLAIN_PROMPTS) == {"fault_finding", "inference"}
    assert "local" in prompts.explain_prompt("inference")
    with pytest.raises(ValueError, match="unknown explanation mode"):
        prompts.explain_prompt("poetic")


def test_free_questions_are_normalised_and_bounded() -> None:
    assert prompts.question_prompt("  Why   is the sky\npink? ") == "Why is the sky pink?"
    with pytest.raises(ValueError, match="empty"):
        prompts.question_prompt(" \n ")
    with pytest.raises(ValueError, match="longer"):
        prompts.question_prompt("x" * (prompts.MAX_QUESTION_CHARS + 1))


def test_prompt_version_is_set() -> None:
    assert prompts.PROMPT_VERSION
    assert prompts.ENHANCE_PROMPT
