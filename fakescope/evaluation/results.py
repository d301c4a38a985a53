"""From prediction rows to the metrics of a run (the content of `metrics.json`)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fakescope.evaluation.datasets import FAKE, LABEL_NAMES, REAL, Dataset, Sample
from fakescope.evaluation.metrics import (
    Scored,
    bootstrap_intervals,
    group_metrics,
    mean_ap,
    subset_metrics,
)
from fakescope.evaluation.protocols import MCQ, QUANTITATIVE, label_of
from fakescope.evaluation.robustness import CLEAN

_LABELS = {"fake": 1, "real": 0}


def _float(value: str) -> float | None:
    return float(value) if value not in ("", None) else None


def failed(row: dict[str, str]) -> bool:
    """A row that measures nothing: the image was unreadable, or (quantitative protocol) the
    model gave no finite p_fake; rows written before the runner recorded that as an error
    hold "nan" there."""
    if row["error"]:
        return True
    if row["protocol"] != QUANTITATIVE:
        return False
    p_fake = _float(row["p_fake"])
    return p_fake is None or not math.isfinite(p_fake)


def _scored(rows: Sequence[dict[str, str]], *, model_only: bool) -> list[Scored]:
    """Rows to metric inputs: final (with provenance) values, or the model's own."""
    return [
        Scored(
            label=_LABELS[r["label"]],
            score=_float(r["p_fake"] if model_only else r["score"]),
            predicted=label_of(r["model_label"] if model_only else r["predicted"]),
            subset=r["subset"],
        )
        for r in rows
    ]


def _select(
    rows: Sequence[dict[str, str]], dataset: Dataset, condition: str, protocol: str
) -> list[dict[str, str]]:
    keys = {s.key for s in dataset.samples} | {m.key for m in dataset.mcq}
    return [
        r
        for r in rows
        if r["dataset"] == dataset.name
        and r["condition"] == condition
        and r["protocol"] == protocol
        and r["key"] in keys
    ]


def _protocol_metrics(
    rows: list[dict[str, str]], bootstrap: int, seed: int, protocol: str = QUANTITATIVE
) -> dict[str, Any]:
    usable = [r for r in rows if not failed(r)]
    items = _scored(usable, model_only=False)
    subsets = subset_metrics(items, bootstrap=bootstrap, seed=seed)
    overall = group_metrics(items, bootstrap=bootstrap, seed=seed)
    overall["decided_by_provenance"] = sum(r["decided_by"] == "provenance" for r in usable)
    result = {
        "overall": overall,
        "subsets": subsets,
        "mean_ap": mean_ap(subsets),
        "errors": len(rows) - len(usable),
    }
    if protocol == QUANTITATIVE:
        result["calibration"] = calibration_of(usable)
    return result


