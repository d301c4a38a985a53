"""`report.md`: the run's numbers laid out for people, the paper's table first."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fakescope.evaluation import output_files
from fakescope.evaluation.plots import (
    PR_FILE,
    RELIABILITY_FILE,
    ROBUSTNESS_FILE,
    ROC_FILE,
    calibration_entries,
)
from fakescope.evaluation.protocols import CLOSED, QUANTITATIVE

REPORT_FILE = "report.md"
DUPLICATES_SHOWN = 20  # groups of identical images listed per dataset (all in metrics.json)
WILDRF_PLATFORMS = (("reddit", "Reddit"), ("facebook", "Facebook"), ("twitter", "X (Twitter)"))
SYNTHWILDX_GENERATORS = (
    ("dalle3", "DALL-E 3"),
    ("firefly", "Firefly"),
    ("midjourney", "Midjourney"),
)
UNTRAINED_WARNING = (
    "> **Untrained model.** This checkpoint has random weights (it is marked `untrained`). "
    "Every number below is near chance *by construction*: AP close to the share of fakes, "
    "ROC-AUC close to 0.5, accuracy close to the share of the majority class. The run shows that "
    "the evaluation pipeline works end to end; it says nothing about how well FakeScope detects."
)


def fmt(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "—"
    text = f"{value:.3f}"
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


_BREAKS_A_ROW = re.compile(r"[|\x00-\x1f\x7f]")


def _cell(text: str) -> str:
    """A table cell on one row: a name (a folder, a generator) may hold a line break or a |."""
    return _BREAKS_A_ROW.sub(lambda m: "\\|" if m.group() == "|" else repr(m.group())[1:-1], text)


def _find(metrics: dict[str, Any], test: Any) -> tuple[str, dict[str, Any]] | None:
    return next(((n, d) for n, d in metrics["datasets"].items() if test(n, d)), None)


def _is_wildrf(name: str, entry: dict[str, Any]) -> bool:
    subsets = set(entry.get("protocols", {}).get(QUANTITATIVE, {}).get("subsets", {}))
    return "wildrf" in name.lower() or {"reddit", "facebook", "twitter"} <= subsets


def _paper_table(metrics: dict[str, Any]) -> list[str]:
    """The FakeScope paper's table: FakeClass detection rate, AP per platform/generator, mAP."""
    fakebench = _find(metrics, lambda n, d: d["layout"] == "fakebench")
    wildrf = _find(metrics, _is_wildrf)
    synth = _find(metrics, lambda n, d: d["layout"] == "synthwildx")
    mcq = _find(metrics, lambda n, d: "mcq" in d)
    if not (fakebench or wildrf or synth or mcq):
        return []
    cells: list[str] = []
    aps: list[float] = []
    if fakebench:
        protocols = fakebench[1]["protocols"]
        chosen = protocols.get(CLOSED) or protocols[QUANTITATIVE]
        cells.append(fmt(chosen["overall"]["accuracy"]))
    else:
        cells.append("—")
    for found, columns in ((wildrf, WILDRF_PLATFORMS), (synth, SYNTHWILDX_GENERATORS)):
        subsets = found[1]["protocols"].get(QUANTITATIVE, {}).get("subsets", {}) if found else {}
        for key, _title in columns:
            ap = subsets.get(key, {}).get("ap")
            cells.append(fmt(ap))
            if ap is not None:
                aps.append(ap)
    cells.append(fmt(sum(aps) / len(aps)) if aps else "—")
    cells.append(fmt(mcq[1]["mcq"]["accuracy"]) if mcq else "—")
    header = ["FakeClass detection rate"]
    header += [f"WildRF {t} AP" for _, t in WILDRF_PLATFORMS]
    header += [f"SynthWildX {t} AP" for _, t in SYNTHWILDX_GENERATORS]
    header += ["mAP", "FakeBench MCQ acc."]
    note = (
        "FakeClass detection rate: accuracy of the closed-ended answers when `--protocol closed` "
        "or `both` ran, else of p_fake >= 0.5. AP columns: quantitative protocol (p_fake). "
        "mAP: mean of the AP columns present. — : dataset not evaluated in this run."
    )
    if metrics["run"]["provenance"]:
        note += (
            " Provenance evidence was on: where it decided, the verdict is fake and the score 1, "
            "so these are not the model-alone numbers the paper reports (run with "
            "`--no-provenance` for those)."
        )
    return ["## The paper's table", "", *_table(header, [cells]), "", note, ""]


def _duplicate_warning(metrics: dict[str, Any]) -> list[str]:
    """A warning at the top when some dataset holds the same bytes under both labels."""
    found = [
        (name, entry["duplicates"])
        for name, entry in metrics["datasets"].items()
        if (entry.get("duplicates") or {}).get("both_labels")
    ]
    if not found:
        return []
    where = "; ".join(
        f"{name}: {d['both_labels_images']} images, {len(d['both_labels'])} identical "
        f"picture(s) labelled both fake and real"
        for name, d in found
    )
    return [
        f"> **The same image under both labels.** {where}. Each copy is measured under its own "
        "label (none is left out), so AP, ROC-AUC and accuracy count a certain error for each: "
        "fix the labels and rerun. The images are listed per dataset below and in "
        "`metrics.json` (`duplicates`).",
        "",
    ]


