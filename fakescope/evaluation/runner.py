"""Batched, resumable predictions: every finished batch is appended to `predictions.csv`.

A row is identified by (dataset, key, condition, protocol). A re-run in the same output folder
reads the file, skips what is there and continues; a crash loses at most the batch in flight.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fakescope.errors import FakeScopeError
from fakescope.evaluation import protocols
from fakescope.evaluation.datasets import LABEL_NAMES, Dataset, McqItem, Sample
from fakescope.evaluation.output_files import write_text
from fakescope.evaluation.protocols import CLOSED, MCQ, QUANTITATIVE, EvalModel
from fakescope.evaluation.robustness import CLEAN, parse_degradation

if TYPE_CHECKING:
    from PIL import Image

    from fakescope.analysis import Inspection

FIELDS = (
    "dataset",
    "subset",
    "key",
    "path",
    "label",
    "condition",
    "protocol",
    "p_fake",
    "model_label",
    "score",
    "predicted",
    "decided_by",
    "answer",
    "error",
)
RowId = tuple[str, str, str, str]
# A file name that is not UTF-8 reaches Python as lone surrogates (PEP 383): its row keeps the
# name's own bytes, so that a resumed run finds the row again (strict UTF-8 could not write it).
_NAME_BYTES = "surrogateescape"


class PredictionsFormatError(FakeScopeError):
    """`predictions.csv` in the output folder does not have this version's columns."""


def row_id(row: dict[str, str]) -> RowId:
    return (row["dataset"], row["key"], row["condition"], row["protocol"])