def calibration_of(rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    """ECE (equal-width bins), Brier score and the reliability table of the model's own p_fake
    (the `p_fake` column: where provenance decided, not its score of 1), finite ones only."""
    from fakescope.calibration import calibration_metrics

    scored = [(p, _LABELS[r["label"]]) for r in rows if (p := _float(r["p_fake"])) is not None]
    return {
        **calibration_metrics([p for p, _ in scored], [y for _, y in scored]),
        "score": "model p_fake",
    }


def _mcq_metrics(rows: list[dict[str, str]], bootstrap: int, seed: int) -> dict[str, Any]:
    usable = [r for r in rows if not r["error"]]
    correct = [int(r["predicted"] == r["label"]) for r in usable]
    ci = bootstrap_intervals([1] * len(correct), None, correct, n=bootstrap, seed=seed)
    return {
        "n": len(usable),
        "accuracy": float(np.mean(correct)) if correct else None,
        "unparsed_rate": (sum(not r["predicted"] for r in usable) / len(usable))
        if usable
        else None,
        "ci95": {"accuracy": ci["accuracy"]} if bootstrap else None,
        "errors": len(rows) - len(usable),
    }


def _robustness(
    rows: Sequence[dict[str, str]],
    dataset: Dataset,
    protocols: Sequence[str],
    conditions: Sequence[str],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Model-only metrics per condition (degradations strip metadata, so provenance is left out).

    Only the quantitative protocol is swept: AP needs scores.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for protocol in [p for p in protocols if p == QUANTITATIVE]:
        per_condition: dict[str, dict[str, Any]] = {}
        for condition in conditions:
            usable = [r for r in _select(rows, dataset, condition, protocol) if not failed(r)]
            items = _scored(usable, model_only=True)
            subsets = subset_metrics(items)
            result = group_metrics(items)
            result["mean_ap"] = mean_ap(subsets)
            per_condition[condition] = result
        out[protocol] = per_condition
    return out


def duplicates(dataset: Dataset, hashes: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    """Identical bytes inside a dataset (by SHA-256): under both labels (a labelling mistake
    that corrupts AP: the same picture is counted as fake and as real), and, per label, files
    whose bytes another file of that label already has (copies, each counted as often as it
    appears; one file asked several questions, as in FakeClass, is not a copy). Nothing is
    left out of the metrics.
    """
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in dataset.samples:
        digest = hashes.get((dataset.name, sample.key))
        if digest:
            groups[digest].append(sample)
    both_labels = []
    copies = {LABEL_NAMES[FAKE]: 0, LABEL_NAMES[REAL]: 0}
    for digest, members in groups.items():
        by_label: dict[str, list[str]] = {}
        for value, name in LABEL_NAMES.items():
            labelled = [s for s in members if s.label == value]
            by_label[name] = sorted(s.key for s in labelled)
            copies[name] += max(len({s.path for s in labelled}) - 1, 0)
        if all(by_label.values()):
            both_labels.append({"sha256": digest, **by_label})
    both_labels.sort(key=lambda group: (group["fake"][0], group["real"][0]))
    return {
        "hashed": sum(len(members) for members in groups.values()),
        "both_labels": both_labels,
        "both_labels_images": sum(len(g["fake"]) + len(g["real"]) for g in both_labels),
        "same_label_copies": copies,
    }


def build_metrics(
    rows: Sequence[dict[str, str]],
    datasets: Sequence[Dataset],
    protocols: Sequence[str],
    conditions: Sequence[str],
    *,
    bootstrap: int = 0,
    seed: int = 0,
    hashes: Mapping[tuple[str, str], str] | None = None,
) -> dict[str, Any]:
    """Per dataset and protocol: overall and per-subset metrics, mAP; MCQ; robustness; with
    `hashes` ((dataset, key) -> SHA-256), the identical images of each dataset."""
    result: dict[str, Any] = {"datasets": {}, "robustness": {}}
    all_subsets: dict[str, dict[str, Any]] = {}
    for dataset in datasets:
        entry: dict[str, Any] = {"layout": dataset.layout, "n_missing": len(dataset.missing)}
        if dataset.samples:
            entry["protocols"] = {
                p: _protocol_metrics(_select(rows, dataset, CLEAN, p), bootstrap, seed, p)
                for p in protocols
            }
            if QUANTITATIVE in protocols:
                subsets = entry["protocols"][QUANTITATIVE]["subsets"]
                all_subsets.update({f"{dataset.name}/{k}": v for k, v in subsets.items()})
            if hashes is not None:
                entry["duplicates"] = duplicates(dataset, hashes)
            if len(conditions) > 1:
                result["robustness"][dataset.name] = _robustness(
                    rows, dataset, protocols, conditions
                )
        if dataset.mcq:
            entry["mcq"] = _mcq_metrics(_select(rows, dataset, CLEAN, MCQ), bootstrap, seed)
        result["datasets"][dataset.name] = entry
    result["mean_ap_all_subsets"] = mean_ap(all_subsets)
    return result