def _duplicates_lines(duplicates: dict[str, Any]) -> list[str]:
    lines = []
    groups = duplicates["both_labels"]
    if groups:
        lines += [
            f"**Same bytes (SHA-256) labelled both fake and real:** {len(groups)} picture(s), "
            f"{duplicates['both_labels_images']} images, each measured under its own label:",
            "",
        ]
        for group in groups[:DUPLICATES_SHOWN]:
            fakes = ", ".join(f"`{k}`" for k in group["fake"])
            reals = ", ".join(f"`{k}`" for k in group["real"])
            lines.append(f"- `{group['sha256'][:12]}`: fake {fakes}; real {reals}")
        if len(groups) > DUPLICATES_SHOWN:
            lines.append(f"- ... and {len(groups) - DUPLICATES_SHOWN} more (`metrics.json`)")
        lines.append("")
    copies = duplicates["same_label_copies"]
    if any(copies.values()):
        lines += [
            f"Repeated images under one label: {copies['fake']} fake and {copies['real']} real "
            "image(s) have the same bytes as another image of the same label (each copy is "
            "counted).",
            "",
        ]
    return lines


def _dataset_section(name: str, entry: dict[str, Any]) -> list[str]:
    lines = [f"### {name} ({entry['layout']})", ""]
    if entry.get("n_missing"):
        lines += [f"{entry['n_missing']} listed image(s) were missing and left out.", ""]
    if entry.get("duplicates"):
        lines += _duplicates_lines(entry["duplicates"])
    header = [
        "subset",
        "fakes",
        "reals",
        "acc",
        "balanced acc",
        "fakes detected (TPR)",
        "reals detected (TNR)",
        "AP [95% CI]",
        "ROC-AUC [95% CI]",
        "reals used",
    ]
    for protocol, result in entry.get("protocols", {}).items():
        rows = []
        for subset, m in [*result["subsets"].items(), ("**overall**", result["overall"])]:
            ci = m.get("ci95") or {}
            rows.append(
                [
                    subset,
                    str(m["n_fake"]),
                    str(m["n_real"]),
                    fmt(m["accuracy"]),
                    fmt(m["balanced_accuracy"]),
                    fmt(m["tpr"]),
                    fmt(m["tnr"]),
                    fmt(m["ap"], ci.get("ap")),
                    fmt(m["auc"], ci.get("auc")),
                    "all of the dataset's" if m.get("reference") == "all_reals" else "own",
                ]
            )
        overall = result["overall"]
        lines += [
            f"**{protocol}** protocol — mAP over subsets: {fmt(result['mean_ap'])}; "
            f"images left out (unreadable, or no finite p_fake): {result['errors']}; "
            f"decided by provenance: {overall.get('decided_by_provenance', 0)}; "
            f"share of answers neither fake nor real (counted wrong): "
            f"{fmt(overall.get('unknown_rate'))}",
            "",
        ]
        lines += [*_table(header, rows), ""]
    if "mcq" in entry:
        m = entry["mcq"]
        ci = (m.get("ci95") or {}).get("accuracy")
        lines += [
            f"Multiple choice: accuracy {fmt(m['accuracy'], ci)} over {m['n']} questions "
            f"(answers without an option letter: {fmt(m['unparsed_rate'])}).",
            "",
        ]
    return lines


def _calibration_section(metrics: dict[str, Any], figures: list[str]) -> list[str]:
    """ECE and Brier score per dataset, what they were measured on, and the reliability figure."""
    from fakescope.calibration import platt_formula

    run = metrics["run"]
    calibration = (run.get("model") or {}).get("calibration")
    if calibration:
        applied = (
            f"calibrated by Platt scaling, {platt_formula(calibration['a'], calibration['b'])} "
            f"(`--calibration`, digest {calibration['digest']}). If "
            "the calibration was fitted on these same images, these numbers flatter it"
        )
    else:
        applied = "raw, as token-based probability estimation gives it (no `--calibration`)"
    provenance = (
        ", also for the images where provenance decided (their reported score is 1, which "
        "says nothing of the model)"
        if run["provenance"]
        else ""
    )
    lines = [
        "## Calibration",
        "",
        "Does p_fake mean what it says (of the images scored 0.8, are 80% fakes)? Expected "
        "calibration error (ECE): p_fake cut into 15 equal-width bins over [0, 1], the gap "
        "between each bin's share of fakes and its mean p_fake, weighted by the bin's share of "
        "the images. Brier score: the mean of (p_fake - label)², label 1 for fake. Lower is "
        "better for both; 0 is perfect. Measured on the model's own p_fake (the `p_fake` column "
        f"of `predictions.csv`, clean images, quantitative protocol){provenance}. "
        f"p_fake here is {applied}. `fakescope eval calibrate` fits a calibration on a run.",
        "",
    ]
    entries = calibration_entries(metrics)
    if not entries:
        return [*lines, "No image has a finite p_fake: nothing to measure.", ""]
    rows = [[name, str(m["n"]), fmt(m["ece"]), fmt(m["brier"])] for name, m in entries]
    lines += [*_table(["dataset", "images", "ECE (15 bins)", "Brier score"], rows), ""]
    if RELIABILITY_FILE in figures:
        lines += [f"![reliability diagram]({RELIABILITY_FILE})", ""]
    return lines


