"""PNG figures of a run: precision-recall and ROC curves, reliability (calibration), AP
against each degradation.

A figure is drawn only when it has something to show: curves need a dataset with both fakes
and reals, the reliability diagram a dataset with a p_fake, the robustness figure an AP under
some condition. A figure a run cannot draw is
removed from the output folder, so that an earlier run's is never taken for this one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakescope.evaluation.datasets import Dataset
from fakescope.evaluation.output_files import readable, replacing
from fakescope.evaluation.protocols import QUANTITATIVE
from fakescope.evaluation.results import failed
from fakescope.evaluation.robustness import CLEAN, FAMILY_AXES, parse_degradation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PR_FILE, ROC_FILE, ROBUSTNESS_FILE = "pr_curves.png", "roc_curves.png", "robustness.png"
RELIABILITY_FILE = "reliability.png"
# x position of the undegraded image on each family's axis
_CLEAN_LEVEL = {"jpeg": 100.0, "downscale": 1.0, "crop": 1.0, "screenshot": 1.0}


def _figure(ncols: int = 1, width: float = 6.0) -> tuple[Figure, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4.8), squeeze=False)
    return fig, axes[0]


def _curve_data(
    rows: Sequence[dict[str, str]], dataset: Dataset
) -> tuple[list[int], list[float]] | None:
    keys = {s.key for s in dataset.samples}
    chosen = [
        r
        for r in rows
        if r["dataset"] == dataset.name
        and r["key"] in keys
        and r["condition"] == CLEAN
        and r["protocol"] == QUANTITATIVE
        and not failed(r)
    ]
    labels = [int(r["label"] == "fake") for r in chosen]
    if not chosen or len(set(labels)) < 2:
        return None
    return labels, [float(r["score"]) for r in chosen]


def _save(fig: Figure, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with replacing(path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)


def write_curves(
    out: Path, rows: Sequence[dict[str, str]], datasets: Sequence[Dataset], note: str
) -> bool:
    """Precision-recall and ROC curves of every dataset with both classes; False if none has."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    curves = [(d, data) for d in datasets if (data := _curve_data(rows, d)) is not None]
    if not curves:
        return False
    pr_fig, (pr_ax,) = _figure()
    roc_fig, (roc_ax,) = _figure()
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    for dataset, (labels, scores) in curves:
        precision, recall, _ = precision_recall_curve(labels, scores)
        ap = average_precision_score(labels, scores)
        line = pr_ax.step(
            recall, precision, where="post", label=f"{readable(dataset.name)} (AP {ap:.3f})"
        )
        # A detector at chance has AP equal to the share of fakes.
        share = sum(labels) / len(labels)
        pr_ax.axhline(share, linestyle=":", linewidth=0.9, color=line[0].get_color())
        fpr, tpr, _ = roc_curve(labels, scores)
        roc_ax.plot(fpr, tpr, label=f"{readable(dataset.name)} (AUC {auc(fpr, tpr):.3f})")
    pr_ax.set(xlabel="recall (fakes found)", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    roc_ax.set(
        xlabel="false positive rate (reals flagged)",
        ylabel="true positive rate",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    for ax in (pr_ax, roc_ax):
        ax.legend(loc="lower left" if ax is pr_ax else "lower right", fontsize=8)
        ax.grid(alpha=0.3)
    _save(pr_fig, out / PR_FILE, f"Precision-recall (dotted: chance){note}")
    _save(roc_fig, out / ROC_FILE, f"ROC{note}")
    return True


def calibration_entries(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(dataset, calibration measures) of each dataset whose quantitative protocol measured
    some p_fake."""
    found = []
    for name, entry in metrics["datasets"].items():
        measured = entry.get("protocols", {}).get(QUANTITATIVE, {}).get("calibration")
        if measured and measured.get("n"):
            found.append((name, measured))
    return found


def write_reliability(out: Path, metrics: dict[str, Any], note: str) -> bool:
    """The reliability diagram: per dataset, the share of fakes against the mean p_fake of each
    equal-width bin (on the diagonal: calibrated), and how many images each bin holds; False
    when no dataset has a p_fake."""
    from matplotlib.ticker import MaxNLocator

    entries = calibration_entries(metrics)
    if not entries:
        return False
    fig, (ax, counts_ax) = _figure(ncols=2, width=5.0)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="calibrated")
    for name, measured in entries:
        filled = [b for b in measured["reliability"] if b["n"]]
        label = f"{readable(name)} (ECE {measured['ece']:.3f}, Brier {measured['brier']:.3f})"
        drawn = ax.plot(
            [b["mean_p_fake"] for b in filled],
            [b["share_fake"] for b in filled],
            marker="o",
            label=label,
        )
        edges = [b["low"] for b in measured["reliability"]] + [1.0]
        counts_ax.stairs(
            [b["n"] for b in measured["reliability"]], edges, color=drawn[0].get_color()
        )
    ax.set(
        xlabel="mean p_fake in the bin",
        ylabel="share of fakes in the bin",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper left", fontsize=8)
    counts_ax.set(xlabel="p_fake (bin)", ylabel="images in the bin", xlim=(0, 1))
    counts_ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 2.5 images
    for axis in (ax, counts_ax):
        axis.grid(alpha=0.3)
    bins = entries[0][1]["bins"]
    _save(
        fig,
        out / RELIABILITY_FILE,
        f"Reliability of the model's own p_fake ({bins} equal-width bins){note}",
    )
    return True


def _robustness_points(
    per_condition: dict[str, Any], family: str
) -> list[tuple[float, float, str]]:
    """(level, AP, tick label) of the clean images and of each level of one family."""
    points = [(_CLEAN_LEVEL[family], per_condition.get(CLEAN, {}).get("ap"), CLEAN)]
    for condition, values in per_condition.items():
        if condition != CLEAN and (degradation := parse_degradation(condition)).family == family:
            level = degradation.level
            points.append((level, values.get("ap"), f"{level:g}"))
    return sorted((x, y, tick) for x, y, tick in points if y is not None)


def write_robustness(out: Path, robustness: dict[str, Any], note: str) -> bool:
    """AP against each degradation family; False when no condition has an AP to draw."""
    families = list(FAMILY_AXES)
    drawable = [
        (dataset, per_protocol.get(QUANTITATIVE, {}))
        for dataset, per_protocol in robustness.items()
    ]
    if not any(_robustness_points(pc, f) for _, pc in drawable for f in families):
        return False
    fig, axes = _figure(ncols=len(families), width=4.0)
    for ax, family in zip(axes, families, strict=True):
        ticks: dict[float, str] = {}
        for dataset, per_condition in drawable:
            points = _robustness_points(per_condition, family)
            if not points:
                continue
            ticks.update({x: tick for x, _, tick in points})
            drawn = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
            drawn[0].set_label(readable(dataset))
            clean = per_condition.get(CLEAN, {})
            if clean.get("n"):  # chance AP: the share of fakes
                share = clean["n_fake"] / clean["n"]
                ax.axhline(share, linestyle=":", linewidth=0.9, color=drawn[0].get_color())
        # The undegraded images sit at their own tick ("clean"), not at a made-up level
        # such as JPEG quality 100.
        ax.set_xticks(list(ticks), list(ticks.values()))
        ax.set(xlabel=FAMILY_AXES[family], ylabel="AP", ylim=(0, 1.02), title=family)
        ax.invert_xaxis()  # the clean image on the left, stronger degradation to the right
        ax.grid(alpha=0.3)
        if ticks:
            ax.legend(fontsize=8)
    _save(fig, out / ROBUSTNESS_FILE, f"AP against degradation, model alone (dotted: chance){note}")
    return True


def write_plots(
    out: Path, rows: Sequence[dict[str, str]], datasets: Sequence[Dataset], metrics: dict[str, Any]
) -> list[str]:
    """Draw what the run can show; returns the file names written (others are removed)."""
    untrained = "\nUNTRAINED model: chance by construction" if metrics["run"]["untrained"] else ""
    scored = "\nscore = p_fake, or 1 where provenance evidence decided"
    calibrated = (metrics["run"].get("model") or {}).get("calibration")
    raw_or_not = (
        f"\np_fake calibrated (Platt, {calibrated['digest']})"
        if calibrated
        else "\nraw p_fake (no calibration applied)"
    )
    written: list[str] = []
    if QUANTITATIVE in metrics["run"]["protocols"]:
        note = (scored if metrics["run"]["provenance"] else "") + untrained
        if write_curves(out, rows, datasets, note):
            written += [PR_FILE, ROC_FILE]
        if write_reliability(out, metrics, raw_or_not + untrained):
            written.append(RELIABILITY_FILE)
        if metrics.get("robustness") and write_robustness(out, metrics["robustness"], untrained):
            written.append(ROBUSTNESS_FILE)
    for name in {PR_FILE, ROC_FILE, RELIABILITY_FILE, ROBUSTNESS_FILE} - set(written):
        (out / name).unlink(missing_ok=True)
    return written
