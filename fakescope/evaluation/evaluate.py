"""One evaluation run end to end: datasets in, predictions, metrics, report and plots out."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fakescope.errors import DatasetError, FakeScopeError
from fakescope.evaluation import output_files
from fakescope.evaluation.datasets import Dataset, limit_samples, load_dataset
from fakescope.evaluation.protocols import CLOSED, QUANTITATIVE, EvalModel
from fakescope.evaluation.results import build_metrics
from fakescope.evaluation.robustness import sweep_conditions
from fakescope.evaluation.runner import Plan, PredictionStore, run_predictions

PROTOCOL_CHOICES = {
    "quantitative": [QUANTITATIVE],
    "closed": [CLOSED],
    "both": [QUANTITATIVE, CLOSED],
}


class RunMismatchError(FakeScopeError):
    """The output folder holds predictions of another model or setting: resuming would mix them."""


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


def _check_resumable(
    out: Path, identity: dict[str, Any], sources: dict[str, str] | None = None
) -> None:
    """Refuse a folder whose predictions another model or setting made, or whose dataset of
    the same name was read from elsewhere (its keys would match other images' rows)."""
    run_file = out / "run.json"
    known: dict[str, str] = {}
    if run_file.is_file():
        stored = json.loads(run_file.read_text(encoding="utf-8"))
        previous = stored.get("identity")
        if previous is not None and previous != identity:
            raise RunMismatchError(
                f"{out} holds predictions made with {previous}, not {identity}; "
                "use another --out folder (or delete predictions.csv)"
            )
        known = dict(stored.get("datasets") or {})
    for name, source in (sources or {}).items():
        if known.get(name, source) != source:
            raise RunMismatchError(
                f"{out} holds predictions for a dataset named {name!r} read from "
                f"{known[name]}, not {source}; use another --out folder or name it NAME=PATH"
            )
        known[name] = source
    record = {"identity": identity, "datasets": known}
    output_files.write_text(run_file, json.dumps(record, indent=2) + "\n")


def _load_model(config: EvalConfig) -> EvalModel:
    from fakescope.loading import load_model

    model = load_model(
        config.model,
        quantization=config.quantization,
        device=config.device,
        progress=config.progress,
    )
    return model


def evaluate(config: EvalConfig, model: EvalModel | None = None) -> dict[str, Any]:
    """Run (or resume) an evaluation into `config.out`; returns the metrics written there."""
    from fakescope.evaluation import plots, report

    datasets = _load_datasets(config)
    config.out.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else _load_model(config)
    untrained = bool(getattr(model.info, "untrained", False))
    if untrained and config.progress:
        print(
            "note: untrained random-weight checkpoint: metrics will be near chance", file=sys.stderr
        )
    identity = _identity(model, config)
    sources = {d.name: str(d.source) for d in datasets if d.source is not None}
    _check_resumable(config.out, identity, sources)

    protocols = PROTOCOL_CHOICES[config.protocol]
    conditions = sweep_conditions(config.robustness)
    plan = Plan(datasets, protocols, conditions, config.provenance, config.batch_size)
    store = PredictionStore(config.out / "predictions.csv")
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
        rows, datasets, protocols, conditions, bootstrap=config.bootstrap, seed=config.seed
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
        "finished_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    metrics["figures"] = plots.write_plots(config.out, rows, datasets, metrics)
    output_files.write_text(config.out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    report.write_report(config.out, metrics)
    return metrics
