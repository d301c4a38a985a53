"""Batched, resumable predictions: every finished batch is appended to `predictions.csv`.

A row is identified by (dataset, key, condition, protocol). A re-run in the same output folder
reads the file, skips what is there and continues; a crash loses at most the batch in flight.
Rows of images that could not be read or decoded are not kept: a re-run reads them again.
Each row also keeps the SHA-256 of the image's bytes, hashed from the bytes read for the model
(no second read), so that identical images under both labels can be found.
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
from fakescope.evaluation.output_files import naming, write_text
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
    "sha256",
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
# The error of a row whose image was read, but the model gave no finite p_fake: not redone.
NON_FINITE_SCORE = "NonFiniteScore"
# The columns before the sha256 one was added: such a file is upgraded in place when resumed
# (its images are hashed when the metrics need them).
_FIELDS_WITHOUT_SHA256 = tuple(f for f in FIELDS if f != "sha256")
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
        # Read back whatever was written: a manifest's names (a subset, a path) may be longer
        # than the csv module's default cap on a field (128 KiB), and the file is in memory.
        csv.field_size_limit(max(csv.field_size_limit(), len(decoded)))
        reader = csv.DictReader(io.StringIO(decoded, newline=""))
        columns = tuple(reader.fieldnames or FIELDS)
        if columns not in (FIELDS, _FIELDS_WITHOUT_SHA256):
            shown = repr(reader.fieldnames)
            raise PredictionsFormatError(
                f"{self.path} has the columns {shown[:300]}{'...' * (len(shown) > 300)}, not "
                f"{list(FIELDS)}: it was written by another version (or is no predictions file); "
                "use another --out folder, or --fresh to clear it"
            )
        kept = 0
        for row in reader:
            kept += 1
            whole = None not in row.values() and len(row) == len(columns) and _numbers_read(row)
            if whole and not _unread(row):
                self.rows[row_id(row)] = {"sha256": "", **row}
        if complete != raw or kept != len(self.rows) or columns != FIELDS:
            # Half a row was cut (a generated answer may hold line breaks, so what is left can
            # end inside a quoted field, which would swallow every row appended after it):
            # keep the whole rows only. A file without the sha256 column gets it (empty).
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows.values())
            write_text(self.path, text.getvalue(), errors=_NAME_BYTES)

    def done(self, rid: RowId) -> bool:
        return rid in self.rows

    def append(self, rows: Sequence[dict[str, str]]) -> None:
        new_file = not self.path.is_file() or self.path.stat().st_size == 0
        try:
            with self.path.open("a", newline="", encoding="utf-8", errors=_NAME_BYTES) as fh:
                writer = csv.DictWriter(fh, fieldnames=FIELDS)
                if new_file:
                    writer.writeheader()
                writer.writerows(rows)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # a full disk: what reached the file is dropped when resumed
            raise naming(exc, self.path) from exc
        for row in rows:
            self.rows[row_id(row)] = row


def _unread(row: dict[str, str]) -> bool:
    """A row of an image that could not be read or decoded: dropped when the run resumes, and
    the image read again (a file restored, or made readable, since is measured then)."""
    return bool(row["error"]) and not row["error"].startswith(NON_FINITE_SCORE)


def _numbers_read(row: dict[str, str]) -> bool:
    """Whether the row's scores read as numbers (or are empty): a row damaged by hand or by a
    disk is dropped, and redone, like half a row, instead of failing the metrics at the end."""
    try:
        for column in ("p_fake", "score"):
            if row[column]:
                float(row[column])
    except ValueError:
        return False
    return True


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
    sha256: str  # of the file's bytes; empty when they could not be read
    error: str


_Loaded = tuple["Image.Image | None", "Inspection | None", str, str]


def _fmt(value: float | None) -> str:
    """A score as the metrics will read it back: every digit (Python's shortest exact form).
    Six decimals would make ties of a confident model's scores (1 - 1e-9 and 1 - 1e-8 both
    "1.000000") and change its AP and ROC-AUC."""
    return "" if value is None else repr(float(value))


def _base_row(prepared: _Prepared, protocol: str) -> dict[str, str]:
    work = prepared.work
    item = work.item
    return {
        **dict.fromkeys(FIELDS, ""),
        "dataset": work.dataset,
        "subset": item.subset if isinstance(item, Sample) else "mcq",
        "key": item.key,
        "path": str(item.path),
        "sha256": prepared.sha256,
        "label": LABEL_NAMES[item.label] if isinstance(item, Sample) else item.answer,
        "condition": work.condition,
        "protocol": protocol,
    }


def _wanted(plan: Plan) -> Iterator[tuple[str, Sample | McqItem, str, tuple[str, ...]]]:
    """(dataset, item, condition, protocols): every row the plan reports, image by image."""
    # Degradations are scored for AP only: the closed protocol runs on clean images.
    swept = tuple(p for p in plan.protocols if p == QUANTITATIVE)
    for dataset in plan.datasets:
        for sample in dataset.samples:
            for condition in plan.conditions:
                wanted = tuple(plan.protocols) if condition == CLEAN else swept
                yield dataset.name, sample, condition, wanted
        for item in dataset.mcq:
            yield dataset.name, item, CLEAN, (MCQ,)


def planned_ids(plan: Plan) -> set[RowId]:
    """The rows of `predictions.csv` that the plan's report covers."""
    return {
        (name, item.key, condition, protocol)
        for name, item, condition, wanted in _wanted(plan)
        for protocol in wanted
    }


