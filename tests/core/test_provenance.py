"""read_provenance: what real files and hand-made traps say about how an image was made.
C2PA has its own file, test_provenance_c2pa.py."""

from __future__ import annotations

import codecs
import json
import time
import zlib
from pathlib import Path

import hostile_images as hostile
import pytest
from PIL import Image
from provenance_checks import kinds, only, read_row, rows_where

from fakescope.evidence import Evidence, Indication, Strength
from fakescope.provenance import read_provenance

WEBUI_PARAMETERS = (
    "a watercolour fox in the snow, highly detailed\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567, Size: 512x768, "
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "fox: 1a2b", Version: v1.9.4'
)


# Real files from ../shared/data


def test_comfyui_pngs_carry_a_strong_workflow_finding_naming_the_model(
    shared_data: Path, manifest_rows: list[dict[str, str]]
) -> None:
    rows = rows_where(manifest_rows, has_provenance_metadata="PNGtext:prompt")
    assert len(rows) == 14
    for row in rows:
        finding = only(read_row(shared_data, row), "comfyui_workflow")
        assert (finding.indicates, finding.strength) == (Indication.FAKE, Strength.STRONG)
        assert finding.details["chunks"] == ["prompt", "workflow"]
        assert finding.details["models"], row["relative_path"]
        assert finding.details["node_count"] > 0
        assert len(finding.summary) <= 200


def test_comfyui_finding_names_the_checkpoint_loader_and_the_sampler(shared_data: Path) -> None:
    path = shared_data / "images/fake/comfyui_examples/flux__flux_schnell_example.png"
    finding = only(read_provenance(path.read_bytes()), "comfyui_workflow")
    assert finding.details["models"] == ["flux1-schnell.safetensors"]
    assert "flux1-schnell.safetensors" in finding.summary
    sdxl = shared_data / "images/fake/comfyui_examples/sdxl__sdxl_simple_example.png"
    details = only(read_provenance(sdxl.read_bytes()), "comfyui_workflow").details
    assert details["models"] == ["sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors"]
    assert details["samplers"] and "sampler_name" in details["samplers"][0]


def test_stable_diffusion_samples_without_metadata_claim_nothing(
    shared_data: Path, manifest_rows: list[dict[str, str]]
) -> None:
    # The official CompVis samples carry no text chunks: provenance must not invent a claim,
    # the model has to decide these.
    rows = rows_where(manifest_rows, source_repo="CompVis/stable-diffusion", label="fake")
    for row in rows:
        assert read_row(shared_data, row) == []


def test_camera_jpegs_give_weak_real_camera_evidence_matching_the_manifest(
    shared_data: Path, manifest_rows: list[dict[str, str]]
) -> None:
    rows = rows_where(manifest_rows, has_provenance_metadata="EXIF camera=")
    assert len(rows) >= 15
    for row in rows:
        camera = only(read_row(shared_data, row), "camera_exif")
        assert (camera.indicates, camera.strength) == (Indication.REAL, Strength.WEAK)
        expected = row["has_provenance_metadata"].split("EXIF camera=")[1].split(" | ")[0]
        found = f"{camera.details.get('make', '')} {camera.details.get('model', '')}"
        assert found.split() == expected.split(), row["relative_path"]


def test_no_real_image_in_the_manifest_gets_fake_evidence(
    shared_data: Path, manifest_rows: list[dict[str, str]]
) -> None:
    real_rows = [r for r in manifest_rows if r["label"] == "real"]
    assert len(real_rows) > 100
    false_alarms: dict[str, list[str]] = {}
    for row in real_rows:
        fake = [f.summary for f in read_row(shared_data, row) if f.indicates is Indication.FAKE]
        if fake:
            false_alarms[row["relative_path"]] = fake
    assert false_alarms == {}


def test_every_finding_on_the_dataset_is_json_ready_and_short(
    shared_data: Path, manifest_rows: list[dict[str, str]]
) -> None:
    for row in manifest_rows:
        if row["has_provenance_metadata"] == "no":
            continue
        for finding in read_row(shared_data, row):
            encoded = json.dumps(finding.to_dict())
            assert len(finding.summary) <= 200
            assert len(encoded) < 20_000, row["relative_path"]


# Generator text written by the tests


def test_webui_parameters_chunk_is_strong_fake_evidence_with_parsed_settings() -> None:
    png = hostile.encode(hostile.scene(), "PNG")
    data = hostile.png_with_chunks(png, hostile.text_chunk("parameters", WEBUI_PARAMETERS))
    finding = only(read_provenance(data), "generator_parameters")
    assert (finding.indicates, finding.strength) == (Indication.FAKE, Strength.STRONG)
    assert finding.source == "png:parameters"
    details = finding.details
    assert details["model"] == "v1-5-pruned-emaonly"
    assert details["steps"] == "28"
    assert details["sampler"] == "DPM++ 2M Karras"
    assert details["seed"] == "1234567"
    assert details["prompt"].startswith("a watercolour fox")
    assert details["negative_prompt"] == "blurry, lowres"


