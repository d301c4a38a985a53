"""Token-based probability estimation (FakeScope, arXiv 2503.24267).

The model was trained on hard labels only, yet its next-token logits at the answer
position of the detect prompt carry a score. With ``z_v`` the logit of token ``v`` and
``T_fake``, ``T_real`` the token sets of the two label words (same size):

    p_fake = exp(Σ_{v∈T_fake} z_v) / (exp(Σ_{v∈T_fake} z_v) + exp(Σ_{v∈T_real} z_v))

which is the logistic sigmoid of ``Σ_fake z - Σ_real z``: computed that way it never
overflows, whatever the size of the logits. It is computed in float64: in float32 every
margin past about 17 (a confident tuned model, its logits summed over 2-4 variants) would be
exactly 1.0, and AP and ROC-AUC would lose the ranking of the confident images. A label
logit that is not finite (inf from an fp16 overflow, NaN) gives a NaN score: no score at all,
never a sure 1.0 or 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fakescope.errors import LabelTokenError

FAKE_WORDS = ("fake", "Fake")
REAL_WORDS = ("real", "Real")


def p_fake_from_logits(
    logits: torch.Tensor, fake_ids: Sequence[int], real_ids: Sequence[int]
) -> torch.Tensor:
    """``p_fake`` for each row of answer-position logits of shape ``(batch, vocab)``.

    Returns a float64 CPU tensor of shape ``(batch,)``, NaN for a row whose label logits are
    not all finite. ``fake_ids`` and ``real_ids`` must be non-empty and of the same size, as
    the formula assumes.
    """
    # exp(a) / (exp(a) + exp(b)) == sigmoid(a - b), without overflow.
    return torch.sigmoid(margin_from_logits(logits, fake_ids, real_ids))


def margin_from_logits(
    logits: torch.Tensor, fake_ids: Sequence[int], real_ids: Sequence[int]
) -> torch.Tensor:
    """The TPE margin ``Σ_fake z - Σ_real z`` of each row (``p_fake = sigmoid(margin)``): the
    quantity calibration (calibration.py) rescales. Float64 on the CPU, NaN for a row whose
    label logits are not all finite."""
    if not fake_ids or len(fake_ids) != len(real_ids):
        raise ValueError("fake_ids and real_ids must be non-empty and of the same size")
    # Only the label columns, moved to the CPU (some devices have no float64) as float64.
    z_fake = logits[..., list(fake_ids)].to("cpu", torch.float64)
    z_real = logits[..., list(real_ids)].to("cpu", torch.float64)
    margin = z_fake.sum(dim=-1) - z_real.sum(dim=-1)
    finite = torch.isfinite(z_fake).all(dim=-1) & torch.isfinite(z_real).all(dim=-1)
    return torch.where(finite, margin, torch.full_like(margin, float("nan")))


def resolve_label_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The token ids of the label words as the tokenizer writes them at the answer position.

    Variants: lower case and capitalised, with and without a leading space (a chat template
    ending in "ASSISTANT:" is followed by " Fake"; one ending in a newline by "Fake"). A
    variant counts only where it is a single token for *both* words, so the two sets
    always have the same size and pair up. Raises LabelTokenError when no variant of a
    word is a single token.
    """
    fake_ids: list[int] = []
    real_ids: list[int] = []
    missing = {"fake", "real"}
    for fake_word, real_word in zip(FAKE_WORDS, REAL_WORDS, strict=True):
        for prefix in ("", " "):
            fake_id = _single_token_id(tokenizer, prefix + fake_word)
            real_id = _single_token_id(tokenizer, prefix + real_word)
            if fake_id is not None:
                missing.discard("fake")
            if real_id is not None:
                missing.discard("real")
            if fake_id is None or real_id is None:
                continue
            if fake_id in fake_ids or real_id in real_ids:
                continue  # a tokenizer that folds case or space maps variants to one id
            fake_ids.append(fake_id)
            real_ids.append(real_id)
    if missing or not fake_ids:
        words = ", ".join(sorted(missing)) or "fake and real (no variant of both)"
        raise LabelTokenError(f"no single-token form in this tokenizer for the label(s): {words}")
    return fake_ids, real_ids


def _single_token_id(tokenizer: Any, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        return None
    # Round-trip check: a token that decodes to something else (an <unk>) does not count.
    if tokenizer.decode(ids) != text:
        return None
    return int(ids[0])
