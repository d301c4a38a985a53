"""`fakescope eval compare RUN_A RUN_B`: the differences between two runs, subset by subset.

A difference means something only between like and like: the table says, per row, when the two
runs measured different numbers of fakes or reals there, and lists first every setting that
differs between them (datasets' sources, --limit, provenance, prompt version, the calibration
of p_fake, ...). Calibration (ECE, Brier score) follows, per dataset both runs measured it for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fakescope.errors import DatasetError
from fakescope.evaluation.output_files import readable, readable_tree
from fakescope.evaluation.protocols import QUANTITATIVE

COMPARED = ("ap", "auc", "accuracy", "tpr", "tnr")
CALIBRATION_MEASURES = ("ece", "brier")


def load_run(path: Path) -> dict[str, Any]:
    """A run folder (or its metrics.json)."""
    if not path.exists():
        raise DatasetError(f"{path}: no such folder; give a `fakescope eval --out` folder")
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file() and (path / "run.json").is_file():
        raise DatasetError(
            f"{path}: its run has not finished (no metrics.json yet); run the same "
            "`fakescope eval` command again to finish it"
        )
    if not file.is_file():
        raise DatasetError(f"{path}: no metrics.json (is this a `fakescope eval --out` folder?)")
    try:
        loaded: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{file}: not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except RecursionError as exc:
        raise DatasetError(f"{file}: JSON nested too deeply to be a metrics.json") from exc
    if not isinstance(loaded, dict) or not isinstance(loaded.get("datasets"), dict):
        raise DatasetError(f"{file}: not the metrics.json of a `fakescope eval` run")
    _check_shape(loaded, file)
    return loaded


def _check_shape(run: dict[str, Any], file: Path) -> None:
    """Refuse, naming the part, a metrics.json (edited by hand, or cut) whose parts the table
    reads do not have the shape `fakescope eval` writes them in."""

    def part(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise DatasetError(f"{file}: {where} is not what `fakescope eval` writes there")
        return value

    def metrics(value: Any, where: str) -> None:
        for name, number in part(value, where).items():
            if name in (*COMPARED, "mean_ap") and not isinstance(number, int | float | None):
                raise DatasetError(f"{file}: {where}.{name} is {number!r}, not a number")

    def calibration(value: Any, where: str) -> None:
        for name in CALIBRATION_MEASURES:
            number = part(value, where).get(name)
            if isinstance(number, bool) or not isinstance(number, int | float | None):
                raise DatasetError(f"{file}: {where}.{name} is {number!r}, not a number")

    for name, entry in run["datasets"].items():
        entry = part(entry, f"datasets.{name}")
        protocols = part(entry.get("protocols", {}), f"datasets.{name}.protocols")
        for protocol, measured in protocols.items():
            where = f"datasets.{name}.protocols.{protocol}"
            metrics(measured, where)
            if measured.get("calibration") is not None:
                calibration(measured["calibration"], f"{where}.calibration")
            metrics(measured.get("overall", {}), f"{where}.overall")
            for subset, values in part(measured.get("subsets", {}), f"{where}.subsets").items():
                metrics(values, f"{where}.subsets.{subset}")
        if entry.get("mcq") is not None:
            metrics(entry["mcq"], f"datasets.{name}.mcq")
    for name, swept in part(run.get("robustness", {}), "robustness").items():
        for protocol, conditions in part(swept, f"robustness.{name}").items():
            for condition, values in part(conditions, f"robustness.{name}.{protocol}").items():
                metrics(values, f"robustness.{name}.{protocol}.{condition}")
    settings = part(run.get("run", {}), "run")
    model = part(settings.get("model", {}), "run.model")
    if model.get("calibration") is not None:
        part(model["calibration"], "run.model.calibration")
    for name, dataset in part(settings.get("datasets", {}), "run.datasets").items():
        part(dataset, f"run.datasets.{name}")


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _delta(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None else f"{b - a:+.3f}"


Row = tuple[str, str, str, dict[str, Any], dict[str, Any]]
# What a difference could come from besides the model (the model itself is what is compared).
_SETTINGS = ("provenance", "prompt_version", "limit", "seed", "protocols", "conditions")


def _images(m: dict[str, Any]) -> str:
    if "n_fake" in m:
        return f"{m['n_fake']}f/{m.get('n_real')}r"
    return f"{m['n']}q" if "n" in m else "—"


def _images_cell(ma: dict[str, Any], mb: dict[str, Any]) -> str:
    """The row's image counts; both runs' when they differ (marked: not like with like)."""
    a, b = _images(ma), _images(mb)
    if "—" in (a, b):  # measured by one run only: there is no difference to qualify
        return b if a == "—" else a
    return a if a == b else f"{a} ≠ {b} (!)"


def _calibration_applied(run: dict[str, Any]) -> dict[str, Any] | None:
    """The calibration a run applied to p_fake (`run.model.calibration`), None for raw p_fake
    (runs made before calibration existed have no such field: theirs is raw too)."""
    applied = (run.get("model") or {}).get("calibration")
    return applied or None


def _calibration_text(applied: dict[str, Any] | None) -> str:
    if applied is None:
        return "raw p_fake"
    return (
        f"{applied.get('method', 'platt')} {applied.get('digest')} "
        f"(a={applied.get('a')!r}, b={applied.get('b')!r})"
    )


def setting_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """One line per setting that differs between two runs' `metrics.json`."""
    ra, rb = a.get("run", {}), b.get("run", {})
    lines = [
        f"{key}: A {ra.get(key)!r}, B {rb.get(key)!r}"
        for key in _SETTINGS
        if ra.get(key) != rb.get(key)
    ]
    cal_a, cal_b = _calibration_applied(ra), _calibration_applied(rb)
    if cal_a != cal_b:
        lines.append(
            f"calibration of p_fake: A {_calibration_text(cal_a)}, B {_calibration_text(cal_b)}"
        )
    da, db = ra.get("datasets", {}), rb.get("datasets", {})
    for name in sorted(set(da) & set(db)):
        # The resolved folder when the run recorded it: `x=PATH` and `PATH` read the same.
        where_a = da[name].get("source") or da[name].get("spec")
        where_b = db[name].get("source") or db[name].get("spec")
        if where_a != where_b:
            lines.append(f"dataset {name}: A read {where_a!r}, B {where_b!r}")
    for tag, only in (("A", set(da) - set(db)), ("B", set(db) - set(da))):
        if only:
            lines.append(f"only run {tag} measured: {', '.join(sorted(only))}")
    return lines


