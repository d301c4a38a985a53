"""Each published dataset layout, built small by the test, reads into the right samples."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_helpers import write_json, write_png

from fakescope.errors import DatasetError
from fakescope.evaluation.datasets import FAKE, REAL, limit_samples, load_dataset


def _by_key(dataset):
    return {s.key: s for s in dataset.samples}


def test_wildrf_tree_gives_one_subset_per_platform_and_ignores_split_folders(
    tmp_path: Path,
) -> None:
    root = tmp_path / "WildRF"
    for platform in ("reddit", "facebook", "twitter"):
        write_png(root / "test" / platform / "real" / "a.png", 10)
        write_png(root / "test" / platform / "fake" / "b.jpg.png", 200)
    dataset = load_dataset(str(root))
    assert dataset.layout == "folder"
    assert dataset.name == "WildRF"
    assert dataset.subsets == ["facebook", "reddit", "twitter"]
    samples = _by_key(dataset)
    assert samples["test/reddit/real/a.png"].label == REAL
    assert samples["test/reddit/fake/b.jpg.png"].label == FAKE
    assert len(samples) == 6


def test_cnndetection_style_tree_with_0_real_1_fake_and_generators_inside(tmp_path: Path) -> None:
    write_png(tmp_path / "cnn" / "biggan" / "0_real" / "r.png")
    write_png(tmp_path / "cnn" / "biggan" / "1_fake" / "f.png")
    write_png(tmp_path / "gen" / "1_fake" / "sdxl" / "f.png")
    write_png(tmp_path / "gen" / "0_real" / "r.png")
    cnn = load_dataset(str(tmp_path / "cnn"))
    assert {(s.subset, s.label) for s in cnn.samples} == {("biggan", REAL), ("biggan", FAKE)}
    gen = load_dataset(f"mine={tmp_path / 'gen'}")
    assert gen.name == "mine"
    assert {(s.subset, s.label) for s in gen.samples} == {("sdxl", FAKE), ("all", REAL)}


def test_folder_without_label_folders_is_a_clear_error(tmp_path: Path) -> None:
    write_png(tmp_path / "photos" / "x.png")
    with pytest.raises(DatasetError, match="0_real/1_fake"):
        load_dataset(str(tmp_path / "photos"))


def test_missing_dataset_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(str(tmp_path / "nowhere"))


def _synthwildx(root: Path, with_missing: bool = False) -> Path:
    lines = ["url,filename,typ"]
    for typ in ("dalle3", "firefly", "midjourney", "real"):
        for i in range(2):
            name = f"{typ}/{typ}{i}.jpg"
            write_png(root / name, 50 + i)
            lines.append(f"https://pbs.twimg.com/media/x{i}?format=jpg&name=large,{name},{typ}")
    if with_missing:
        lines.append("https://pbs.twimg.com/media/gone,dalle3/gone.jpg,dalle3")
    (root / "list.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_synthwildx_list_csv_gives_generators_and_shared_reals(tmp_path: Path) -> None:
    root = _synthwildx(tmp_path / "synthwildx")
    for spec in (str(root), str(root / "list.csv")):
        dataset = load_dataset(spec)
        assert dataset.layout == "synthwildx"
        assert dataset.subsets == ["dalle3", "firefly", "midjourney", "real"]
        assert sum(s.label == FAKE for s in dataset.samples) == 6
        assert all(s.label == REAL for s in dataset.samples if s.subset == "real")


def test_images_missing_from_a_list_are_an_error_unless_skipped(tmp_path: Path) -> None:
    root = _synthwildx(tmp_path / "synthwildx", with_missing=True)
    with pytest.raises(DatasetError, match=r"1 listed image\(s\) not found.*--skip-missing"):
        load_dataset(str(root))
    dataset = load_dataset(str(root), skip_missing=True)
    assert len(dataset.samples) == 8
    assert [p.name for p in dataset.missing] == ["gone.jpg"]


def _fakebench(root: Path) -> Path:
    write_png(root / "FakeBench_images" / "fake_images" / "FuseDream-00019.jpg", 220)
    write_png(root / "FakeBench_images" / "fake_images" / "dalle3-01134.png", 230)
    write_png(root / "FakeBench_images" / "real_images" / "n02088094_515.JPEG", 20)
    write_json(
        root / "Evaluation" / "FakeClass.json",
        [
            {
                "image_id": "FuseDream-00019.jpg",
                "question": "What is the authenticity of this image, fake or real?",
                "answer": "",
                "authenticity": 0,
            },
            {
                "image_id": "dalle3-01134.png",
                "question": "Is this a fake image, yes or no?",
                "answer": "",
                "authenticity": 0,
            },
            {
                "image_id": "n02088094_515.JPEG",
                "question": "Is this a fake image, yes or no?",
                "answer": "",
                "authenticity": 1,
            },
        ],
    )
    return root


def test_fakebench_fakeclass_reads_authenticity_zero_as_fake_and_keeps_questions(
    tmp_path: Path,
) -> None:
    root = _fakebench(tmp_path / "FakeBench")
    for spec in (str(root), str(root / "Evaluation" / "FakeClass.json")):
        dataset = load_dataset(spec)
        assert dataset.layout == "fakebench"
        by_image = {s.path.name: s for s in dataset.samples}
        assert by_image["FuseDream-00019.jpg"].label == FAKE
        assert by_image["FuseDream-00019.jpg"].subset == "FuseDream"
        assert by_image["n02088094_515.JPEG"].label == REAL
        assert by_image["n02088094_515.JPEG"].subset == "real"
        assert by_image["dalle3-01134.png"].question == "Is this a fake image, yes or no?"


def test_fakebench_images_without_the_json_read_from_their_folders(tmp_path: Path) -> None:
    root = _fakebench(tmp_path / "FakeBench")
    (root / "Evaluation" / "FakeClass.json").unlink()
    dataset = load_dataset(str(root))
    assert sorted((s.path.name, s.label, s.question) for s in dataset.samples) == [
        ("FuseDream-00019.jpg", FAKE, None),
        ("dalle3-01134.png", FAKE, None),
        ("n02088094_515.JPEG", REAL, None),
    ]


def test_fakeclass_with_an_unknown_authenticity_is_an_error(tmp_path: Path) -> None:
    root = _fakebench(tmp_path / "FakeBench")
    write_json(
        root / "Evaluation" / "FakeClass.json",
        [{"image_id": "FuseDream-00019.jpg", "question": "q", "authenticity": 7}],
    )
    with pytest.raises(DatasetError, match="unknown authenticity"):
        load_dataset(str(root))


def test_multiple_choice_json_reads_options_and_normalises_the_answer(tmp_path: Path) -> None:
    root = _fakebench(tmp_path / "FakeBench")
    path = write_json(
        root / "mcq.json",
        [
            {
                "image_id": "FuseDream-00019.jpg",
                "question": "Which flaw is visible?",
                "options": ["none", "warped text", "extra fingers"],
                "answer": "warped text",
            },
            {
                "image_id": "n02088094_515.JPEG",
                "question": "Is the lighting consistent?",
                "choices": {"A": "yes", "B": "no"},
                "answer": 0,
            },
        ],
    )
    dataset = load_dataset(str(path))
    assert dataset.layout == "mcq"
    assert [(m.answer, m.options) for m in dataset.mcq] == [
        ("B", ("none", "warped text", "extra fingers")),
        ("A", ("yes", "no")),
    ]


def test_multiple_choice_answer_outside_the_options_is_an_error(tmp_path: Path) -> None:
    root = _fakebench(tmp_path / "FakeBench")
    path = write_json(
        root / "mcq.json",
        [{"image_id": "dalle3-01134.png", "question": "q", "options": ["a", "b"], "answer": "E"}],
    )
    with pytest.raises(DatasetError, match="not one of the options"):
        load_dataset(str(path))


def test_generic_csv_and_jsonl_manifests_with_optional_generator(tmp_path: Path) -> None:
    write_png(tmp_path / "imgs" / "a.png")
    write_png(tmp_path / "imgs" / "b.png")
    csv_path = tmp_path / "set.csv"
    csv_path.write_text("path,label,generator\nimgs/a.png,fake,sdxl\nimgs/b.png,0,\n")
    dataset = load_dataset(str(csv_path))
    assert dataset.layout == "manifest"
    assert [(s.key, s.label, s.subset) for s in dataset.samples] == [
        ("imgs/a.png", FAKE, "sdxl"),
        ("imgs/b.png", REAL, "real"),
    ]
    jsonl = tmp_path / "set.jsonl"
    jsonl.write_text(
        '{"path": "imgs/a.png", "label": "real"}\n{"path": "imgs/b.png", "label": 1}\n'
    )
    assert [(s.label, s.subset) for s in load_dataset(str(jsonl)).samples] == [
        (REAL, "all"),
        (FAKE, "all"),
    ]


def test_manifest_with_an_unknown_label_names_the_line(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    path = tmp_path / "set.csv"
    path.write_text("path,label\na.png,real\na.png,maybe\n")
    # Line 3 of the file: the header is line 1, as in a text editor.
    with pytest.raises(DatasetError, match=r"set.csv:3: unknown label 'maybe'"):
        load_dataset(str(path))


def test_manifests_saved_with_a_byte_order_mark_read_like_plain_utf8(tmp_path: Path) -> None:
    # Spreadsheet programs (Excel's "CSV UTF-8") start the file with a BOM.
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    csv_path = tmp_path / "set.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfpath,label\r\na.png,fake\r\nb.png,real\r\n")
    assert [(s.key, s.label) for s in load_dataset(str(csv_path)).samples] == [
        ("a.png", FAKE),
        ("b.png", REAL),
    ]
    json_path = tmp_path / "set.json"
    json_path.write_bytes(b'\xef\xbb\xbf[{"path": "a.png", "label": 1}]')
    assert [s.label for s in load_dataset(str(json_path)).samples] == [FAKE]


def test_a_manifest_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    for name in ("set.csv", "set.json", "MANIFEST.tsv"):
        path = tmp_path / name
        path.write_bytes(b"\xff\xfepath,label\n")
        with pytest.raises(DatasetError, match=rf"{name}: not UTF-8 text"):
            load_dataset(str(path))


def test_cells_beyond_the_header_are_ignored(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    path = tmp_path / "set.csv"
    path.write_text("path,label\na.png,fake,an extra note\n")
    assert [(s.key, s.label, s.subset) for s in load_dataset(str(path)).samples] == [
        ("a.png", FAKE, "all")
    ]


def test_shared_manifest_subsets_are_source_families(tmp_path: Path) -> None:
    write_png(tmp_path / "images" / "fake" / "kolors" / "k.png")
    write_png(tmp_path / "images" / "real" / "cnndetection" / "biggan" / "r.jpg")
    (tmp_path / "MANIFEST.tsv").write_text(
        "relative_path\tlabel\tgenerator_or_camera\n"
        "images/fake/kolors/k.png\tfake\tKolors\n"
        "images/real/cnndetection/biggan/r.jpg\treal\tImageNet photo\n"
    )
    dataset = load_dataset(str(tmp_path))
    assert dataset.layout == "shared_manifest"
    assert [(s.subset, s.label) for s in dataset.samples] == [
        ("kolors", FAKE),
        ("cnndetection/biggan", REAL),
    ]


@pytest.mark.shared_data
def test_shared_data_manifest_reads_all_344_images(shared_data: Path) -> None:
    dataset = load_dataset(str(shared_data))
    assert len(dataset.samples) == 344
    assert sum(s.label == FAKE for s in dataset.samples) == 203
    assert "cnndetection/biggan" in dataset.subsets


def test_limit_keeps_both_classes_reproducibly(tmp_path: Path) -> None:
    for i in range(10):
        write_png(tmp_path / "d" / "fake" / f"f{i}.png", i)
    for i in range(3):
        write_png(tmp_path / "d" / "real" / f"r{i}.png", i)
    samples = load_dataset(str(tmp_path / "d")).samples
    chosen = limit_samples(samples, 6, seed=0)
    assert len(chosen) == 6
    assert sum(s.label == REAL for s in chosen) == 3
    assert chosen == limit_samples(samples, 6, seed=0)
    assert limit_samples(samples, None) == samples
