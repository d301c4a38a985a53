"""read_provenance on crafted files: it never raises, stays fast and keeps every finding
small, whatever the structure of the file (bombs, loops, lying lengths, deep nesting)."""

from __future__ import annotations

import json
import time
import zlib

import hostile_images as hostile
import numpy as np
import pytest
from PIL import Image
from provenance_checks import kinds, only

from fakescope.evidence import Evidence, Indication
from fakescope.images import enable_heif
from fakescope.provenance import read_provenance

# Generous for a shared CI machine; each case takes a few milliseconds when healthy.
BUDGET_S = 0.5
PNG = hostile.encode(hostile.scene(), "PNG")
JPEG = hostile.encode(hostile.scene(), "JPEG")


def read_quickly(data: bytes, fmt: str | None = None) -> list[Evidence]:
    started = time.perf_counter()
    findings = read_provenance(data, fmt)
    assert time.perf_counter() - started < BUDGET_S
    assert len(findings) <= 12
    for finding in findings:
        assert len(finding.summary) <= 200
        assert len(json.dumps(finding.to_dict())) < 5_000
    return findings


def utf16_billion_laughs() -> bytes:
    xml = hostile.billion_laughs_xmp().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
    return xml.encode("utf-16")


def itxt(key: str, raw: bytes) -> bytes:
    return hostile.png_chunk(b"iTXt", key.encode() + b"\x00\x00\x00\x00\x00" + raw)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (hostile.png_with_chunks(PNG, *[hostile.png_chunk(b"abCd", b"")] * 300_000), "PNG"),
        (hostile.png_with_chunks(PNG, *[hostile.png_chunk(b"tEXt", b"nokey")] * 300_000), "PNG"),
        (
            hostile.png_with_chunks(PNG, *[hostile.png_chunk(b"eXIf", b"MM\x00*\xff")] * 50_000),
            "PNG",
        ),
        (
            hostile.png_with_chunks(
                PNG,
                *[
                    hostile.ztxt_chunk(f"k{i}", zlib.compress(b"a" * 2_000_000, 9))
                    for i in range(300)
                ],
            ),
            "PNG",
        ),
        (
            hostile.png_with_chunks(
                PNG,
                hostile.png_chunk(b"eXIf", hostile.exif_entry_bomb(60_000, b"\x00" * 3_000_000)),
            ),
            "PNG",
        ),
        (hostile.png_with_chunks(PNG, hostile.png_chunk(b"eXIf", hostile.exif_ifd_loop())), "PNG"),
        (hostile.jpeg_with_raw_app1(b"Exif\x00\x00" + hostile.exif_ifd_loop()), "JPEG"),
        (
            hostile.jpeg_with_raw_app1(
                b"Exif\x00\x00" + hostile.exif_entry_bomb(5_000, b"\x00" * 5_000)
            ),
            "JPEG",
        ),
        (JPEG[:2] + b"\xff\xe1\xff\xff" + b"Exif\x00\x00II*\x00", "JPEG"),
        (JPEG[:2] + b"\xff\xe1\x00\x00" + JPEG[2:], "JPEG"),
        (JPEG[:2] + b"\xff\xed\x10\x00Photoshop 3.0\x008BIM\x04\x04" + JPEG[2:], "JPEG"),
        (JPEG[:2] + b"\xff\xe2\x00\x04ab" * 500_000 + JPEG[2:], "JPEG"),
        (JPEG[:2] + b"\xff" * 3_000_000 + JPEG[2:], "JPEG"),
        (
            hostile.encode(
                hostile.scene(), "WEBP", exif=hostile.exif_entry_bomb(60_000, b"\x00" * 3_000_000)
            ),
            "WEBP",
        ),
        (hostile.exif_entry_bomb(60_000, b"\x00" * 3_000_000), "TIFF"),
        (hostile.gif_with(b"\x21\xfe\x01c\x00" * 200_000 + b"jumb"), "GIF"),
        (
            hostile.png_with_chunks(
                PNG,
                *[hostile.png_chunk(b"abCd", b"")] * 100_000,
                hostile.png_chunk(b"caBX", b"jumb"),
            ),
            "PNG",
        ),
    ],
    ids=[
        "png-300k-empty-chunks",
        "png-300k-bad-text-chunks",
        "png-50k-exif-chunks",
        "png-300-ztxt-bombs",
        "png-exif-entries-sharing-3mb",
        "png-exif-ifd-loop",
        "jpeg-exif-ifd-loop",
        "jpeg-exif-entries-sharing-data",
        "jpeg-app1-length-past-the-end",
        "jpeg-app1-length-zero",
        "jpeg-app13-cut",
        "jpeg-500k-tiny-segments",
        "jpeg-3mb-fill-bytes",
        "webp-exif-entries-sharing-3mb",
        "tiff-entries-sharing-3mb",
        "gif-200k-extensions-claiming-c2pa",
        "png-100k-chunks-claiming-c2pa",
    ],
)
def test_hostile_structure_is_read_fast_and_small(data: bytes, fmt: str) -> None:
    findings = read_quickly(data, fmt)
    assert all(f.indicates is Indication.NEUTRAL for f in findings)


