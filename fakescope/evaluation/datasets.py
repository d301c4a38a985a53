"""Evaluation samples and the dispatcher that recognises a dataset's published layout.

A dataset argument is `PATH` or `NAME=PATH`. The layout is recognised from what PATH holds:

- a `MANIFEST.tsv`, or a folder holding one: the shared-data manifest (`../shared/data`);
- a SynthWildX `list.csv` (url,filename,typ), or a folder holding one: SynthWildX;
- a FakeBench root (`FakeBench_images/`, `Evaluation/FakeClass.json`) or `FakeClass.json`;
- a JSON/JSONL file of objects with `options`: multiple-choice questions;
- any other `.csv`, `.json` or `.jsonl` file: a generic manifest (path, label[, generator]);
- any other folder: a tree with `0_real`/`1_fake` or `real`/`fake` folders (WildRF, CNNDetection).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fakescope.errors import DatasetError
from fakescope.evaluation.output_files import NOT_A_NAME_BYTE, one_line

FAKE, REAL = 1, 0
LABEL_NAMES = {FAKE: "fake", REAL: "real"}
_LABEL_WORDS = {
    "1": FAKE, "fake": FAKE, "ai": FAKE, "generated": FAKE, "synthetic": FAKE, "1_fake": FAKE,
    "0": REAL, "real": REAL, "authentic": REAL, "camera": REAL, "0_real": REAL,
}  # fmt: skip
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)


@dataclass(frozen=True)
class Sample:
    """One labelled image. `key` is unique within its dataset and stable across runs."""

    path: Path
    label: int  # FAKE (1) or REAL (0)
    subset: str  # platform, generator or source family the metrics are broken down by
    key: str
    question: str | None = None  # the benchmark's own closed-ended question, when it has one


@dataclass(frozen=True)
class McqItem:
    """One multiple-choice question about an image; `answer` is the correct option's letter."""

    path: Path
    question: str
    options: tuple[str, ...]
    answer: str
    key: str


@dataclass
class Dataset:
    name: str
    layout: str  # folder | synthwildx | fakebench | manifest | shared_manifest | mcq
    samples: list[Sample] = field(default_factory=list)
    mcq: list[McqItem] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)  # listed but absent on disk
    source: Path | None = None  # the folder or file it was read from, resolved

    @property
    def subsets(self) -> list[str]:
        return sorted({s.subset for s in self.samples})


def parse_label(value: object, where: str) -> int:
    """Map a label as datasets write it ("fake", "1", "real", ...) to FAKE or REAL."""
    word = str(value).strip().lower()
    if word not in _LABEL_WORDS:
        raise DatasetError(f"{where}: unknown label {value!r} (expected fake/real or 1/0)")
    return _LABEL_WORDS[word]


# A JSON manifest may write "\\udXXX" escapes that stand for no character (lone surrogates).
# U+DC80..U+DCFF is how Python writes one byte of a name that is not UTF-8 (PEP 383: json.dumps
# of os.listdir() in a Latin-1 folder gives "\\udce9"): in a name (a path, a generator) it is
# that byte, carried exactly as a folder name's byte is (predictions.csv keeps it, the report
# shows `\\xe9`). Any other lone surrogate ("\\ud800", half of a pair cut in two) stands for no
# byte at all, and predictions.csv cannot hold it: the run would die at its first write. Such a
# manifest is refused as it is read, before the model loads and before --out is touched, so that
# nothing is half written; and nothing is lost or guessed: a stand-in (U+FFFD, or the text
# "\\ud800") could merge two names the manifest keeps apart.
def name_text(value: object, where: str, key: str) -> str:
    """A name read from a manifest (a path, a generator, a subset), refused when it holds a lone
    surrogate that is no byte of a name."""
    return _without(NOT_A_NAME_BYTE, str(value), where, key)


def prompt_text(value: object, where: str, key: str) -> str:
    """Text the model reads (a question, an option): every character must be one, so any lone
    surrogate is refused (the tokenizer would fail on it in the middle of the run)."""
    return _without(_LONE_SURROGATE, str(value), where, key)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without(lone: re.Pattern[str], text: str, where: str, key: str) -> str:
    found = lone.search(text)
    if found:
        raise DatasetError(
            f"{where}: {key} {text!r} holds the escape \\u{ord(found.group()):04x}, a lone "
            "surrogate that stands for no character; write the character itself"
        )
    return text


def load_dataset(spec: str, *, skip_missing: bool = False) -> Dataset:
    """Read the dataset named by `PATH` or `NAME=PATH`, recognising its layout.

    Images listed but absent raise DatasetError, unless `skip_missing` (SynthWildX is downloaded
    from X, where posts disappear): then they are left out and counted in `Dataset.missing`.
    """
    dataset = _read_layout(spec)
    dataset.source = dataset_path(spec).resolve()
    dataset.samples = _unique_keys(dataset.samples)
    dataset.mcq = _unique_keys(dataset.mcq)
    if dataset.missing and not skip_missing:
        shown = ", ".join(shown_name(p) for p in dataset.missing[:3])
        raise DatasetError(
            f"{dataset.name}: {len(dataset.missing)} listed image(s) not found ({shown}"
            f"{', ...' if len(dataset.missing) > 3 else ''}); pass --skip-missing to leave them out"
        )
    if not dataset.samples and not dataset.mcq:
        raise DatasetError(f"{dataset.name}: no images found")
    return dataset


_Item = TypeVar("_Item", Sample, McqItem)


