"""One evaluation run end to end: datasets in, predictions, metrics, report and plots out.

The output folder holds one run. `run.json` records what it is (model, provenance, prompt
version, each dataset's folder, protocols, conditions, --limit, --seed). A run may reuse a
folder when it covers every prediction already there: the same run resumes, a wider one (more
datasets, protocols, the robustness sweep, a larger --limit) keeps them and adds the rest, so
`predictions.csv` never holds rows its report leaves out. Anything else is refused before the
model loads, unless `--fresh` clears the folder's outputs first. Until the run finishes,
`report.md` says so and the previous `metrics.json` and figures are gone: nothing in the folder
describes a run it no longer holds.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakescope.errors import DatasetError, FakeScopeError
from fakescope.evaluation import output_files
from fakescope.evaluation.datasets import LABEL_NAMES, Dataset, limit_samples, load_dataset
from fakescope.evaluation.plots import PR_FILE, RELIABILITY_FILE, ROBUSTNESS_FILE, ROC_FILE
from fakescope.evaluation.protocols import CLOSED, QUANTITATIVE, EvalModel
from fakescope.evaluation.report import REPORT_FILE
from fakescope.evaluation.results import build_metrics
from fakescope.evaluation.robustness import sweep_conditions
from fakescope.evaluation.runner import (
    Plan,
    PredictionStore,
    RowId,
    image_hashes,
    planned_ids,
    run_predictions,
)

if TYPE_CHECKING:
    from fakescope.calibration import Calibration

PROTOCOL_CHOICES = {
    "quantitative": [QUANTITATIVE],
    "closed": [CLOSED],
    "both": [QUANTITATIVE, CLOSED],
}


RUN_FILE, PREDICTIONS_FILE, METRICS_FILE = "run.json", "predictions.csv", "metrics.json"
FIGURE_FILES = (PR_FILE, ROC_FILE, RELIABILITY_FILE, ROBUSTNESS_FILE)
# Everything `fakescope eval` writes into --out (`--fresh` removes these and nothing else).
OUTPUT_FILES = (RUN_FILE, PREDICTIONS_FILE, METRICS_FILE, REPORT_FILE, *FIGURE_FILES)
_HOW = "use another --out folder, or add --fresh to clear it"


class RunMismatchError(FakeScopeError):
    """The output folder holds predictions of another model or setting: resuming would mix them."""


class OutputInTheWayError(FakeScopeError):
    """Something that is no file has the name of one of the run's output files."""


class OutputInUseError(FakeScopeError):
    """Another run is writing into the output folder."""


@dataclass
class EvalConfig:
    datasets: list[str]
    model: str
    out: Path
    quantization: str | None = None
    device: str | None = None
    protocol: str = "quantitative"
    provenance: bool = True
    robustness: bool = False
    batch_size: int = 8
    limit: int | None = None
    bootstrap: int = 1000
    seed: int = 0
    skip_missing: bool = False
    progress: bool = True
    fresh: bool = False  # clear the folder's previous outputs instead of resuming
    calibration: Path | None = None  # a calibration file applied to p_fake (when loading)


def _load_datasets(config: EvalConfig) -> list[Dataset]:
    datasets = [load_dataset(spec, skip_missing=config.skip_missing) for spec in config.datasets]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise DatasetError(f"two datasets share a name ({names}); name them with NAME=PATH")
    for dataset in datasets:
        dataset.samples = limit_samples(dataset.samples, config.limit, config.seed)
        if config.limit is not None:
            dataset.mcq = dataset.mcq[: config.limit]
    return datasets


def _identity(model: EvalModel, config: EvalConfig) -> dict[str, Any]:
    """What predictions depend on; a resumed run must match it."""
    from fakescope.prompts import PROMPT_VERSION

    return {
        "model_key": str(model.info.key),
        "provenance": config.provenance,
        "prompt_version": PROMPT_VERSION,
    }


