"""Calibration of the token-based probability estimate (Platt scaling), and how to measure it.

Token-based probability estimation gives ``p_fake = sigmoid(m)`` with the margin
``m = Σ fake-token logits - Σ real-token logits`` (scoring.py). The model was trained on hard
labels, so nothing makes that number a frequency: among images scored 0.9, far more or far
fewer than 90% may be fakes. Platt scaling maps the margin to

    p_cal = sigmoid(a·m + b)

with ``a`` and ``b`` fitted by maximum likelihood on labelled images (an evaluation run's
predictions). The fit is two-parameter logistic regression on the 1-D margin, solved here by
Newton's method with a backtracking line search, as Lin, Lin & Weng ("A note on Platt's
probabilistic outputs for support vector machines", 2007) do it: deterministic, exact to
machine precision, no regularisation strength to choose. Platt's targets replace the 0/1
labels by ``1/(n_real + 2)`` and ``(n_fake + 1)/(n_fake + 2)``: on a set the margin separates
perfectly, plain maximum likelihood has no finite answer (``a`` grows without end), and these
targets keep it finite; with hundreds of images they move the fit by well under 1%.

Measures: expected calibration error over ``ECE_BINS`` (15) equal-width bins of p_fake, and the
Brier score. Everything is float64; a NaN p_fake stays NaN; a margin of any size is safe.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fakescope.errors import CalibrationError

FORMAT = "fakescope-calibration"
VERSION = 1
ECE_BINS = 15  # equal-width bins of p_fake over [0, 1] for the expected calibration error
MAX_FILE_BYTES = 1 << 20  # a calibration file is a few hundred bytes
# The margins a float64 p_fake of exactly 1.0 or 0.0 stands for at least: logit of the largest
# float64 below 1 (53·ln 2), and the log of the smallest positive float64.
P_ONE_MARGIN = 36.7368005696771
P_ZERO_MARGIN = -744.4400719213812
_NEWTON_STEPS = 100
_KEY_SUFFIX = "+cal-"
# What to do about a file that is not a calibration, said at the end of each such error.
_WRITE_ONE = "give the file `fakescope eval calibrate RUN_DIR --out FILE` wrote"
_FIT_AGAIN = "fit it again (`fakescope eval calibrate RUN_DIR --out FILE`)"

FloatArray = NDArray[np.float64]


def sigmoid(x: ArrayLike) -> FloatArray:
    """The logistic function in float64, without overflow at any size (NaN stays NaN)."""
    from scipy.special import expit

    return np.asarray(expit(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def margin_from_p(p_fake: ArrayLike) -> FloatArray:
    """The margin ``logit(p_fake)`` behind each p_fake, where only p_fake was kept (an
    evaluation run's predictions). A p_fake of exactly 1.0 (or 0.0) says only that the margin
    was at least ``P_ONE_MARGIN`` (at most ``P_ZERO_MARGIN``): that bound is returned. NaN, and
    anything outside [0, 1], gives NaN."""
    p = np.asarray(p_fake, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = np.log(p) - np.log1p(-p)
    margin = np.where(p >= 1.0, P_ONE_MARGIN, margin)
    margin = np.where(p <= 0.0, P_ZERO_MARGIN, margin)
    return np.where((p >= 0.0) & (p <= 1.0), margin, np.nan)


def platt_formula(a: float, b: float) -> str:
    """``sigmoid(a * margin + b)`` with these a and b, written as a reader expects (``- 0.08``,
    not ``+ -0.08``)."""
    sign = "-" if math.copysign(1.0, b) < 0 else "+"
    return f"sigmoid({a:.6g} * margin {sign} {abs(b):.6g})"


@dataclass(frozen=True)
class Calibration:
    """A fitted Platt scaling for one model: ``p_cal = sigmoid(a·margin + b)``.

    Equal (and hashed) by ``a``, ``b`` and ``model_key``; the rest says where it came from.
    """

    a: float
    b: float
    model_key: str  # `ModelInfo.key` of the model it was fitted for (without calibration)
    fitted_on: dict[str, Any] = field(default_factory=dict, compare=False)
    fit_metrics: dict[str, Any] = field(default_factory=dict, compare=False)
    source: str | None = field(default=None, compare=False)  # the file it was read from

    @property
    def digest(self) -> str:
        """12 hex digits naming exactly this ``a`` and ``b`` (their exact float64 bits)."""
        text = f"{float(self.a).hex()} {float(self.b).hex()}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def key_of(self, base_key: str) -> str:
        """The cache identity of the model ``base_key`` with this calibration applied."""
        return f"{base_key}{_KEY_SUFFIX}{self.digest}"

    def check_model(self, base_key: str) -> None:
        """CalibrationError unless this calibration was fitted for the model ``base_key``."""
        if base_key != self.model_key:
            where = f"{self.source}: " if self.source else ""
            raise CalibrationError(
                f"{where}this calibration was fitted for the model {self.model_key}, not "
                f"{base_key}; fit one on an evaluation run of this model "
                "(`fakescope eval calibrate RUN_DIR`)"
            )

    def apply_margin(self, margin: ArrayLike) -> FloatArray:
        """Calibrated p_fake from TPE margins (float64; NaN stays NaN, any size is safe)."""
        m = np.asarray(margin, dtype=np.float64)
        # A margin of ±inf would make 0·inf (a = 0) or inf - inf NaN: it stands for "huge".
        m = np.clip(m, -1e300, 1e300)
        with np.errstate(over="ignore", invalid="ignore"):
            return sigmoid(self.a * m + self.b)

    def apply_p(self, p_fake: ArrayLike) -> FloatArray:
        """Calibrated p_fake from raw p_fake, where the margin itself was not kept."""
        return self.apply_margin(margin_from_p(p_fake))

    def formula(self) -> str:
        """``sigmoid(a * margin + b)`` with this a and b (see `platt_formula`)."""
        return platt_formula(self.a, self.b)

    def describe(self) -> dict[str, Any]:
        """What an analysis says about it (`model.calibration`)."""
        return {"a": self.a, "b": self.b, "digest": self.digest, "method": "platt"}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "method": "platt",
            "formula": "p_fake = sigmoid(a * margin + b), margin = sum of fake-token logits "
            "- sum of real-token logits = logit(raw p_fake)",
            "a": self.a,
            "b": self.b,
            "model_key": self.model_key,
            "fitted_on": self.fitted_on,
            "fit_metrics": self.fit_metrics,
        }

    def save(self, path: Path) -> Path:
        from fakescope.evaluation.output_files import write_text

        return write_text(path, json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration file; CalibrationError in one line, naming the file, if it is
        not one."""
        path = Path(path)
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise CalibrationError(
                f"{path}: cannot read the calibration file ({exc.strerror or exc}); {_WRITE_ONE}"
            ) from exc
        if len(raw) > MAX_FILE_BYTES:
            raise CalibrationError(f"{path}: over 1 MiB, not a calibration file; {_WRITE_ONE}")
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise CalibrationError(
                f"{path}: not UTF-8 text, not a calibration file; {_WRITE_ONE}"
            ) from exc
        except json.JSONDecodeError as exc:
            raise CalibrationError(
                f"{path}: not JSON ({exc.msg} at line {exc.lineno}), not a calibration file; "
                f"{_WRITE_ONE}"
            ) from exc
        except RecursionError as exc:
            raise CalibrationError(
                f"{path}: JSON nested too deeply, not a calibration file; {_WRITE_ONE}"
            ) from exc
        return cls.from_json(value, str(path))

    @classmethod
    def from_json(cls, value: Any, source: str) -> Calibration:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise CalibrationError(
                f'{source}: not a calibration file (no "format": "{FORMAT}"); {_WRITE_ONE}'
            )
        if value.get("version") != VERSION:
            raise CalibrationError(
                f"{source}: calibration file version {value.get('version')!r}, and this "
                f"FakeScope reads version {VERSION}; {_FIT_AGAIN}"
            )
        numbers = {}
        for name in ("a", "b"):
            number = value.get(name)
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise CalibrationError(
                    f"{source}: {name} is {number!r}, not a number; {_FIT_AGAIN}"
                )
            if not math.isfinite(number):
                raise CalibrationError(
                    f"{source}: {name} is {number!r}, not a finite number; {_FIT_AGAIN}"
                )
            numbers[name] = float(number)
        key = value.get("model_key")
        if not isinstance(key, str) or not key:
            raise CalibrationError(
                f"{source}: model_key is {key!r}, not a model's key; {_FIT_AGAIN}"
            )
        fitted_on, fit_metrics = value.get("fitted_on", {}), value.get("fit_metrics", {})
        if not isinstance(fitted_on, dict) or not isinstance(fit_metrics, dict):
            raise CalibrationError(
                f"{source}: fitted_on and fit_metrics must be JSON objects; {_FIT_AGAIN}"
            )
        return cls(numbers["a"], numbers["b"], key, fitted_on, fit_metrics, source)


def fit_platt(margins: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """``(a, b)`` maximising the likelihood of ``sigmoid(a·m + b)`` under Platt's targets.

    ``margins`` must be finite, ``labels`` 1 (fake) / 0 (real) with both present, and the
    margins not all equal (no slope can be fitted to one value): CalibrationError otherwise.
    """
    m = np.asarray(margins, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if m.shape != y.shape or m.ndim != 1:
        raise ValueError("margins and labels must be 1-D and of the same length")
    n_fake = int((y == 1).sum())
    n_real = int((y == 0).sum())
    if n_fake + n_real != y.size:
        raise ValueError("labels must be 1 (fake) or 0 (real)")
    if not n_fake or not n_real:
        raise CalibrationError(
            f"calibration needs both fakes and reals; got {n_fake} fake(s), {n_real} real(s)"
        )
    if not np.isfinite(m).all():
        raise ValueError("margins must be finite")
    spread = float(m.std())
    if not spread > 0.0:
        raise CalibrationError("every score is the same: no calibration can be fitted to them")
    # Standardised margins keep the Newton system well conditioned at any scale.
    centre = float(m.mean())
    z = (m - centre) / spread
    targets = np.where(y == 1, (n_fake + 1.0) / (n_fake + 2.0), 1.0 / (n_real + 2.0))
    design = np.stack([z, np.ones_like(z)], axis=1)

    def loss(theta: FloatArray) -> float:
        x = design @ theta
        return float(np.sum(np.logaddexp(0.0, x) - targets * x))

    theta = np.array([0.0, math.log((n_fake + 1.0) / (n_real + 1.0))])
    current = loss(theta)
    for _ in range(_NEWTON_STEPS):
        p = sigmoid(design @ theta)
        gradient = design.T @ (p - targets)
        if float(np.max(np.abs(gradient))) < 1e-10 * y.size:
            break
        weights = p * (1.0 - p)
        hessian = (design * weights[:, None]).T @ design + 1e-12 * np.eye(2)
        direction = -np.linalg.solve(hessian, gradient)
        step = 1.0
        while step >= 1e-10:
            candidate = theta + step * direction
            tried = loss(candidate)
            if tried <= current + 1e-4 * step * float(gradient @ direction):
                theta, current = candidate, tried
                break
            step /= 2.0
        else:
            break  # no step decreases the loss any more: at the optimum, to machine precision
    a_z, b_z = float(theta[0]), float(theta[1])
    return a_z / spread, b_z - a_z * centre / spread


def _checked(p_fake: ArrayLike, labels: ArrayLike) -> tuple[FloatArray, FloatArray]:
    p = np.asarray(p_fake, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError("p_fake and labels must be 1-D and of the same length")
    return p, y


def reliability_bins(
    p_fake: ArrayLike, labels: ArrayLike, bins: int = ECE_BINS
) -> list[dict[str, Any]]:
    """Per equal-width bin of p_fake (the last one closed, [14/15, 1]): its edges, how many
    images, their mean p_fake and their share of fakes (None where the bin is empty)."""
    p, y = _checked(p_fake, labels)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "n": n,
                "mean_p_fake": float(p[members].mean()) if n else None,
                "share_fake": float(y[members].mean()) if n else None,
            }
        )
    return out


def expected_calibration_error(
    p_fake: ArrayLike, labels: ArrayLike, bins: int = ECE_BINS
) -> float | None:
    """Σ over equal-width bins of (bin's share of images) · |share of fakes - mean p_fake|;
    None for no images. ``p_fake`` must be finite, in [0, 1]."""
    p, y = _checked(p_fake, labels)
    if not p.size:
        return None
    table = reliability_bins(p, y, bins)
    gaps = [row["n"] * abs(row["share_fake"] - row["mean_p_fake"]) for row in table if row["n"]]
    return float(sum(gaps) / p.size)


def brier_score(p_fake: ArrayLike, labels: ArrayLike) -> float | None:
    """Mean of (p_fake - label)², label 1 for fake; None for no images."""
    p, y = _checked(p_fake, labels)
    return float(np.mean((p - y) ** 2)) if p.size else None


def calibration_metrics(
    p_fake: Sequence[float], labels: Sequence[int], bins: int = ECE_BINS
) -> dict[str, Any]:
    """ECE, Brier score and the reliability table of finite p_fake values (others left out)."""
    p, y = _checked(list(p_fake), list(labels))
    finite = np.isfinite(p)
    p, y = p[finite], y[finite]
    return {
        "n": int(p.size),
        "bins": bins,
        "ece": expected_calibration_error(p, y, bins),
        "brier": brier_score(p, y),
        "reliability": reliability_bins(p, y, bins),
    }


def fit_calibration(
    p_fake: Sequence[float],
    labels: Sequence[int],
    *,
    model_key: str,
    fitted_on: Mapping[str, Any],
    margins: Sequence[float] | None = None,
) -> Calibration:
    """Fit Platt scaling on finite raw p_fake (their margins where given) with labels 1 fake /
    0 real, and record ECE and Brier before and after on this same set."""
    from datetime import UTC, datetime

    p, y = _checked(list(p_fake), list(labels))
    m = margin_from_p(p) if margins is None else np.asarray(margins, dtype=np.float64)
    if not np.isfinite(m).all():
        raise ValueError("every p_fake (margin) fitted on must be finite")
    a, b = fit_platt(m, y)
    calibration = Calibration(a, b, model_key)
    after = calibration.apply_margin(m)
    n_fake = int(y.sum())
    return Calibration(
        a,
        b,
        model_key,
        fitted_on={
            **fitted_on,
            "n_fake": n_fake,
            "n_real": int(y.size - n_fake),
            "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        },
        fit_metrics={
            "bins": ECE_BINS,
            "ece_before": expected_calibration_error(p, y),
            "ece_after": expected_calibration_error(after, y),
            "brier_before": brier_score(p, y),
            "brier_after": brier_score(after, y),
        },
    )