def test_webui_parameters_after_the_pixel_data_are_found_too() -> None:
    png = hostile.encode(hostile.scene(), "PNG")
    iend = png.rindex(b"IEND") - 4
    data = png[:iend] + hostile.text_chunk("parameters", WEBUI_PARAMETERS) + png[iend:]
    assert "generator_parameters" in kinds(read_provenance(data))


@pytest.mark.parametrize(
    ("fmt", "encoding", "prefix"),
    [
        ("JPEG", "utf-16-be", b"UNICODE\x00"),
        ("WEBP", "utf-16-le", b"UNICODE\x00"),
        ("JPEG", "ascii", b"ASCII\x00\x00\x00"),
    ],
)
def test_webui_parameters_in_exif_user_comment_are_strong_fake_evidence(
    fmt: str, encoding: str, prefix: bytes
) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = prefix + WEBUI_PARAMETERS.encode(encoding)
    data = hostile.encode(hostile.scene(), fmt, exif=exif.tobytes())
    finding = only(read_provenance(data), "generator_parameters")
    assert finding.source == "exif:UserComment"
    assert finding.details["model"] == "v1-5-pruned-emaonly"


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-16-le", b""),  # exiftool on a little-endian EXIF block
        ("utf-16-be", b""),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-8", b""),  # UTF-8 behind the UNICODE prefix
    ],
)
def test_unicode_user_comment_whose_prompt_starts_in_japanese_is_read(
    encoding: str, bom: bytes
) -> None:
    text = "日本の猫, " + WEBUI_PARAMETERS
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + bom + text.encode(encoding)
    data = hostile.encode(hostile.scene(), "JPEG", exif=exif.tobytes())
    finding = only(read_provenance(data), "generator_parameters")
    assert finding.details["prompt"].startswith("日本の猫, ")
    assert finding.details["model"] == "v1-5-pruned-emaonly"


@pytest.mark.parametrize("software", ["NovelAI", "Adobe Firefly", "Midjourney v6", "DALL-E 3"])
def test_known_generator_software_tags_are_strong_fake_evidence(software: str) -> None:
    exif = Image.Exif()
    exif[0x0131] = software
    data = hostile.encode(hostile.scene(), "JPEG", exif=exif.tobytes())
    finding = only(read_provenance(data), "generator_software")
    assert (finding.indicates, finding.strength) == (Indication.FAKE, Strength.STRONG)
    assert finding.details["value"] == software


@pytest.mark.parametrize("software", ["NovelAI", "DALL·E 3"])
def test_png_software_text_of_a_generator_is_reported(software: str) -> None:
    png = hostile.encode(hostile.scene(), "PNG")
    data = hostile.png_with_chunks(png, hostile.text_chunk("Software", software))
    finding = only(read_provenance(data), "generator_software")
    assert (finding.source, finding.details["value"]) == ("png:Software", software)


@pytest.mark.parametrize("software", ["Adobe Photoshop 25.0", "Adobe Lightroom 5.3", "GIMP 2.10"])
def test_editing_software_is_not_mistaken_for_a_generator(software: str) -> None:
    data = hostile.jpeg_with_exif({0x0131: software, 0x010F: "Canon", 0x0110: "EOS R5"})
    findings = read_provenance(data)
    assert kinds(findings) == ["camera_exif"]
    assert findings[0].details["software"] == software


# XMP / IPTC Digital Source Type


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("as_attribute", [True, False])
def test_iptc_trained_algorithmic_media_in_xmp_is_strong_fake_evidence(
    fmt: str, as_attribute: bool
) -> None:
    xmp = hostile.xmp_digital_source_type("trainedAlgorithmicMedia", as_attribute)
    if fmt == "PNG":
        png = hostile.encode(hostile.scene(), "PNG")
        data = hostile.png_with_chunks(png, hostile.itxt_chunk("XML:com.adobe.xmp", xmp))
    else:
        data = hostile.encode(hostile.scene(), fmt, xmp=xmp.encode("utf-8"))
    finding = only(read_provenance(data), "iptc_digital_source_type")
    assert (finding.indicates, finding.strength) == (Indication.FAKE, Strength.STRONG)
    assert finding.details["code"] == "trainedAlgorithmicMedia"


def test_iptc_digital_capture_in_xmp_is_weak_real_evidence() -> None:
    xmp = hostile.xmp_digital_source_type("digitalCapture")
    data = hostile.encode(hostile.scene(), "JPEG", xmp=xmp.encode("utf-8"))
    finding = only(read_provenance(data), "iptc_digital_source_type")
    assert (finding.indicates, finding.strength) == (Indication.REAL, Strength.WEAK)


def test_xmp_entity_bomb_is_refused_quickly_as_a_metadata_error() -> None:
    data = hostile.encode(hostile.scene(), "JPEG", xmp=hostile.billion_laughs_xmp().encode())
    started = time.perf_counter()
    findings = read_provenance(data)
    assert time.perf_counter() - started < 5
    error = only(findings, "metadata_error")
    assert error.source == "xmp" and "DOCTYPE" in error.details["error"]