def _robustness_section(robustness: dict[str, Any], figures: list[str]) -> list[str]:
    if not robustness:
        return []
    lines = ["## Robustness (model alone: re-encoding strips metadata)", ""]
    for dataset, per_protocol in robustness.items():
        for protocol, per_condition in per_protocol.items():
            header = ["condition", "AP", "ROC-AUC", "acc", "mAP over subsets"]
            rows = [
                [c, fmt(m["ap"]), fmt(m["auc"]), fmt(m["accuracy"]), fmt(m["mean_ap"])]
                for c, m in per_condition.items()
            ]
            lines += [f"### {dataset}, {protocol} protocol", "", *_table(header, rows), ""]
    if ROBUSTNESS_FILE not in figures:
        return [*lines, "No figure: AP needs both fakes and reals under some condition.", ""]
    return [*lines, f"![AP against degradation]({ROBUSTNESS_FILE})", ""]


def _calibration_note(model: dict[str, Any]) -> str:
    """What the run's model line says of a calibration applied: every p_fake below (accuracies
    at 0.5 included) is the calibrated one."""
    calibration = model.get("calibration")
    if not calibration:
        return ""
    return (
        f"; p_fake calibrated (Platt scaling, digest {calibration['digest']}): every p_fake and "
        "accuracy below reads the calibrated value"
    )


def render_report(metrics: dict[str, Any]) -> str:
    run = metrics["run"]
    model = run["model"]
    lines = ["# FakeScope evaluation", ""]
    if run["untrained"]:
        lines += [UNTRAINED_WARNING, ""]
    lines += _duplicate_warning(metrics)
    lines += [
        f"- model: `{model.get('id')}` (quantization {model.get('quantization', '?')}, "
        f"revision {model.get('revision') or '-'}){_calibration_note(model)}",
        f"- protocols: {', '.join(run['protocols'])}; provenance evidence "
        f"{'on' if run['provenance'] else 'off (model alone)'}; "
        f"prompt version {run['prompt_version']}",
        "- datasets: " + ", ".join(f"{n} ({d['layout']})" for n, d in run["datasets"].items()),
        f"- bootstrap resamples: {run['bootstrap']} (seed {run['seed']}); "
        f"limit: {run['limit'] or 'none'}",
        f"- mAP over every subset of every dataset: {fmt(metrics.get('mean_ap_all_subsets'))}",
        "",
    ]
    lines += _paper_table(metrics)
    lines += ["## Per dataset", ""]
    lines += [
        "Labels: fake is the positive class. A fake-only subset (a generator) is measured against "
        "all of its dataset's reals, as in SynthWildX. Accuracy uses p_fake >= 0.5 (quantitative) "
        "or the answer's verdict (closed); an answer that is neither counts as wrong. There is no "
        "uncertain band here: `fakescope analyze` answers uncertain for a p_fake between its "
        "thresholds, while these accuracies read every p_fake as fake or real at 0.5. "
        "AP, ROC-AUC and balanced accuracy need both fakes and reals: — where a subset has one.",
        "",
    ]
    if run["provenance"]:
        lines += [
            "Provenance evidence was on: where it decided, the prediction is fake and the score "
            "is 1 (the model's own p_fake and label are in `predictions.csv`).",
            "",
        ]
    for name, entry in metrics["datasets"].items():
        lines += _dataset_section(name, entry)
    figures = list(metrics.get("figures") or [])
    if QUANTITATIVE in run["protocols"]:
        lines += ["## Curves", ""]
        if PR_FILE in figures and ROC_FILE in figures:
            lines += [f"![precision-recall]({PR_FILE}) ![ROC]({ROC_FILE})", ""]
        else:
            lines += ["No curves: no dataset has both fakes and reals with a p_fake.", ""]
        lines += _calibration_section(metrics, figures)
    lines += _robustness_section(metrics.get("robustness", {}), figures)
    lines += ["Per-image predictions: `predictions.csv`; all numbers: `metrics.json`.", ""]
    return "\n".join(lines)


def write_report(out: Path, metrics: dict[str, Any]) -> Path:
    return output_files.write_text(out / REPORT_FILE, output_files.readable(render_report(metrics)))
