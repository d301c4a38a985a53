"""Metric computations against hand-made cases and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from fakescope.evaluation.metrics import (
    Scored,
    bootstrap_intervals,
    fast_average_precision,
    fast_roc_auc,
    group_metrics,
    mean_ap,
    point_metrics,
    subset_metrics,
)


def test_hand_made_case_gives_the_textbook_numbers() -> None:
    # 4 fakes, 2 reals. Ranked by score: F F R F R F -> precision at each fake: 1, 1, 3/4, 4/6.
    labels = [1, 1, 0, 1, 0, 1]
    scores = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3]
    predicted = [1, 1, 1, 1, 0, 0]  # threshold 0.5
    m = point_metrics(labels, scores, predicted)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["tpr"] == pytest.approx(3 / 4)  # fakes detected
    assert m["tnr"] == pytest.approx(1 / 2)  # reals detected
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert m["ap"] == pytest.approx((1 + 1 + 3 / 4 + 4 / 6) / 4)
    # pairs (fake, real) ranked right: fake .9,.8 beat both; .6 beats .4; .3 beats none -> 5 of 8
    assert m["auc"] == pytest.approx(5 / 8)


def test_perfect_and_inverted_rankings() -> None:
    labels = [0, 0, 1, 1]
    assert point_metrics(labels, [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])["auc"] == 1.0
    assert point_metrics(labels, [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])["ap"] == 1.0
    assert point_metrics(labels, [0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])["auc"] == 0.0


def test_an_unknown_answer_counts_as_wrong_for_either_class() -> None:
    m = point_metrics([1, 1, 0, 0], None, [1, None, 0, None])
    assert m["accuracy"] == 0.5
    assert m["tpr"] == 0.5
    assert m["tnr"] == 0.5
    assert m["ap"] is None and m["auc"] is None  # no scores in the closed protocol


def test_one_class_leaves_ap_and_auc_undefined() -> None:
    m = point_metrics([0, 0, 0], [0.1, 0.5, 0.9], [0, 1, 1])
    assert m["ap"] is None and m["auc"] is None and m["tpr"] is None
    assert m["tnr"] == pytest.approx(1 / 3)


def test_point_metrics_match_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 2)  # rounded: many ties
    predicted = (scores >= 0.5).astype(int)
    m = point_metrics(labels.tolist(), scores.tolist(), predicted.tolist())
    assert m["ap"] == pytest.approx(average_precision_score(labels, scores))
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))


def test_fast_bootstrap_metrics_equal_sklearn_including_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(2, 50))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        s = np.round(rng.random(n), int(rng.integers(0, 3)))
        assert fast_average_precision(y, s) == pytest.approx(average_precision_score(y, s))
        assert fast_roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_bootstrap_intervals_are_seeded_and_contain_the_estimate() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 120).tolist()
    scores = (np.asarray(labels) * 0.3 + rng.random(120) * 0.7).tolist()
    predicted = [int(s >= 0.5) for s in scores]
    first = bootstrap_intervals(labels, scores, predicted, n=200, seed=5)
    assert first == bootstrap_intervals(labels, scores, predicted, n=200, seed=5)
    assert first != bootstrap_intervals(labels, scores, predicted, n=200, seed=6)
    point = point_metrics(labels, scores, predicted)
    for metric in ("accuracy", "balanced_accuracy", "ap", "auc"):
        low, high = first[metric]
        assert low <= point[metric] <= high


def test_a_fake_only_subset_is_measured_against_every_real() -> None:
    items = [
        Scored(1, 0.9, 1, "dalle3"),
        Scored(1, 0.2, 0, "firefly"),
        Scored(0, 0.1, 0, "real"),
        Scored(0, 0.5, 1, "real"),
    ]
    subsets = subset_metrics(items)
    assert subsets["dalle3"]["reference"] == "all_reals"
    assert subsets["dalle3"]["n_real"] == 2 and subsets["dalle3"]["ap"] == 1.0
    assert subsets["firefly"]["auc"] == 0.5  # beats the real at 0.1, not the one at 0.5
    assert subsets["real"]["ap"] is None and subsets["real"]["tnr"] == 0.5
    assert mean_ap(subsets) == pytest.approx((1.0 + subsets["firefly"]["ap"]) / 2)


def test_a_subset_with_both_classes_stands_alone() -> None:
    items = [
        Scored(1, 0.9, 1, "reddit"),
        Scored(0, 0.1, 0, "reddit"),
        Scored(1, 0.1, 0, "twitter"),
        Scored(0, 0.9, 1, "twitter"),
    ]
    subsets = subset_metrics(items)
    assert subsets["reddit"]["ap"] == 1.0 and subsets["reddit"]["reference"] == "own"
    assert subsets["twitter"]["auc"] == 0.0
    overall = group_metrics(items, bootstrap=20)
    assert overall["n"] == 4 and overall["auc"] == 0.5 and "ci95" in overall


def test_tied_scores_count_half_in_auc_and_group_in_ap() -> None:
    # Fakes at .8 and .3, reals at .8 and .1. Pairs (fake, real): (.8,.8) tie = 1/2,
    # (.8,.1) = 1, (.3,.8) = 0, (.3,.1) = 1 -> AUC 2.5/4. AP steps: threshold .8 gives
    # precision 1/2 at recall 1/2; .3 gives 2/3 at recall 1 -> 1/2*1/2 + 1/2*2/3.
    labels, scores = [1, 0, 1, 0], [0.8, 0.8, 0.3, 0.1]
    m = point_metrics(labels, scores, [1, 1, 0, 0])
    assert m["auc"] == pytest.approx(2.5 / 4)
    assert m["ap"] == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    y, s = np.asarray(labels), np.asarray(scores)
    assert fast_roc_auc(y, s) == pytest.approx(2.5 / 4)
    assert fast_average_precision(y, s) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_all_scores_equal_gives_chance_exactly() -> None:
    labels = [1, 1, 1, 0, 0]
    m = point_metrics(labels, [0.5] * 5, [1] * 5)
    assert m["ap"] == pytest.approx(3 / 5)  # the share of fakes
    assert m["auc"] == pytest.approx(0.5)


def test_balanced_accuracy_needs_both_classes() -> None:
    # With reals only it would just repeat the reals' detection rate under another name.
    m = point_metrics([0, 0, 0, 0], [0.1, 0.2, 0.7, 0.9], [0, 0, 1, 1])
    assert m["accuracy"] == 0.5 and m["tnr"] == 0.5
    assert m["balanced_accuracy"] is None and m["tpr"] is None
    ci = bootstrap_intervals([0, 0, 0, 0], [0.1, 0.2, 0.7, 0.9], [0, 0, 1, 1], n=50)
    assert ci["balanced_accuracy"] is None and ci["ap"] is None and ci["accuracy"] is not None


def test_every_answer_unknown_scores_zero_and_says_so() -> None:
    items = [Scored(1, None, None), Scored(1, None, None), Scored(0, None, None)]
    m = group_metrics(items, bootstrap=30)
    assert m["unknown_rate"] == 1.0
    assert m["accuracy"] == 0.0 and m["balanced_accuracy"] == 0.0
    assert m["tpr"] == 0.0 and m["tnr"] == 0.0
    assert m["ap"] is None and m["auc"] is None
    assert m["ci95"]["accuracy"] == [0.0, 0.0]


def test_a_missing_or_nan_score_leaves_ap_and_auc_undefined_instead_of_crashing() -> None:
    nan = float("nan")
    for missing in (None, nan):
        items = [Scored(1, 0.9, 1), Scored(0, missing, 0), Scored(1, 0.4, 0), Scored(0, 0.2, 0)]
        m = group_metrics(items, bootstrap=20)
        assert m["ap"] is None and m["auc"] is None
        assert m["accuracy"] == pytest.approx(3 / 4)  # labels still count
        assert m["ci95"]["ap"] is None and m["ci95"]["auc"] is None
    assert point_metrics([1, 0], [nan, 0.1], [1, 0])["ap"] is None


def test_a_single_image_has_point_values_but_no_interval() -> None:
    m = group_metrics([Scored(1, 0.7, 1)], bootstrap=100)
    assert m["n"] == 1 and m["accuracy"] == 1.0 and m["tpr"] == 1.0
    assert m["balanced_accuracy"] is None and m["ap"] is None
    assert m["ci95"] == dict.fromkeys(("accuracy", "balanced_accuracy", "ap", "auc"))


def test_two_images_bootstrap_spans_every_outcome() -> None:
    # One right, one wrong: resamples give accuracy 0, 1/2 or 1 (each with both classes only
    # half the time), so the 95% interval runs from 0 to 1.
    ci = bootstrap_intervals([1, 0], [0.9, 0.8], [1, 1], n=400, seed=1)
    assert ci["accuracy"] == [0.0, 1.0]
    assert ci["balanced_accuracy"] == [0.5, 0.5]  # both classes drawn: TPR 1, TNR 0
    assert ci["auc"] == [1.0, 1.0]


def test_subset_metrics_match_an_independent_per_subset_computation() -> None:
    rng = np.random.default_rng(11)
    subsets = ["dalle3", "firefly", "mixed", "real"]
    items = []
    for name in subsets:
        for _ in range(25):
            label = 0 if name == "real" else 1 if name != "mixed" else int(rng.integers(0, 2))
            score = float(np.round(rng.random(), 2))
            items.append(Scored(label, score, int(score >= 0.5), name))
    result = subset_metrics(items)
    reals = [i for i in items if i.label == 0]
    for name in ("dalle3", "firefly"):
        group = [i for i in items if i.subset == name] + [r for r in reals if r.subset != name]
        y = [i.label for i in group]
        s = [i.score for i in group]
        assert result[name]["ap"] == pytest.approx(average_precision_score(y, s))
        assert result[name]["auc"] == pytest.approx(roc_auc_score(y, s))
        assert result[name]["n_real"] == len(reals)
    mixed = [i for i in items if i.subset == "mixed"]
    y = [i.label for i in mixed]
    assert result["mixed"]["reference"] == "own" and result["mixed"]["n"] == 25
    assert result["mixed"]["auc"] == pytest.approx(roc_auc_score(y, [i.score for i in mixed]))
    assert result["real"]["ap"] is None and result["real"]["balanced_accuracy"] is None
