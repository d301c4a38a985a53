"""Readers for folder trees, SynthWildX, generic manifests and the shared-data manifest."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

from fakescope.errors import DatasetError
from fakescope.evaluation.datasets import (
    FAKE,
    IMAGE_SUFFIXES,
    REAL,
    Dataset,
    Sample,
    listed_file,
    name_text,
    parse_label,
)

_FOLDER_LABELS = {"0_real": REAL, "real": REAL, "1_fake": FAKE, "fake": FAKE}
# Split folders say nothing about the subset (WildRF/test/reddit/real -> subset "reddit").
_SPLIT_NAMES = frozenset({"train", "val", "valid", "validation", "test", "testing", "eval"})
_PATH_COLUMNS = ("path", "filename", "file", "image", "image_path", "relative_path")
_SUBSET_COLUMNS = ("generator", "subset", "source", "platform", "typ")


def csv_header(path: Path) -> list[str]:
    # utf-8-sig: spreadsheet programs start their CSV exports with a byte-order mark.
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return [c.strip().lower() for c in next(csv.reader(fh), [])]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _read_csv(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            # strict: a quote left open is an error, not a field that swallows every line
            # after it (the images they list would silently be left out).
            reader = csv.DictReader(fh, delimiter=delimiter, strict=True)
            rows, ended_at = [], 0
            try:
                if reader.fieldnames is not None:  # reads the header line
                    ended_at = reader.line_num
                for row in reader:
                    rows.append(row)
                    ended_at = reader.line_num
            except csv.Error as exc:
                hint = "; a quoted field is never closed" if "end of data" in str(exc) else ""
                raise DatasetError(
                    f"{path}:{ended_at + 1}: not a readable CSV file: {exc}{hint}"
                ) from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    # Cells beyond the header (csv puts them, as a list, under the key None) are ignored.
    return [
        {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        for row in rows
    ]


def _walk(top: Path, *, labels_only: bool = False) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk, refusing a folder it cannot list: os.walk skips it without a word, and the
    images in it would be left out of the dataset unseen. With `labels_only`, only a label
    folder is refused; another (a volume's lost+found) holds none of the dataset's images, or
    a whole platform, whose absence the report shows."""

    def refuse(exc: OSError) -> None:
        if labels_only and Path(str(exc.filename)).name.lower() not in _FOLDER_LABELS:
            return
        raise DatasetError(f"{exc.filename}: cannot list this folder ({exc.strerror})") from exc

    return os.walk(top, onerror=refuse)


def _images_below(folder: Path, dataset: Dataset) -> list[Path]:
    """The image files below `folder` (symbolic links to folders not followed). A name with
    an image suffix that is no file (a link to nothing, a named pipe) counts as missing."""
    images = []
    for current, dirs, files in _walk(folder):
        dirs.sort()
        for name in files:
            path = Path(current) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if path.is_file():
                images.append(path)
            elif not path.is_dir():
                dataset.missing.append(path)
    return sorted(images)


def read_folder_tree(root: Path, name: str) -> Dataset:
    """Images under `0_real`/`1_fake` (or `real`/`fake`) folders anywhere below `root`.

    The subset is the folder path around the label folder, split names dropped:
    `WildRF/test/reddit/real/x.jpg` -> "reddit"; `cnn/1_fake/biggan/x.png` -> "biggan".
    """
    dataset = Dataset(name=name, layout="folder")
    for current, dirs, _files in _walk(root, labels_only=True):
        dirs.sort()
        here = Path(current)
        label = _FOLDER_LABELS.get(here.name.lower())
        if label is None:
            continue
        dirs.clear()  # everything below a label folder belongs to it
        outer = [p for p in here.relative_to(root).parts[:-1] if p.lower() not in _SPLIT_NAMES]
        for image in _images_below(here, dataset):
            inner = list(image.relative_to(here).parts[:-1])
            subset = "/".join(outer + inner) or "all"
            key = image.relative_to(root).as_posix()
            dataset.samples.append(Sample(path=image, label=label, subset=subset, key=key))
    if not dataset.samples and not dataset.missing:
        raise DatasetError(
            f"{root}: no images under 0_real/1_fake or real/fake folders "
            "(expected e.g. WildRF/test/reddit/{real,fake}/*.jpg)"
        )
    return dataset