def _pending(store: PredictionStore, plan: Plan) -> Iterator[_Work]:
    """Image by image, every condition of an image together (it is decoded once: see
    `run_predictions`)."""
    for name, item, condition, wanted in _wanted(plan):
        todo = tuple(p for p in wanted if not store.done((name, item.key, condition, p)))
        if todo:
            yield _Work(name, item, condition, todo)


def _load(path: Path, provenance: bool) -> _Loaded:
    """(image, inspection, SHA-256 of the bytes, error): the hash comes with the decoding, or
    from the bytes when they are not an image."""
    from fakescope.analysis import inspect_image
    from fakescope.images import decode_image, read_image_bytes, sha256_hex

    try:
        data = read_image_bytes(path)
    except (FakeScopeError, OSError) as exc:
        return None, None, "", f"{type(exc).__name__}: {exc}"
    try:
        if provenance:
            inspection = inspect_image(data)
            return inspection.image.rgb, inspection, inspection.image.sha256, ""
        decoded = decode_image(data)
        return decoded.rgb, None, decoded.sha256, ""
    except (FakeScopeError, OSError) as exc:
        return None, None, sha256_hex(data), f"{type(exc).__name__}: {exc}"


def _prepare(
    batch: Sequence[_Work], provenance: bool, loaded: dict[Path, _Loaded]
) -> list[_Prepared]:
    """Each condition's pixels, from the image decoded once: `loaded` holds the images already
    decoded (the clean pass and every degradation start from the same decoded copy)."""
    prepared = []
    for work in batch:
        if work.item.path not in loaded:
            loaded[work.item.path] = _load(work.item.path, provenance)
        image, inspection, sha256, error = loaded[work.item.path]
        if image is not None:
            image = parse_degradation(work.condition).apply(image)
        # Degraded copies lose their metadata, as re-encoded images do on the way.
        inspection = inspection if work.condition == CLEAN else None
        prepared.append(_Prepared(work, image, inspection, sha256, error))
    return prepared


def _predict_batch(
    model: EvalModel, batch: list[_Prepared], provenance: bool
) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for protocol in (QUANTITATIVE, CLOSED, MCQ):
        members = [p for p in batch if protocol in p.work.todo]
        for failed in (p for p in members if p.image is None):
            rows.append({**_base_row(failed, protocol), "error": failed.error})
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
        row = _base_row(prepared, MCQ)
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
            {**_base_row(prepared, protocol), "error": f"{NON_FINITE_SCORE}: p_fake = {p}"}
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
        row = _base_row(prepared, protocol)
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
        loaded: dict[Path, _Loaded] = {}
        for start in range(0, len(pending), plan.batch_size):
            work = pending[start : start + plan.batch_size]
            batch = _prepare(work, plan.provenance, loaded)
            store.append(_predict_batch(model, batch, plan.provenance))
            bar.update(len(batch))
            # An image's conditions come one after another, and a batch may end among them
            # (12 conditions, 8 per batch): the last image stays decoded for the next batch.
            last = work[-1].item.path
            loaded = {last: loaded[last]}
    return len(pending)


def image_hashes(store: PredictionStore, datasets: Sequence[Dataset]) -> dict[tuple[str, str], str]:
    """(dataset, key) -> SHA-256 of each labelled image's bytes, as its rows recorded it.

    Rows written before the column existed have none: those images are read here (up to the
    byte cap). An image whose bytes could not be read has no hash (and is not read again).
    """
    from fakescope.images import read_image_bytes, sha256_hex

    hashes: dict[tuple[str, str], str] = {}
    unhashed: set[tuple[str, str]] = set()
    for row in store.rows.values():
        if row["sha256"]:
            hashes[row["dataset"], row["key"]] = row["sha256"]
        elif not row["error"]:  # measured, by a version that did not hash
            unhashed.add((row["dataset"], row["key"]))
    unhashed -= hashes.keys()
    for dataset in datasets:
        for sample in dataset.samples:
            if (dataset.name, sample.key) in unhashed:
                try:
                    hashes[dataset.name, sample.key] = sha256_hex(read_image_bytes(sample.path))
                except (FakeScopeError, OSError):
                    continue
    return hashes
