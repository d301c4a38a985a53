"""The tiny checkpoint: small, deterministic, loadable like any hub checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor

from fakescope.tiny import build_tiny_checkpoint


def test_tiny_checkpoint_is_about_one_megabyte(tiny_model_dir: Path) -> None:
    size = sum(f.stat().st_size for f in tiny_model_dir.iterdir())
    assert size < 2 * 1024 * 1024


def test_tiny_checkpoint_is_marked_untrained(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["fakescope_untrained"] is True
    assert config["model_type"] == "llava"


def test_tiny_checkpoint_loads_with_the_auto_classes(tiny_model_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert processor.tokenizer.image_token == "<image>"


def test_chat_template_renders_an_image_placeholder_and_the_assistant_turn(
    tiny_model_dir: Path,
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it real?"}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "USER: <image>\nIs it real? ASSISTANT:"


def test_label_words_are_single_tokens_in_every_case_and_spacing(tiny_model_dir: Path) -> None:
    tokenizer = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    for word in ("real", "fake", "Real", "Fake"):
        for text in (word, " " + word):
            assert len(tokenizer.encode(text, add_special_tokens=False)) == 1, text


def test_same_seed_gives_the_same_checkpoint(tmp_path: Path) -> None:
    a = build_tiny_checkpoint(tmp_path / "a", seed=3)
    b = build_tiny_checkpoint(tmp_path / "b", seed=3)
    c = build_tiny_checkpoint(tmp_path / "c", seed=4)
    weights = "model.safetensors"
    assert (a / weights).read_bytes() == (b / weights).read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    assert (a / weights).read_bytes() != (c / weights).read_bytes()


def test_unknown_family_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny family"):
        build_tiny_checkpoint(tmp_path, family="gpt2")


def test_a_folder_holding_another_checkpoint_is_refused_untouched(tmp_path: Path) -> None:
    real = tmp_path / "fakevlm"
    real.mkdir()
    (real / "config.json").write_text('{"model_type": "llava"}')
    (real / "model.safetensors").write_bytes(b"real weights")
    with pytest.raises(FileExistsError, match="not empty"):
        build_tiny_checkpoint(real)
    assert (real / "config.json").read_text() == '{"model_type": "llava"}'
    assert (real / "model.safetensors").read_bytes() == b"real weights"


def test_a_tiny_checkpoint_or_an_empty_folder_can_be_written_again(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    build_tiny_checkpoint(empty)
    first = (empty / "model.safetensors").read_bytes()
    build_tiny_checkpoint(empty, seed=1)
    assert (empty / "model.safetensors").read_bytes() != first