@pytest.mark.parametrize("cap", ["png-chunks", "jpeg-segments"])
def test_a_container_with_too_many_parts_says_so_once(cap: str) -> None:
    if cap == "png-chunks":
        data = hostile.png_with_chunks(PNG, *[hostile.png_chunk(b"abCd", b"")] * 50_000)
    else:
        data = JPEG[:2] + b"\xff\xe2\x00\x04ab" * 50_000 + JPEG[2:]
    error = only(read_quickly(data), "metadata_error")
    assert "too many parts" in error.summary


def test_only_the_first_errors_are_listed_and_the_rest_counted() -> None:
    bad = [hostile.png_chunk(b"tEXt", b"nokey")] * 100
    findings = read_quickly(hostile.png_with_chunks(PNG, *bad))
    assert kinds(findings) == ["metadata_error"] * 9
    assert "more unreadable blocks" in findings[-1].summary


@pytest.mark.parametrize(
    "xmp",
    [
        utf16_billion_laughs(),
        hostile.billion_laughs_xmp().encode(),
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><x/>',
        hostile.xmp_packet("<a>" * 300_000 + "</a>" * 300_000).encode(),
        hostile.xmp_packet("&amp;" * 300_000).encode(),
    ],
    ids=[
        "utf16-billion-laughs",
        "billion-laughs",
        "external-entity",
        "parameter-entity",
        "nested-300k-deep",
        "300k-entity-references",
    ],
)
def test_hostile_xmp_is_refused_quickly_as_one_metadata_error(xmp: bytes) -> None:
    data = hostile.png_with_chunks(PNG, itxt("XML:com.adobe.xmp", xmp))
    findings = read_quickly(data)
    assert kinds(findings) == ["metadata_error"] or findings == []
    if findings:
        assert findings[0].source == "xmp"


@pytest.mark.parametrize(
    "encoding", ["UTF-nnnn16", "rot13", "x" * 300], ids=["misspelt", "no-text-codec", "long-name"]
)
def test_xmp_in_an_encoding_python_lacks_is_an_unparsable_packet(encoding: str) -> None:
    # Found by fuzz/fuzz_xmp.py: expat asks Python's codecs, whose LookupError escaped.
    xmp = f'<?xml version="1.0" encoding="{encoding}"?><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    data = hostile.png_with_chunks(PNG, itxt("XML:com.adobe.xmp", xmp.encode()))
    error = only(read_quickly(data), "metadata_error")
    assert "XMP packet could not be parsed" in error.summary  # was "reader failed ..."
    assert "unknown encoding" in error.details["error"] or "not a text" in error.details["error"]


def test_utf16_xmp_is_read() -> None:
    xmp = hostile.xmp_digital_source_type("trainedAlgorithmicMedia").encode("utf-16")
    data = hostile.png_with_chunks(PNG, itxt("XML:com.adobe.xmp", xmp))
    assert only(read_quickly(data), "iptc_digital_source_type").indicates is Indication.FAKE


def test_xmp_with_thousands_of_source_types_gives_a_bounded_number_of_findings() -> None:
    ns = 'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
    body = "".join(
        f'<rdf:Description {ns} Iptc4xmpExt:DigitalSourceType="code{i}"/>' for i in range(5_000)
    )
    data = hostile.png_with_chunks(
        PNG, hostile.itxt_chunk("XML:com.adobe.xmp", hostile.xmp_packet(body))
    )
    assert kinds(read_quickly(data)) == ["iptc_digital_source_type"] * 8


def test_comfyui_graph_with_megabyte_names_gives_small_details() -> None:
    graph = {
        "1": {"class_type": "K" * 800_000, "inputs": {"ckpt_name": "m.safetensors"}},
        "2": {"class_type": "KSampler", "inputs": {"sampler_name": "s" * 100_000, "seed": 1}},
    }
    data = hostile.png_with_chunks(PNG, hostile.text_chunk("prompt", json.dumps(graph)))
    finding = only(read_quickly(data), "comfyui_workflow")
    assert finding.details["models"] == ["m.safetensors"]


