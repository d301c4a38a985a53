"""PNG figures of a run: precision-recall and ROC curves, AP against each degradation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakescope.evaluation.datasets import Dataset
from fakescope.evaluation.protocols import QUANTITATIVE
from fakescope.evaluation.robustness import CLEAN, FAMILY_AXES, parse_degradation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PR_FILE, ROC_FILE, ROBUSTNESS_FILE = "pr_curves.png", "roc_curves.png", "robustness.png"
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
        and not r["error"]
    ]
    labels = [int(r["label"] == "fake") for r in chosen]
    if not chosen or len(set(labels)) < 2:
        return None
    return labels, [float(r["score"]) for r in chosen]


def _save(fig: Figure, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def write_curves(
    out: Path, rows: Sequence[dict[str, str]], datasets: Sequence[Dataset], note: str
) -> None:
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    pr_fig, (pr_ax,) = _figure()
    roc_fig, (roc_ax,) = _figure()
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    for dataset in datasets:
        data = _curve_data(rows, dataset)
        if data is None:
            continue
        labels, scores = data
        precision, recall, _ = precision_recall_curve(labels, scores)
        ap = average_precision_score(labels, scores)
        line = pr_ax.step(recall, precision, where="post", label=f"{dataset.name} (AP {ap:.3f})")
        # A detector at chance has AP equal to the share of fakes.
        share = sum(labels) / len(labels)
        pr_ax.axhline(share, linestyle=":", linewidth=0.9, color=line[0].get_color())
        fpr, tpr, _ = roc_curve(labels, scores)
        roc_ax.plot(fpr, tpr, label=f"{dataset.name} (AUC {auc(fpr, tpr):.3f})")
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


def write_robustness(out: Path, robustness: dict[str, Any], note: str) -> None:
    families = list(FAMILY_AXES)
    fig, axes = _figure(ncols=len(families), width=4.0)
    for ax, family in zip(axes, families, strict=True):
        for dataset, per_protocol in robustness.items():
            per_condition = per_protocol.get(QUANTITATIVE, {})
            points = [(_CLEAN_LEVEL[family], per_condition.get(CLEAN, {}).get("ap"))]
            for condition, values in per_condition.items():
                if condition != CLEAN and parse_degradation(condition).family == family:
                    points.append((parse_degradation(condition).level, values.get("ap")))
            points = sorted((x, y) for x, y in points if y is not None)
            if points:
                drawn = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
                drawn[0].set_label(dataset)
                clean = per_condition.get(CLEAN, {})
                if clean.get("n"):  # chance AP: the share of fakes
                    share = clean["n_fake"] / clean["n"]
                    ax.axhline(share, linestyle=":", linewidth=0.9, color=drawn[0].get_color())
        ax.set(xlabel=FAMILY_AXES[family], ylabel="AP", ylim=(0, 1.02), title=family)
        ax.invert_xaxis()  # the clean image on the left, stronger degradation to the right
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, out / ROBUSTNESS_FILE, f"AP against degradation, model alone (dotted: chance){note}")


def write_plots(
    out: Path, rows: Sequence[dict[str, str]], datasets: Sequence[Dataset], metrics: dict[str, Any]
) -> None:
    untrained = "\nUNTRAINED model: chance by construction" if metrics["run"]["untrained"] else ""
    scored = "\nscore = p_fake, or 1 where provenance evidence decided"
    if QUANTITATIVE in metrics["run"]["protocols"]:
        write_curves(
            out, rows, datasets, (scored if metrics["run"]["provenance"] else "") + untrained
        )
    if metrics.get("robustness") and QUANTITATIVE in metrics["run"]["protocols"]:
        write_robustness(out, metrics["robustness"], untrained)
