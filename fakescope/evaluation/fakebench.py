"""FakeBench (Li et al., TIFS 2025): FakeClass questions and multiple-choice files.

Published layout (github.com/Yixuan423/FakeBench): images in `FakeBench_images/fake_images` and
`FakeBench_images/real_images`; `Evaluation/FakeClass.json` is a list of
`{"image_id", "question", "answer", "authenticity"}` with authenticity 0 = fake, 1 = real, and
questions either "What is the authenticity of this image, fake or real?" or yes/no templates
("Is this a fake image, yes or no?"). FakeBench publishes no multiple-choice file; one is read as
JSON/JSONL objects `{"image_id", "question", "options": [...] or {"A": ...}, "answer": "B"}`.
"""

from __future__ import annotations

import string
from pathlib import Path

from fakescope.errors import DatasetError
from fakescope.evaluation.datasets import (
    FAKE,
    IMAGE_SUFFIXES,
    REAL,
    Dataset,
    McqItem,
    Sample,
    listed_file,
    name_text,
    parse_label,
    prompt_text,
    read_json_records,
)

_IMAGE_FOLDERS = {"fake_images": FAKE, "real_images": REAL}
LABEL_SUBSET = {FAKE: "fake", REAL: "real"}


def looks_like_fakebench(root: Path) -> bool:
    return (
        (root / "FakeBench_images").is_dir()
        or root.name == "FakeBench_images"
        or (root / "Evaluation" / "FakeClass.json").is_file()
        or (root / "FakeClass.json").is_file()
    )


def find_fakeclass_json(root: Path) -> Path:
    for candidate in (root / "Evaluation" / "FakeClass.json", root / "FakeClass.json"):
        if candidate.is_file():
            return candidate
    return root  # no questions: the image folders alone


def _image_dirs(base: Path) -> list[Path]:
    """Where FakeBench images may live relative to a JSON file or a root folder."""
    dirs: list[Path] = []
    for anchor in (base, base.parent, base.parent.parent):
        for images in (anchor / "FakeBench_images", anchor):
            dirs += [images / folder for folder in _IMAGE_FOLDERS]
    return [d for d in dict.fromkeys(dirs) if d.is_dir()] + [base]


def _find_image(image_id: str, dirs: list[Path], where: str) -> Path | None:
    return next((d / image_id for d in dirs if listed_file(d / image_id, where)), None)


def _generator(image_id: str, label: int) -> str:
    """FakeBench names fakes `<generator>-<number>.<ext>` (FuseDream-00019.jpg)."""
    stem = Path(image_id).stem
    return stem.rsplit("-", 1)[0] if label == FAKE and "-" in stem else LABEL_SUBSET[label]


def read_fakeclass(
    path: Path, name: str, records: list[dict[str, object]] | None = None
) -> Dataset:
    """FakeClass.json with its images, or (given a root without the JSON) the image folders."""
    dataset = Dataset(name=name, layout="fakebench")
    if path.is_dir():
        return _read_image_folders(path, dataset)
    records = read_json_records(path) if records is None else records
    dirs = _image_dirs(path.parent)
    for number, record in enumerate(records, start=1):
        where = f"{path}: entry {number}"
        image_id = name_text(record.get("image_id") or "", where, "image_id")
        if not image_id:
            raise DatasetError(f"{where}: no image_id")
        image = _find_image(image_id, dirs, where)
        if "authenticity" in record:
            # FakeBench writes 0 for fake and 1 for real: the opposite of our 1 = fake.
            auth = str(record["authenticity"]).strip()
            if auth not in {"0", "1"}:
                raise DatasetError(f"{where}: unknown authenticity {record['authenticity']!r}")
            label = FAKE if auth == "0" else REAL
        elif "label" in record:
            label = parse_label(record["label"], where)
        elif image is not None and image.parent.name in _IMAGE_FOLDERS:
            label = _IMAGE_FOLDERS[image.parent.name]
        else:
            raise DatasetError(f"{where}: no authenticity or label for {image_id}")
        if image is None:
            dataset.missing.append(path.parent / "FakeBench_images" / image_id)
            continue
        question = prompt_text(record.get("question") or "", where, "question") or None
        key = f"{image_id}#{number}"  # an image may come back with another question
        subset = _generator(image_id, label)
        dataset.samples.append(
            Sample(path=image, label=label, subset=subset, key=key, question=question)
        )
    return dataset


def _read_image_folders(root: Path, dataset: Dataset) -> Dataset:
    base = root / "FakeBench_images" if (root / "FakeBench_images").is_dir() else root
    for folder, label in _IMAGE_FOLDERS.items():
        for image in sorted((base / folder).glob("*")):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                subset = _generator(image.name, label)
                key = f"{folder}/{image.name}"
                dataset.samples.append(Sample(path=image, label=label, subset=subset, key=key))
    if not dataset.samples:
        raise DatasetError(f"{root}: no images in FakeBench_images/{{fake_images,real_images}}")
    return dataset


def _options(record: dict[str, object], where: str) -> tuple[str, ...]:
    raw = record.get("options", record.get("choices"))
    if isinstance(raw, dict):
        return tuple(prompt_text(raw[k], where, "options") for k in sorted(raw))
    if isinstance(raw, list) and len(raw) >= 2:
        return tuple(prompt_text(o, where, "options") for o in raw)
    raise DatasetError(f"{where}: options must be a list (or an A/B/... mapping) of 2 or more")


def _answer_letter(answer: object, options: tuple[str, ...], where: str) -> str:
    letters = string.ascii_uppercase[: len(options)]
    if isinstance(answer, int) and 0 <= answer < len(options):
        return letters[answer]
    text = str(answer).strip()
    if text.upper() in letters and len(text) == 1:
        return text.upper()
    if text in options:
        return letters[options.index(text)]
    raise DatasetError(f"{where}: answer {answer!r} is not one of the options")


def read_mcq(path: Path, records: list[dict[str, object]], name: str) -> Dataset:
    """Multiple-choice questions, each about one image."""
    dataset = Dataset(name=name, layout="mcq")
    dirs = _image_dirs(path.parent)
    for number, record in enumerate(records, start=1):
        where = f"{path}: entry {number}"
        image_id = name_text(
            record.get("image_id") or record.get("image") or record.get("path") or "",
            where,
            "image_id",
        )
        question = prompt_text(record.get("question") or "", where, "question")
        if not image_id or not question:
            raise DatasetError(f"{where}: each question needs an image_id and a question")
        options = _options(record, where)
        answer = _answer_letter(record.get("answer"), options, where)
        image = _find_image(image_id, dirs, where)
        if image is None:
            dataset.missing.append(path.parent / image_id)
            continue
        key = f"{image_id}#{number}"
        dataset.mcq.append(McqItem(image, question, options, answer, key))
    return dataset