def test_comfyui_editor_graph_with_a_megabyte_node_type_gives_small_details() -> None:
    workflow = {"nodes": [{"type": "T" * 500_000, "widgets_values": ["x.safetensors"]}]}
    data = hostile.png_with_chunks(PNG, hostile.text_chunk("workflow", json.dumps(workflow)))
    only(read_quickly(data), "comfyui_workflow")


@pytest.mark.parametrize(
    "raw",
    [
        b"UNICODE\x00\xff",
        b"UNICODE\x00" + b"\xd8\x00" * 1000,
        b"JIS\x00\x00\x00\x00\x00\x1b$B",
        b"\x00" * 8,
        b"\xff" * 64,
    ],
    ids=["unicode-odd-length", "unicode-lone-surrogates", "jis", "undefined", "garbage"],
)
def test_user_comment_in_odd_encodings_never_raises(raw: bytes) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = raw
    read_quickly(hostile.encode(hostile.scene(), "JPEG", exif=exif.tobytes()))


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP", "AVIF", "HEIF"])
def test_every_container_survives_truncation(fmt: str) -> None:
    enable_heif()
    data = hostile.encode(
        hostile.scene(), fmt, **({} if fmt in {"GIF", "TIFF"} else {"exif": Image.Exif().tobytes()})
    )
    for keep in (1, 8, 13, 40, len(data) // 2):
        read_quickly(data[:keep], fmt)


def test_big_ordinary_gif_gets_no_finding() -> None:
    # Thousands of image-data sub-blocks are normal: only a file that may hold a manifest is
    # counted against the cap.
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (1200, 1200, 3), dtype="uint8")).convert("P")
    assert read_quickly(hostile.encode(noise, "GIF"), "GIF") == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # JSON escapes of lone surrogates: json.loads turns them into str that UTF-8 refuses.
        (
            "prompt",
            '{"4": {"class_type": "CheckpointLoaderSimple",'
            ' "inputs": {"ckpt_name": "sd\\ud800xl.safetensors"}}}',
        ),
        ("parameters", '{"sui_image_params": {"prompt": "a \\udfff cat", "model": "m\\ud800"}}'),
    ],
)
def test_findings_from_json_with_lone_surrogates_encode_as_utf8(key: str, value: str) -> None:
    data = hostile.png_with_chunks(PNG, hostile.text_chunk(key, value))
    findings = read_quickly(data, "PNG")
    assert set(kinds(findings)) & {"comfyui_workflow", "generator_parameters"}
    text = json.dumps([f.to_dict() for f in findings], ensure_ascii=False)
    text.encode("utf-8")  # raised UnicodeEncodeError: the CLI and the server could not write it
    assert "\ufffd" in text


def test_findings_from_json_with_nan_or_infinity_are_strict_json() -> None:
    # json.loads reads NaN and Infinity; they are no JSON numbers (PostgreSQL refuses them).
    graph = '{"3": {"class_type": "KSampler", "inputs": {"cfg": NaN, "seed": -Infinity}}}'
    findings = read_quickly(hostile.png_with_chunks(PNG, hostile.text_chunk("prompt", graph)))
    workflow = only(findings, "comfyui_workflow")
    json.dumps(workflow.to_dict(), allow_nan=False)  # raised ValueError: nan kept as a float
    assert workflow.details["samplers"] == [{"cfg": None, "seed": None}]


@pytest.mark.parametrize("data", [b"II*\x00\x08\x00\x00", b"MM\x00*", b"II*\x00"])
def test_a_tiff_header_cut_short_is_an_implausible_tiff_structure(data: bytes) -> None:
    # Found by fuzz/fuzz_exif.py: struct.error escaped the TIFF check, which catches ValueError.
    error = only(read_quickly(data, "TIFF"), "metadata_error")
    assert "implausible TIFF structure" in error.summary
    assert "cut short" in error.details["error"]


@pytest.mark.parametrize("nodes", ["5", "true", '"CheckpointLoaderSimple"', "{}"])
def test_a_comfyui_workflow_whose_nodes_are_no_list_is_no_graph(nodes: str) -> None:
    data = hostile.png_with_chunks(PNG, hostile.text_chunk("workflow", f'{{"nodes": {nodes}}}'))
    error = only(read_quickly(data, "PNG"), "metadata_error")
    # was "reader failed on malformed metadata": TypeError from iterating a number
    assert error.source == "png:workflow"
    assert "not a ComfyUI graph" in error.summary