# Corrupt and oversized metadata


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_metadata_blocks_become_metadata_errors_not_exceptions() -> None:
    png = hostile.encode(hostile.scene(), "PNG")
    data = hostile.png_with_chunks(
        png,
        hostile.text_chunk("prompt", "{not json"),
        hostile.ztxt_chunk("Comment", b"this is not zlib"),
        hostile.itxt_chunk("XML:com.adobe.xmp", "<x:xmpmeta><unclosed>"),
        hostile.png_chunk(b"eXIf", b"MM\x00*\x00\x00\x00\x08\xff\xff"),
    )
    findings = read_provenance(data)
    assert {f.kind for f in findings} == {"metadata_error"}
    assert {f.source for f in findings} >= {"png:prompt", "png:zTXt", "xmp", "exif"}
    assert all(f.indicates is Indication.NEUTRAL for f in findings)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_jpeg_exif_is_a_metadata_error() -> None:
    data = hostile.jpeg_with_raw_app1(b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + b"\x00" * 16)
    assert kinds(read_provenance(data)) == ["metadata_error"]


def test_huge_text_chunk_gives_a_short_summary_and_bounded_details() -> None:
    # Just under the 1 MiB per-chunk cap, so the whole value is parsed.
    huge = WEBUI_PARAMETERS.replace("a watercolour fox", "fox " * 250_000)
    png = hostile.encode(hostile.scene(), "PNG")
    data = hostile.png_with_chunks(png, hostile.text_chunk("parameters", huge))
    finding = only(read_provenance(data), "generator_parameters")
    assert len(finding.summary) <= 200
    assert len(json.dumps(finding.to_dict())) < 5_000


def test_crafted_megabyte_parameters_line_is_parsed_in_linear_time() -> None:
    # A settings line with no further "key:" used to be the classic regex backtracking trap.
    crafted = "prompt\nSteps: 20, Sampler: Euler, " + "a" * 900_000
    png = hostile.encode(hostile.scene(), "PNG")
    data = hostile.png_with_chunks(png, hostile.text_chunk("parameters", crafted))
    started = time.perf_counter()
    finding = only(read_provenance(data), "generator_parameters")
    assert time.perf_counter() - started < 2
    assert finding.details["steps"] == "20"


def test_absurdly_nested_comfyui_json_is_a_metadata_error() -> None:
    png = hostile.encode(hostile.scene(), "PNG")
    nested = "[" * 200_000 + "]" * 200_000
    data = hostile.png_with_chunks(png, hostile.text_chunk("prompt", nested))
    assert kinds(read_provenance(data)) == ["metadata_error"]


def test_compressed_text_bomb_is_inflated_only_up_to_the_cap() -> None:
    bomb = hostile.ztxt_chunk("workflow", zlib.compress(b"{" * 20_000_000, 9))
    data = hostile.png_with_chunks(hostile.encode(hostile.scene(), "PNG"), bomb)
    findings = read_provenance(data)
    error = only(findings, "metadata_error")
    assert "size cap" in error.summary


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", hostile.HTML, hostile.SVG, hostile.PNG_SIGNATURE, b"\xff\xd8\xff\xe1\x00"],
    ids=["empty", "one-byte", "html", "svg", "png-signature-only", "jpeg-cut-in-app1"],
)
def test_garbage_never_raises(data: bytes) -> None:
    findings = read_provenance(data)
    assert all(f.kind == "metadata_error" for f in findings)


def test_truncations_of_real_generated_files_never_raise(shared_data: Path) -> None:
    comfy = shared_data / "images/fake/comfyui_examples/sd3__sd3_simple_example.png"
    data = comfy.read_bytes()
    for keep in (8, 33, 60, 200, 2_000, 10_000, len(data) // 2):
        findings = read_provenance(data[:keep])
        assert all(isinstance(f, Evidence) for f in findings)


def test_a_well_formed_but_empty_exif_block_is_not_reported_as_unreadable() -> None:
    # A TIFF header and an IFD with zero entries: nothing to say, and nothing broken.
    empty_ifd = b"\x00\x00" + b"\x00\x00\x00\x00"
    png = hostile.encode(hostile.scene(), "PNG")
    for header in (b"MM\x00*\x00\x00\x00\x08", b"II*\x00\x08\x00\x00\x00"):
        data = hostile.png_with_chunks(png, hostile.png_chunk(b"eXIf", header + empty_ifd))
        assert read_provenance(data) == [], header
    jpeg = hostile.jpeg_with_raw_app1(b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + empty_ifd)
    assert read_provenance(jpeg) == []


def test_midjourney_png_with_an_empty_exif_chunk_has_no_metadata_error(shared_data: Path) -> None:
    path = shared_data / "images/fake/grip_dmimagedetection/midjourney.png"
    assert read_provenance(path.read_bytes()) == []
