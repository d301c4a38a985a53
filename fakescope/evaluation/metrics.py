"""Detection metrics: accuracy, detection rates, AP, ROC-AUC, bootstrap intervals.

The maths is scikit-learn's; this module decides what goes in (labels 1 = fake, 0 = real;
a prediction of None is an answer that was neither, and counts as wrong) and how subsets are
formed. A subset with fakes only (a generator in SynthWildX) is measured against all the
dataset's reals, as the SynthWildX protocol does; a subset with both classes stands alone.

What needs both classes is None for a group with one: AP, ROC-AUC and balanced accuracy (with
one class it would only repeat that class's detection rate under another name). AP and ROC-AUC
also need a finite score for every item; a group where any is missing (None or NaN) has none.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

POINT_METRICS = ("accuracy", "balanced_accuracy", "tpr", "tnr", "ap", "auc")
CI_METRICS = ("accuracy", "balanced_accuracy", "ap", "auc")


@dataclass(frozen=True)
class Scored:
    """One prediction to measure: true label, score (p_fake, or None) and predicted label."""

    label: int
    score: float | None
    predicted: int | None  # 1 fake, 0 real, None for "unknown"/"uncertain"
    subset: str = "all"


def _with_sklearn_quiet(fn: Callable[[], float]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" for unknowns
        return float(fn())


def point_metrics(
    labels: Sequence[int], scores: Sequence[float] | None, predicted: Sequence[int | None]
) -> dict[str, float | None]:
    """All point estimates for one group; undefined ones (AP with one class) are None."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(labels, dtype=int)
    # An unknown answer is a third class: wrong whatever the truth.
    pred = np.asarray([-1 if p is None else p for p in predicted], dtype=int)
    both = bool(y.size) and 0 < int(y.sum()) < y.size
    out: dict[str, float | None] = dict.fromkeys(POINT_METRICS)
    if not y.size:
        return out
    out["accuracy"] = _with_sklearn_quiet(lambda: accuracy_score(y, pred))
    if both:
        out["balanced_accuracy"] = _with_sklearn_quiet(lambda: balanced_accuracy_score(y, pred))
    if (y == 1).any():
        out["tpr"] = _with_sklearn_quiet(
            lambda: recall_score(y, pred, pos_label=1, labels=[1], average="macro")
        )
    if (y == 0).any():
        out["tnr"] = _with_sklearn_quiet(
            lambda: recall_score(y, pred, pos_label=0, labels=[0], average="macro")
        )
    s = None if scores is None else np.asarray(scores, dtype=float)
    if s is not None and both and bool(np.isfinite(s).all()):
        out["ap"] = float(average_precision_score(y, s))
        out["auc"] = float(roc_auc_score(y, s))
    return out


def fast_average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """sklearn's average_precision_score (step-wise, ties grouped) without input validation.

    Bootstrap calls it thousands of times; the tests hold it equal to sklearn's.
    """
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), y_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall_steps = np.diff(np.r_[0, tps]) / tps[-1]
    return float(np.sum(recall_steps * precision))


def fast_roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic with tied scores counted half (sklearn's value)."""
    from scipy.stats import rankdata

    ranks = rankdata(s)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_intervals(
    labels: Sequence[int],
    scores: Sequence[float] | None,
    predicted: Sequence[int | None],
    *,
    n: int,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals (resampling images with replacement, seeded)."""
    out: dict[str, list[float] | None] = dict.fromkeys(CI_METRICS)
    y = np.asarray(labels, dtype=int)
    if n <= 0 or y.size < 2:
        return out
    pred = np.asarray([-1 if p is None else p for p in predicted], dtype=int)
    s = None if scores is None else np.asarray(scores, dtype=float)
    if s is not None and not np.isfinite(s).all():
        s = None  # as in point_metrics: no AP or ROC-AUC without every score
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in CI_METRICS}
    for _ in range(n):
        idx = rng.integers(0, y.size, y.size)
        yb, pb = y[idx], pred[idx]
        correct = yb == pb
        draws["accuracy"].append(float(correct.mean()))
        if 0 < int(yb.sum()) < yb.size:
            draws["balanced_accuracy"].append(
                float((correct[yb == 1].mean() + correct[yb == 0].mean()) / 2)
            )
            if s is not None:
                draws["ap"].append(fast_average_precision(yb, s[idx]))
                draws["auc"].append(fast_roc_auc(yb, s[idx]))
    tail = (1.0 - level) / 2 * 100
    for metric, values in draws.items():
        if values:
            low, high = np.percentile(values, [tail, 100 - tail])
            out[metric] = [float(low), float(high)]
    return out


def _finite(score: float | None) -> bool:
    return score is not None and bool(np.isfinite(score))


def group_metrics(items: Sequence[Scored], *, bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    labels = [i.label for i in items]
    has_scores = bool(items) and all(_finite(i.score) for i in items)
    scores = [float(i.score) for i in items if i.score is not None] if has_scores else None
    predicted = [i.predicted for i in items]
    result: dict[str, Any] = {
        "n": len(items),
        "n_fake": sum(labels),
        "n_real": len(labels) - sum(labels),
        "unknown_rate": (sum(p is None for p in predicted) / len(items)) if items else None,
        **point_metrics(labels, scores, predicted),
    }
    if bootstrap:
        result["ci95"] = bootstrap_intervals(labels, scores, predicted, n=bootstrap, seed=seed)
    return result


def subset_metrics(
    items: Sequence[Scored], *, bootstrap: int = 0, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Metrics per subset; a fakes-only subset is measured against every real of the dataset."""
    reals = [i for i in items if i.label == 0]
    out: dict[str, dict[str, Any]] = {}
    for subset in sorted({i.subset for i in items}):
        members = [i for i in items if i.subset == subset]
        fakes_only = all(i.label == 1 for i in members)
        group = members + [r for r in reals if r.subset != subset] if fakes_only else members
        result = group_metrics(group, bootstrap=bootstrap, seed=seed)
        result["reference"] = "all_reals" if fakes_only and reals else "own"
        out[subset] = result
    return out


def mean_ap(subsets: dict[str, dict[str, Any]]) -> float | None:
    """Mean AP over the subsets where AP is defined (the paper's mAP)."""
    values = [m["ap"] for m in subsets.values() if m.get("ap") is not None]
    return float(np.mean(values)) if values else None