def read_synthwildx(list_csv: Path, name: str) -> Dataset:
    """SynthWildX: `list.csv` (url,filename,typ) with images at `<typ>/<id>.jpg` beside it.

    `typ` is the generator (dalle3, firefly, midjourney) or `real`; the 500 real images are shared
    by the three generators, so each generator's AP is measured against all of them.
    """
    rows = _read_csv(list_csv)
    if rows and not {"filename", "typ"} <= rows[0].keys():
        raise DatasetError(f"{list_csv}: a SynthWildX list needs the columns filename and typ")
    dataset = Dataset(name=name, layout="synthwildx")
    for number, row in enumerate(rows, start=2):
        typ = row["typ"].lower()
        if not typ:
            raise DatasetError(f"{list_csv}:{number}: empty typ")
        label = REAL if typ == "real" else FAKE
        path = list_csv.parent / row["filename"]
        if not listed_file(path, f"{list_csv}:{number}"):
            dataset.missing.append(path)
            continue
        sample = Sample(path=path, label=label, subset=typ, key=row["filename"])
        dataset.samples.append(sample)
    return dataset


def read_manifest(path: Path, name: str, records: list[dict[str, object]] | None = None) -> Dataset:
    """A generic CSV or JSON/JSONL manifest: path, label and an optional generator (or subset).

    Paths are relative to the manifest's folder (or absolute).
    """
    first = 1  # JSON: the entry's number
    if records is None:
        records = [dict(row) for row in _read_csv(path)]
        first = 2  # CSV: the line number (the header is line 1)
    dataset = Dataset(name=name, layout="manifest")
    for number, record in enumerate(records, start=first):
        row = {str(k).strip().lower(): v for k, v in record.items()}
        where = f"{path}:{number}"
        column = next((c for c in _PATH_COLUMNS if row.get(c)), None)
        if column is None or "label" not in row:
            raise DatasetError(f"{where}: each entry needs a path and a label")
        key = name_text(row[column], where, column)
        image = path.parent / key
        label = parse_label(row["label"], where)
        subset_column = next((c for c in _SUBSET_COLUMNS if c in row), None)
        subset = "all"
        if subset_column is not None:
            subset = name_text(row[subset_column] or "", where, subset_column)
            subset = subset or ("fake" if label == FAKE else "real")
        if not listed_file(image, where):
            dataset.missing.append(image)
            continue
        dataset.samples.append(Sample(path=image, label=label, subset=subset, key=key))
    return dataset


def read_shared_manifest(path: Path, name: str) -> Dataset:
    """`MANIFEST.tsv` as in `../shared/data`: relative_path, label, generator_or_camera, ...

    The subset is the source family from the path (`images/fake/kolors/x.png` -> "kolors",
    `images/real/cnndetection/biggan/x.jpg` -> "cnndetection/biggan"), else generator_or_camera.
    """
    rows = _read_csv(path, delimiter="\t")
    if rows and not {"relative_path", "label"} <= rows[0].keys():
        raise DatasetError(f"{path}: a shared manifest needs the columns relative_path and label")
    dataset = Dataset(name=name, layout="shared_manifest")
    for number, row in enumerate(rows, start=2):
        where = f"{path}:{number}"
        label = parse_label(row["label"], where)
        relative = Path(row["relative_path"])
        parts = relative.parts
        family = [
            p for p in parts[:-1] if p.lower() not in {"images", "fake", "real", "0_real", "1_fake"}
        ]
        subset = "/".join(family) or row.get("generator_or_camera") or "all"
        image = path.parent / relative
        if not listed_file(image, where):
            dataset.missing.append(image)
            continue
        key = relative.as_posix()
        dataset.samples.append(Sample(path=image, label=label, subset=subset, key=key))
    return dataset