def _unique_keys(items: list[_Item]) -> list[_Item]:
    """Keys made unique: an image listed twice (a manifest naming one file as fake and as
    real) keeps its own predictions per listing, `KEY#2` for the second, instead of both
    listings sharing (and overwriting) one row."""
    taken = {item.key for item in items}
    seen: Counter[str] = Counter()
    unique = []
    for item in items:
        seen[item.key] += 1
        if seen[item.key] == 1:
            unique.append(item)
            continue
        n = seen[item.key]
        while f"{item.key}#{n}" in taken:
            n += 1
        taken.add(f"{item.key}#{n}")
        unique.append(dataclasses.replace(item, key=f"{item.key}#{n}"))
    return unique


_SHOWN_NAME_CHARS = 160


def shown_name(path: Path) -> str:
    """A listed name as an error message shows it: on one line (a name may hold a line
    break, or a NUL in a manifest), and cut short (a manifest may hold any length)."""
    text = one_line(str(path))
    if len(text) > _SHOWN_NAME_CHARS:
        text = text[: _SHOWN_NAME_CHARS - 1] + "…"
    return text


def listed_file(path: Path, where: str) -> bool:
    """Whether a listed image is a file there; DatasetError, naming the entry, for a name the
    system refuses to look up (longer than it allows, in a folder that cannot be searched)."""
    try:
        return path.is_file()
    except OSError as exc:
        raise DatasetError(f"{where}: cannot look up {shown_name(path)}: {exc.strerror}") from exc


def _split_spec(spec: str) -> tuple[str, Path]:
    """(NAME or "", PATH) of a `PATH` or `NAME=PATH` argument."""
    name, sep, raw = spec.partition("=")
    if not sep or not name or "/" in name:  # no NAME= prefix (a path may hold "=" itself)
        name, raw = "", spec
    return name, Path(raw).expanduser()


def dataset_path(spec: str) -> Path:
    return _split_spec(spec)[1]


def _read_layout(spec: str) -> Dataset:
    from fakescope.evaluation import fakebench, readers

    name, path = _split_spec(spec)
    if not path.exists() and path.is_symlink():
        raise DatasetError(
            f"dataset not found: {path} is a symbolic link to {os.readlink(path)}, which is not "
            "there (or links back to itself)"
        )
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if not path.is_dir() and not path.is_file():
        # Reading a named pipe waits for a writer; a device (/dev/zero) never ends.
        raise DatasetError(
            f"{path}: not a folder or a regular file (a named pipe, a device?); give the "
            "dataset's folder or its manifest file"
        )
    name = name or (path.stem if path.is_file() else path.name) or "dataset"

    if path.is_dir():
        if (path / "MANIFEST.tsv").is_file():
            return readers.read_shared_manifest(path / "MANIFEST.tsv", name)
        if (path / "list.csv").is_file():
            return readers.read_synthwildx(path / "list.csv", name)
        if fakebench.looks_like_fakebench(path):
            return fakebench.read_fakeclass(fakebench.find_fakeclass_json(path), name)
        return readers.read_folder_tree(path, name)

    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return readers.read_shared_manifest(path, name)
    if suffix == ".csv":
        if readers.csv_header(path)[:2] == ["url", "filename"]:
            return readers.read_synthwildx(path, name)
        return readers.read_manifest(path, name)
    if suffix in {".json", ".jsonl"}:
        records = read_json_records(path)
        if records and all("options" in r or "choices" in r for r in records[:20]):
            return fakebench.read_mcq(path, records, name)
        if records and "image_id" in records[0] and "authenticity" in records[0]:
            return fakebench.read_fakeclass(path, name, records)
        return readers.read_manifest(path, name, records)
    raise DatasetError(f"{path}: not a dataset layout FakeScope reads (see `fakescope eval -h`)")


def read_json_records(path: Path) -> list[dict[str, object]]:
    """A JSON array of objects, or JSON Lines, as a list of dicts."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not JSON, drop it
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if path.suffix.lower() == ".jsonl":
        # Each line parsed alone: its errors name the line of the file, not "line 1".
        lines = text.splitlines()
        records = [_json(line, f"{path}:{n}") for n, line in enumerate(lines, 1) if line.strip()]
    else:
        loaded = _json(text, str(path))
        records = loaded if isinstance(loaded, list) else [loaded]
    if not all(isinstance(r, dict) for r in records):
        raise DatasetError(f"{path}: expected JSON objects, one per image")
    return records


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: invalid JSON: {exc}") from exc
    except RecursionError as exc:  # arrays or objects nested thousands deep
        raise DatasetError(f"{where}: JSON nested too deeply to be a manifest") from exc


def limit_samples(samples: list[Sample], limit: int | None, seed: int = 0) -> list[Sample]:
    """A reproducible subset of `limit` samples that keeps both classes (alternating fake/real)."""
    if limit is None or limit >= len(samples):
        return samples
    rng = random.Random(seed)
    by_label = {lab: [s for s in samples if s.label == lab] for lab in (FAKE, REAL)}
    for group in by_label.values():
        rng.shuffle(group)
    chosen: list[Sample] = []
    while len(chosen) < limit and (by_label[FAKE] or by_label[REAL]):
        for lab in (FAKE, REAL):
            if by_label[lab] and len(chosen) < limit:
                chosen.append(by_label[lab].pop())
    keep = {s.key for s in chosen}
    return [s for s in samples if s.key in keep]  # the dataset's own order