def _read_run_file(out: Path) -> dict[str, Any]:
    run_file = out / RUN_FILE
    if not run_file.is_file():
        return {}
    try:
        stored = json.loads(run_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunMismatchError(f"{run_file} is not readable JSON ({exc}); {_HOW}") from exc
    except RecursionError as exc:
        raise RunMismatchError(f"{run_file} is JSON nested too deeply; {_HOW}") from exc
    datasets = stored.get("datasets", {}) if isinstance(stored, dict) else None
    if not isinstance(datasets, dict) or not all(
        isinstance(source, str) for source in datasets.values()
    ):
        # What is read from it (each dataset's folder) must have the shape this file is written in.
        raise RunMismatchError(f"{run_file} is not a run record `fakescope eval` writes; {_HOW}")
    return stored


def _check_sources(out: Path, stored: dict[str, Any], sources: dict[str, str]) -> None:
    """Refuse a dataset of the same name read from another folder (its keys would match
    other images' rows)."""
    known = dict(stored.get("datasets") or {})
    for name, source in sources.items():
        if known.get(name, source) != source:
            raise RunMismatchError(
                f"{out} holds predictions for a dataset named {name!r} read from "
                f"{known[name]}, not {source}; name it NAME=PATH, {_HOW}"
            )


def _check_covered(out: Path, store: PredictionStore, plan: Plan) -> None:
    """Refuse a folder holding predictions this run would not report (another dataset,
    protocol, condition, --limit or --seed): its report would describe part of the folder.
    Rows record the label an image had: one labelled otherwise since is refused too."""
    planned = planned_ids(plan)
    extra = [rid for rid in store.rows if rid not in planned]
    if extra:
        raise RunMismatchError(
            f"{out} holds {len(extra)} prediction(s) of another run ({_describe(extra, plan)}) "
            f"that this one would not report; rerun with that run's settings to resume it, "
            f"or {_HOW}"
        )
    labels = {(d.name, s.key): LABEL_NAMES[s.label] for d in plan.datasets for s in d.samples}
    labels |= {(d.name, m.key): m.answer for d in plan.datasets for m in d.mcq}
    relabelled = {
        (row["dataset"], row["key"])
        for row in store.rows.values()
        if row["label"] != labels[row["dataset"], row["key"]]
    }
    if relabelled:
        first = sorted(relabelled)[0]
        raise RunMismatchError(
            f"{out} holds predictions of {len(relabelled)} image(s) labelled otherwise since "
            f"(such as {first[0]} {first[1]!r}); {_HOW}"
        )


def _describe(extra: list[RowId], plan: Plan) -> str:
    """What the rows outside the plan belong to, in the words of the options that chose it."""
    parts = []
    names = sorted({rid[0] for rid in extra} - {d.name for d in plan.datasets})
    if names:
        parts.append("dataset " + ", ".join(names))
    protocols = sorted({rid[3] for rid in extra} - {*plan.protocols, "mcq"})
    if protocols:
        parts.append("protocol " + ", ".join(protocols))
    if {rid[2] for rid in extra} - set(plan.conditions):
        parts.append("the --robustness sweep")
    return "; ".join(parts) or "images outside this run's --limit/--seed selection"


def _check_identity(out: Path, stored: dict[str, Any], identity: dict[str, Any]) -> None:
    previous = stored.get("identity")
    if previous is not None and previous != identity:
        raise RunMismatchError(
            f"{out} holds predictions made with {previous}, not {identity}; {_HOW}"
        )


def _check_output_names(out: Path) -> None:
    """Refuse, before the model loads, a folder where one of the run's output files would be
    written: found at the end, it would fail the run after its predictions were made."""
    for name in OUTPUT_FILES:
        path = out / name
        if path.exists() and not path.is_file():
            raise OutputInTheWayError(
                f"{path} is not a file, and the run writes its {name} there; move it away"
            )


def _clear_outputs(out: Path) -> None:
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)


def _start_run(out: Path, record: dict[str, Any]) -> None:
    """Record the run, and leave nothing that describes the previous one: the last report is
    replaced by a note that this run has not finished, its metrics and figures are removed."""
    output_files.write_text(out / RUN_FILE, json.dumps(record, indent=2) + "\n")
    for name in (METRICS_FILE, *FIGURE_FILES):
        (out / name).unlink(missing_ok=True)
    datasets = ", ".join(f"{n} ({s})" for n, s in record["datasets"].items())
    note = [
        "# FakeScope evaluation: not finished",
        "",
        f"The run started at {record['started_at']} in this folder has not finished: it is in "
        "progress, or it was interrupted. `predictions.csv` holds the predictions made so far; "
        "this report, `metrics.json` and the figures are written when the run ends. To finish "
        "it, run the same `fakescope eval` command again (without `--fresh`): it resumes "
        "where it stopped.",
        "",
        f"- model: `{record['identity']['model_key']}`",
        f"- datasets: {datasets}",
        f"- protocols: {', '.join(record['protocols'])}; conditions: "
        f"{', '.join(record['conditions'])}; limit: {record['limit'] or 'none'}",
        "",
    ]
    output_files.write_text(out / REPORT_FILE, output_files.readable("\n".join(note)))