def _rows(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    """(dataset, protocol, subset, metrics A, metrics B) for everything either run measured."""
    rows: list[Row] = []
    for name in sorted(set(a["datasets"]) | set(b["datasets"])):
        pa = a["datasets"].get(name, {}).get("protocols", {})
        pb = b["datasets"].get(name, {}).get("protocols", {})
        for protocol in sorted(set(pa) | set(pb)):
            sa, sb = pa.get(protocol, {}), pb.get(protocol, {})
            subsets = sorted(set(sa.get("subsets", {})) | set(sb.get("subsets", {})))
            for subset in subsets:
                ma = sa.get("subsets", {}).get(subset, {})
                mb = sb.get("subsets", {}).get(subset, {})
                rows.append((name, protocol, subset, ma, mb))
            rows.append((name, protocol, "overall", sa.get("overall", {}), sb.get("overall", {})))
            map_a, map_b = {"ap": sa.get("mean_ap")}, {"ap": sb.get("mean_ap")}
            rows.append((name, protocol, "mAP", map_a, map_b))
        mcq_a = a["datasets"].get(name, {}).get("mcq")
        mcq_b = b["datasets"].get(name, {}).get("mcq")
        if mcq_a or mcq_b:
            rows.append((name, "mcq", "questions", mcq_a or {}, mcq_b or {}))
        ra = a.get("robustness", {}).get(name, {})
        rb = b.get("robustness", {}).get(name, {})
        for protocol in sorted(set(ra) | set(rb)):
            ca, cb = ra.get(protocol, {}), rb.get(protocol, {})
            for condition in [*ca, *(c for c in cb if c not in ca)]:
                label = f"{protocol} @ {condition}, model alone"
                rows.append((name, label, "overall", ca.get(condition, {}), cb.get(condition, {})))
    return rows


def _calibration_lines(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """ECE and Brier score of the model's own p_fake, A, B and B - A, per dataset both runs
    measured them for (runs made before calibration was measured have none)."""

    def measured(run: dict[str, Any], name: str) -> dict[str, Any] | None:
        entry = run["datasets"].get(name, {}).get("protocols", {}).get(QUANTITATIVE, {})
        found = entry.get("calibration")
        return found if found and found.get("n") else None

    header = ["dataset", "images"]
    for name in CALIBRATION_MEASURES:
        header += [f"{name} A", f"{name} B", f"Δ{name}"]
    table = [header]
    bins = set()
    for name in sorted(set(a["datasets"]) & set(b["datasets"])):
        ma, mb = measured(a, name), measured(b, name)
        if ma is None or mb is None:
            continue
        bins |= {ma.get("bins"), mb.get("bins")}
        images = str(ma["n"]) if ma["n"] == mb["n"] else f"{ma['n']} ≠ {mb['n']} (!)"
        cells = [name, images]
        for measure in CALIBRATION_MEASURES:
            va, vb = ma.get(measure), mb.get(measure)
            cells += [_cell(va), _cell(vb), _delta(va, vb)]
        table.append(cells)
    if len(table) == 1:
        return []
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    binned = f"over {bins.pop()} equal-width bins" if len(bins) == 1 else "binned differently"
    lines = [
        "",
        "Calibration of the model's own p_fake (quantitative protocol, clean images; ECE "
        f"{binned}, and Brier score; lower is better):",
    ]
    for row in table:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return lines


def compare_runs(run_a: Path, run_b: Path) -> str:
    """A plain-text table: each metric in A, in B, and B - A.

    Valid UTF-8 whatever the names: a byte of a run folder's or a dataset's name that is not
    UTF-8 shows as `\\xNN`, as in the report. A metrics.json written before the report made names
    readable holds them as JSON `\\udcNN` escapes: they are made readable before the columns are
    measured, which keeps them aligned.
    """
    a, b = readable_tree(load_run(run_a)), readable_tree(load_run(run_b))
    where_a, where_b = readable(str(run_a)), readable(str(run_b))
    model_a = a.get("run", {}).get("model", {}).get("id", where_a)
    model_b = b.get("run", {}).get("model", {}).get("id", where_b)
    header = ["dataset", "protocol", "subset", "images"]
    for metric in COMPARED:
        header += [f"{metric} A", f"{metric} B", f"Δ{metric}"]
    table = [header]
    for name, protocol, subset, ma, mb in _rows(a, b):
        cells = [name, protocol, subset, _images_cell(ma, mb)]
        for metric in COMPARED:
            va, vb = ma.get(metric), mb.get(metric)
            cells += [_cell(va), _cell(vb), _delta(va, vb)]
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [f"A: {where_a} ({model_a})", f"B: {where_b} ({model_b})", ""]
    differences = setting_differences(a, b)
    if differences:
        lines += ["Settings that differ (a difference below may come from them, not the model):"]
        lines += [f"  - {line}" for line in differences] + [""]
    for row in table:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    calibration = _calibration_lines(a, b)
    lines += calibration
    if any("(!)" in row[3] for row in table[1:]) or any("(!)" in line for line in calibration):
        lines.append(
            "(!): the runs measured different images there (f: fakes, r: reals, q: questions); "
            "its differences are not like with like"
        )
    for tag, run in (("A", a), ("B", b)):
        if run.get("run", {}).get("untrained"):
            lines.append(f"note: run {tag} used an untrained checkpoint (chance by construction)")
    return "\n".join(line.rstrip() for line in lines)
