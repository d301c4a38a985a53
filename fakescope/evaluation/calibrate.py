"""`fakescope eval calibrate RUN_DIR`: Platt scaling fitted on a finished run's predictions.

The fit reads the quantitative protocol's clean images (no degraded copies) from
`predictions.csv`: the model's own p_fake (never the score of 1 provenance gives), finite ones,
of the run's datasets (or those chosen). Its margins are the logits of those p_fake, exact to
float64 (`calibration.margin_from_p`). It is fitted for the run's model key; a run whose p_fake
were already calibrated is refused (fit on a run made without `--calibration`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fakescope.calibration import Calibration, fit_calibration
from fakescope.errors import CalibrationError
from fakescope.evaluation.protocols import QUANTITATIVE
from fakescope.evaluation.robustness import CLEAN

PREDICTIONS_FILE = "predictions.csv"
HONESTY_NOTE = (
    "These numbers are measured on the images the calibration was fitted on, which flatters "
    "it: fit on one dataset and measure on another (`fakescope eval OTHER --calibration "
    "FILE`) to see what it does for images it has not seen."
)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / PREDICTIONS_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    text = raw.decode("utf-8", "surrogateescape")  # names as the run wrote them
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    needed = {"dataset", "label", "condition", "protocol", "p_fake", "error"}
    if not needed <= set(reader.fieldnames or ()):
        raise CalibrationError(f"{path}: not the predictions.csv of a `fakescope eval` run")
    return list(reader)


def _finite(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def calibrate_run(run_dir: Path, datasets: Sequence[str] = ()) -> Calibration:
    """Fit a calibration on a finished run; CalibrationError (or DatasetError for a folder that
    holds no finished run) in one line when it cannot."""
    from fakescope.evaluation.compare import load_run

    metrics = load_run(run_dir)  # refuses an unfinished run, or no run at all
    run: dict[str, Any] = metrics.get("run") or {}
    model_key = run.get("model_key")
    if not isinstance(model_key, str) or not model_key:
        raise CalibrationError(f"{run_dir}: its metrics.json names no model_key")
    if (run.get("model") or {}).get("calibration") or "+cal-" in model_key:
        raise CalibrationError(
            f"{run_dir}: this run's p_fake are already calibrated ({model_key}); fit on a run "
            "made without --calibration"
        )
    known = list((run.get("datasets") or {}).keys())
    chosen = list(datasets) or known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise CalibrationError(
            f"{run_dir}: no dataset named {', '.join(map(repr, unknown))} in this run "
            f"(it has {', '.join(map(repr, known)) or 'none'})"
        )
    if QUANTITATIVE not in (run.get("protocols") or []):
        raise CalibrationError(
            f"{run_dir}: the run has no p_fake (--protocol closed); calibrate a run of the "
            "quantitative protocol"
        )
    p_fake: list[float] = []
    labels: list[int] = []
    for row in _rows(run_dir):
        if (
            row["dataset"] not in chosen
            or row["protocol"] != QUANTITATIVE
            or row["condition"] != CLEAN
            or row["error"]
            or row["label"] not in ("fake", "real")
        ):
            continue
        value = _finite(row["p_fake"])
        if value is not None:
            p_fake.append(value)
            labels.append(int(row["label"] == "fake"))
    n_fake = sum(labels)
    if not n_fake or n_fake == len(labels):
        raise CalibrationError(
            f"{run_dir}: calibration needs both fakes and reals with a finite p_fake; the "
            f"run's {', '.join(map(repr, chosen))} hold {n_fake} fake(s) and "
            f"{len(labels) - n_fake} real(s)"
        )
    fitted_on: dict[str, Any] = {"run": str(run_dir.resolve()), "datasets": chosen}
    if run.get("untrained"):
        fitted_on["untrained"] = True
    return fit_calibration(p_fake, labels, model_key=model_key, fitted_on=fitted_on)


def summary(calibration: Calibration, out: Path) -> str:
    """What `fakescope eval calibrate` prints: the fit, before and after, and the caveat."""
    fitted = calibration.fitted_on
    scores = calibration.fit_metrics

    def number(value: Any) -> str:
        return "—" if value is None else f"{value:.4f}"

    lines = [
        f"wrote {out}",
        f"model: {calibration.model_key}",
        f"fitted on: {', '.join(fitted.get('datasets', []))} of {fitted.get('run')} "
        f"({fitted.get('n_fake')} fakes, {fitted.get('n_real')} reals)",
        f"p_fake = {calibration.formula()}  "
        f"(digest {calibration.digest}: the model key gets +cal-{calibration.digest})",
        f"ECE ({scores.get('bins')} equal-width bins): {number(scores.get('ece_before'))} -> "
        f"{number(scores.get('ece_after'))}",
        f"Brier score: {number(scores.get('brier_before'))} -> {number(scores.get('brier_after'))}",
        f"warning: {HONESTY_NOTE}",
    ]
    if calibration.a <= 0:
        lines.append(
            "warning: a <= 0: on these images a higher raw p_fake goes with fewer fakes; "
            "applying this calibration would reverse the model's ranking"
        )
    if fitted.get("untrained"):
        lines.append("warning: the run's checkpoint is untrained: this calibration means nothing")
    return "\n".join(lines)
