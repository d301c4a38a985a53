"""Token-based probability estimation: the paper's formula and the label token sets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from fakescope.errors import LabelTokenError
from fakescope.scoring import p_fake_from_logits, resolve_label_tokens


def by_hand(logits: list[float], fake_ids: list[int], real_ids: list[int]) -> float:
    """exp(Σ_fake z) / (exp(Σ_fake z) + exp(Σ_real z)), written out."""
    fake = math.exp(sum(logits[i] for i in fake_ids))
    real = math.exp(sum(logits[i] for i in real_ids))
    return fake / (fake + real)


def test_single_token_labels_match_the_hand_computation() -> None:
    logits = [0.5, 2.0, -1.0, 0.25]
    got = p_fake_from_logits(torch.tensor([logits]), [1], [3])
    assert got.shape == (1,)
    assert got.item() == pytest.approx(by_hand(logits, [1], [3]), abs=1e-6)
    assert got.item() == pytest.approx(1 / (1 + math.exp(-(2.0 - 0.25))), abs=1e-6)


def test_multi_token_label_sets_sum_their_logits() -> None:
    logits = [1.0, -0.5, 0.3, 2.2, -1.7, 0.9]
    fake_ids, real_ids = [0, 3, 5], [1, 2, 4]
    got = p_fake_from_logits(torch.tensor([logits]), fake_ids, real_ids).item()
    # Σ fake = 4.1, Σ real = -1.9: p = e^4.1 / (e^4.1 + e^-1.9)
    assert got == pytest.approx(math.exp(4.1) / (math.exp(4.1) + math.exp(-1.9)), abs=1e-6)
    assert got == pytest.approx(by_hand(logits, fake_ids, real_ids), abs=1e-6)


def test_each_row_of_a_batch_is_scored_on_its_own() -> None:
    rows = [[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0], [5.0, 5.0, 5.0, 5.0]]
    got = p_fake_from_logits(torch.tensor(rows), [0, 1], [2, 3]).tolist()
    assert got == pytest.approx([by_hand(r, [0, 1], [2, 3]) for r in rows], abs=1e-6)
    assert got[2] == pytest.approx(0.5)


def test_huge_logits_neither_overflow_nor_give_nan() -> None:
    logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4]], dtype=torch.float16)
    got = p_fake_from_logits(logits, [0], [1])
    assert got.dtype == torch.float64
    assert got.tolist() == [1.0, 0.0]


def test_label_sets_of_different_sizes_are_rejected() -> None:
    with pytest.raises(ValueError):
        p_fake_from_logits(torch.zeros(1, 4), [0, 1], [2])
    with pytest.raises(ValueError):
        p_fake_from_logits(torch.zeros(1, 4), [], [])


def test_tiny_tokenizer_labels_resolve_to_paired_single_tokens(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    fake_ids, real_ids = resolve_label_tokens(tokenizer)
    assert len(fake_ids) == len(real_ids) == 4
    decoded = [tokenizer.decode([i]) for i in fake_ids + real_ids]
    assert decoded == ["fake", " fake", "Fake", " Fake", "real", " real", "Real", " Real"]


def _word_level_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_a_tokenizer_without_a_label_word_raises_label_token_error() -> None:
    tokenizer = _word_level_tokenizer(["the", "image", "is", "fake", "Fake"])
    with pytest.raises(LabelTokenError, match="real"):
        resolve_label_tokens(tokenizer)


def test_variants_count_only_where_both_labels_have_them() -> None:
    # "Fake" exists but "Real" does not: only the lower-case pair is used.
    tokenizer = _word_level_tokenizer(["fake", "real", "Fake"])
    fake_ids, real_ids = resolve_label_tokens(tokenizer)
    assert [tokenizer.decode([i]) for i in fake_ids] == ["fake"]
    assert [tokenizer.decode([i]) for i in real_ids] == ["real"]


def test_an_infinite_label_logit_is_no_score() -> None:
    # An fp16 overflow writes inf: the README's contract is "p_fake is then null" (analysis
    # turns a non-finite p_fake into null and review), so it must not read as a sure 1.0 or 0.0.
    inf = float("inf")
    rows = [[inf, 0.0], [0.0, -inf], [-inf, 0.0], [0.0, inf], [inf, inf], [float("nan"), 0.0]]
    got = p_fake_from_logits(torch.tensor(rows), [0], [1])
    assert torch.isnan(got).all(), got.tolist()
    overflowed = torch.tensor([[7e4, 0.0]]).to(torch.float16)  # past fp16's 65504: inf
    assert torch.isnan(p_fake_from_logits(overflowed, [0], [1])).all()


def test_a_non_finite_logit_outside_the_label_tokens_does_not_matter() -> None:
    got = p_fake_from_logits(torch.tensor([[2.0, 0.0, float("inf"), float("nan")]]), [0], [1])
    assert got.item() == pytest.approx(1 / (1 + math.exp(-2.0)))


def test_confident_scores_keep_their_order() -> None:
    # A tuned model's label-logit margins reach 20 and more (summed over 2-4 variants): in
    # float32 every margin past ~17 is exactly 1.0, and AP/ROC-AUC lose the ranking among
    # the confident images (a confidently wrong real ties with the fakes).
    margins = [15.0, 20.0, 25.0, 30.0, 35.0]
    logits = torch.tensor([[m, 0.0] for m in margins])
    got = p_fake_from_logits(logits, [0], [1]).tolist()
    assert got == sorted(got) and len(set(got)) == len(got) and max(got) < 1.0
    for margin, p in zip(margins, got, strict=True):
        assert p == pytest.approx(1 / (1 + math.exp(-margin)), abs=1e-15)
    lows = p_fake_from_logits(-logits, [0], [1]).tolist()
    assert lows == sorted(lows, reverse=True) and min(lows) > 0.0