def _read_calibration(config: EvalConfig) -> Calibration | None:
    """The calibration file given, read before anything is written (a bad one leaves no
    --out folder behind)."""
    from fakescope.calibration import Calibration

    return Calibration.load(config.calibration) if config.calibration else None


def _load_model(config: EvalConfig) -> EvalModel:
    from fakescope.loading import load_model

    calibration = _read_calibration(config)
    model = load_model(
        config.model,
        quantization=config.quantization,
        device=config.device,
        progress=config.progress,
        calibration=calibration,
    )
    return model


def evaluate(config: EvalConfig, model: EvalModel | None = None) -> dict[str, Any]:
    """Run (or resume) an evaluation into `config.out`; returns the metrics written there.
    One run at a time per folder: another one already writing there is OutputInUseError.
    A `model` given is used as it is (`config.calibration` applies to the model loaded here)."""
    datasets = _load_datasets(config)
    protocols = PROTOCOL_CHOICES[config.protocol]
    conditions = sweep_conditions(config.robustness)
    plan = Plan(datasets, protocols, conditions, config.provenance, config.batch_size)
    sources = {d.name: str(d.source) for d in datasets if d.source is not None}
    if model is None:
        _read_calibration(config)  # a bad file is refused before --out is made
    config.out.mkdir(parents=True, exist_ok=True)
    try:
        with output_files.held_alone(config.out):
            return _evaluate_alone(config, model, datasets, protocols, conditions, plan, sources)
    except output_files.FolderInUse:
        raise OutputInUseError(
            f"another fakescope eval is writing into {config.out}; wait for it to end, or use "
            "another --out folder"
        ) from None


def _evaluate_alone(
    config: EvalConfig,
    model: EvalModel | None,
    datasets: list[Any],
    protocols: list[str],
    conditions: list[Any],
    plan: Plan,
    sources: dict[str, str],
) -> dict[str, Any]:
    """`evaluate` while this process alone writes into `config.out`."""
    from fakescope.evaluation import plots, report

    output_files.remove_leftovers(config.out, OUTPUT_FILES)  # of a run killed mid-write
    _check_output_names(config.out)
    output_files.check_writable(config.out)
    stored: dict[str, Any] = {}
    if not config.fresh:
        # Before the model loads (minutes on a GPU): a folder this run cannot reuse is refused now.
        stored = _read_run_file(config.out)
        _check_sources(config.out, stored, sources)
        store = PredictionStore(config.out / PREDICTIONS_FILE)
        _check_covered(config.out, store, plan)
    model = model if model is not None else _load_model(config)
    untrained = bool(getattr(model.info, "untrained", False))
    if untrained and config.progress:
        print(
            "note: untrained random-weight checkpoint: metrics will be near chance", file=sys.stderr
        )
    identity = _identity(model, config)
    if config.fresh:
        _clear_outputs(config.out)
        store = PredictionStore(config.out / PREDICTIONS_FILE)
    else:
        _check_identity(config.out, stored, identity)
    _start_run(
        config.out,
        {
            "identity": identity,
            "datasets": sources,
            "protocols": protocols,
            "conditions": conditions,
            "limit": config.limit,
            "seed": config.seed,
            "started_at": _now(),
        },
    )
    started = time.perf_counter()
    processed = run_predictions(model, plan, store, progress=config.progress)
    elapsed = time.perf_counter() - started

    rows = list(store.rows.values())
    if config.progress:
        # Bootstrap intervals on a large benchmark take a while after the last image.
        print(
            f"computing metrics ({config.bootstrap} bootstrap resamples per group)",
            file=sys.stderr,
        )
    metrics = build_metrics(
        rows,
        datasets,
        protocols,
        conditions,
        bootstrap=config.bootstrap,
        seed=config.seed,
        hashes=image_hashes(store, datasets),
    )
    info = model.info.to_dict() if hasattr(model.info, "to_dict") else {"id": str(model.info)}
    metrics["run"] = {
        **identity,
        "model": info,
        "untrained": untrained,
        "datasets": {
            d.name: {"spec": s, "layout": d.layout, "source": sources.get(d.name)}
            for d, s in zip(datasets, config.datasets, strict=True)
        },
        "protocols": protocols,
        "conditions": conditions,
        "limit": config.limit,
        "bootstrap": config.bootstrap,
        "seed": config.seed,
        "batch_size": config.batch_size,
        "processed_this_run": processed,
        "seconds_this_run": round(elapsed, 3),
        "finished_at": _now(),
    }
    metrics["figures"] = plots.write_plots(config.out, rows, datasets, metrics)
    output_files.write_json(config.out / METRICS_FILE, metrics)
    report.write_report(config.out, metrics)
    return metrics


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