class PredictionStore:
    """`predictions.csv`, appended batch by batch and flushed to disk each time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[RowId, dict[str, str]] = {}
        if path.is_file():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]  # a crash may leave half a line: drop it
        decoded = complete.decode("utf-8", _NAME_BYTES)
        reader = csv.DictReader(io.StringIO(decoded, newline=""))
        if reader.fieldnames is not None and tuple(reader.fieldnames) != FIELDS:
            raise PredictionsFormatError(
                f"{self.path} has the columns {reader.fieldnames}, not {list(FIELDS)}: it was "
                "written by another version; use another --out folder (or delete it)"
            )
        kept = 0
        for row in reader:
            kept += 1
            if None not in row.values() and len(row) == len(FIELDS):
                self.rows[row_id(row)] = row
        if complete != raw or kept != len(self.rows):
            # Half a row was cut (a generated answer may hold line breaks, so what is left can
            # end inside a quoted field, which would swallow every row appended after it):
            # keep the whole rows only.
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows.values())
            write_text(self.path, text.getvalue(), errors=_NAME_BYTES)

    def done(self, rid: RowId) -> bool:
        return rid in self.rows

    def append(self, rows: Sequence[dict[str, str]]) -> None:
        new_file = not self.path.is_file() or self.path.stat().st_size == 0
        with self.path.open("a", newline="", encoding="utf-8", errors=_NAME_BYTES) as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            if new_file:
                writer.writeheader()
            writer.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        for row in rows:
            self.rows[row_id(row)] = row


@dataclass(frozen=True)
class Plan:
    datasets: Sequence[Dataset]
    protocols: Sequence[str]  # quantitative and/or closed
    conditions: Sequence[str]  # "clean" first, then degradations
    provenance: bool
    batch_size: int = 8


@dataclass(frozen=True)
class _Work:
    """One image under one condition, with the protocols it still needs."""

    dataset: str
    item: Sample | McqItem
    condition: str
    todo: tuple[str, ...]


@dataclass
class _Prepared:
    work: _Work
    image: Image.Image | None
    inspection: Inspection | None
    error: str


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _base_row(work: _Work, protocol: str) -> dict[str, str]:
    item = work.item
    return {
        **dict.fromkeys(FIELDS, ""),
        "dataset": work.dataset,
        "subset": item.subset if isinstance(item, Sample) else "mcq",
        "key": item.key,
        "path": str(item.path),
        "label": LABEL_NAMES[item.label] if isinstance(item, Sample) else item.answer,
        "condition": work.condition,
        "protocol": protocol,
    }


def _pending(store: PredictionStore, plan: Plan) -> Iterator[_Work]:
    """Image by image, every condition of an image together (it is decoded once per batch)."""
    # Degradations are scored for AP only: the closed protocol runs on clean images.
    swept = tuple(p for p in plan.protocols if p == QUANTITATIVE)
    for dataset in plan.datasets:
        for sample in dataset.samples:
            for condition in plan.conditions:
                wanted = tuple(plan.protocols) if condition == CLEAN else swept
                todo = tuple(
                    p for p in wanted if not store.done((dataset.name, sample.key, condition, p))
                )
                if todo:
                    yield _Work(dataset.name, sample, condition, todo)
        for item in dataset.mcq:
            if not store.done((dataset.name, item.key, CLEAN, MCQ)):
                yield _Work(dataset.name, item, CLEAN, (MCQ,))


def _load(path: Path, provenance: bool) -> tuple[Image.Image | None, Inspection | None, str]:
    from fakescope.analysis import inspect_image
    from fakescope.images import decode_image, read_image_bytes

    try:
        data = read_image_bytes(path)
        if provenance:
            inspection = inspect_image(data)
            return inspection.image.rgb, inspection, ""
        return decode_image(data).rgb, None, ""
    except (FakeScopeError, OSError) as exc:
        return None, None, f"{type(exc).__name__}: {exc}"


def _prepare(batch: Sequence[_Work], provenance: bool) -> list[_Prepared]:
    loaded: dict[Path, tuple[Image.Image | None, Inspection | None, str]] = {}
    prepared = []
    for work in batch:
        if work.item.path not in loaded:
            loaded[work.item.path] = _load(work.item.path, provenance)
        image, inspection, error = loaded[work.item.path]
        if image is not None:
            image = parse_degradation(work.condition).apply(image)
        # Degraded copies lose their metadata, as re-encoded images do on the way.
        inspection = inspection if work.condition == CLEAN else None
        prepared.append(_Prepared(work, image, inspection, error))
    return prepared


def _predict_batch(
    model: EvalModel, batch: list[_Prepared], provenance: bool
) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for protocol in (QUANTITATIVE, CLOSED, MCQ):
        members = [p for p in batch if protocol in p.work.todo]
        for failed in (p for p in members if p.image is None):
            rows.append({**_base_row(failed.work, protocol), "error": failed.error})
        ok = [p for p in members if p.image is not None]
        if ok:
            rows += _run_protocol(model, ok, protocol, provenance)
    return rows


def _run_mcq(
    model: EvalModel, ok: list[_Prepared], images: list[Image.Image]
) -> list[dict[str, str]]:
    items = [p.work.item for p in ok if isinstance(p.work.item, McqItem)]
    prompts = [protocols.mcq_prompt(i.question, i.options) for i in items]
    answers = model.generate_batch(images, prompts, max_new_tokens=protocols.CLOSED_MAX_NEW_TOKENS)
    rows = []
    for prepared, item, answer in zip(ok, items, answers, strict=True):
        letter = protocols.parse_mcq_answer(answer, len(item.options)) or ""
        row = _base_row(prepared.work, MCQ)
        rows.append({**row, "predicted": letter, "model_label": letter, "answer": answer})
    return rows


def _run_protocol(
    model: EvalModel, ok: list[_Prepared], protocol: str, provenance: bool
) -> list[dict[str, str]]:
    images = [p.image for p in ok if p.image is not None]
    if protocol == MCQ:
        return _run_mcq(model, ok, images)
    rows: list[dict[str, str]] = []
    if protocol == QUANTITATIVE:
        scored = [float(p) for p in model.score(images)]
        # A NaN would rank anywhere and read "real": that image failed, and its row says so.
        rows += [
            {**_base_row(prepared.work, protocol), "error": f"NonFiniteScore: p_fake = {p}"}
            for prepared, p in zip(ok, scored, strict=True)
            if not math.isfinite(p)
        ]
        ok = [prepared for prepared, p in zip(ok, scored, strict=True) if math.isfinite(p)]
        p_fakes: list[float | None] = [p for p in scored if math.isfinite(p)]
        results = [(protocols.word_of(p), "") for p in scored if math.isfinite(p)]
    else:
        questions = [p.work.item.question if isinstance(p.work.item, Sample) else None for p in ok]
        results = protocols.closed(model, images, questions)
        p_fakes = [None] * len(ok)
    for prepared, p_fake, (word, answer) in zip(ok, p_fakes, results, strict=True):
        by_provenance = provenance and protocols.apply_provenance(
            prepared.inspection, model.info, p_fake
        )
        score = 1.0 if by_provenance and p_fake is not None else p_fake
        row = _base_row(prepared.work, protocol)
        row["p_fake"], row["score"] = _fmt(p_fake), _fmt(score)
        row["model_label"], row["answer"] = word, answer
        row["predicted"] = protocols.FAKE_WORD if by_provenance else word
        row["decided_by"] = "provenance" if by_provenance else "model"
        rows.append(row)
    return rows


def run_predictions(
    model: EvalModel, plan: Plan, store: PredictionStore, *, progress: bool = True
) -> int:
    """Predict everything the store lacks; returns how many (image, condition) pairs were run."""
    from tqdm import tqdm

    pending = list(_pending(store, plan))
    with tqdm(
        total=len(pending), desc="evaluating", unit="image", file=sys.stderr, disable=not progress
    ) as bar:
        for start in range(0, len(pending), plan.batch_size):
            batch = _prepare(pending[start : start + plan.batch_size], plan.provenance)
            store.append(_predict_batch(model, batch, plan.provenance))
            bar.update(len(batch))
    return len(pending)
