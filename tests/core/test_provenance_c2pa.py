"""C2PA manifests: real signed files, manifests signed by the tests, and broken ones.

Trust policy under test: a cryptographically valid manifest without integrity failures
decides, whether or not its signer is on a trust list (the state is kept in details)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import c2pa_signing
import hostile_images as hostile
import pytest
from provenance_checks import kinds, only, read_row, rows_where

from fakescope.evidence import Indication, Strength
from fakescope.provenance import read_provenance

# Real files from ../shared/data


def test_signed_c2pa_generative_claims_are_decisive_with_the_trust_state_recorded(
    shared_data: Path, manifest_rows: list[dict[str, str]]
) -> None:
    rows = rows_where(manifest_rows, has_provenance_metadata="C2PA[", label="fake")
    assert len(rows) == 2
    for row in rows:
        finding = only(read_row(shared_data, row), "c2pa_generative")
        assert (finding.indicates, finding.strength) == (Indication.FAKE, Strength.DECISIVE)
        details = finding.details
        # Test certificates: cryptographically valid, signer not on any trust list.
        assert details["validation_state"] == "Valid"
        assert details["trust"] == "untrusted signer"
        assert details["validation_failures"] == ["signingCredential.untrusted"]
        assert details["issuer"] == "C2PA Test Signing Cert"
        assert details["claim_generator"] in row["has_provenance_metadata"]
        declared = row["has_provenance_metadata"].split("dst=")[1].rstrip("]").split(",")
        assert set(details["digital_source_types"]) <= set(declared)
        assert any(a["digitalSourceType"] for a in details["actions"])
        json.dumps(finding.to_dict())


def test_truepic_capture_with_a_broken_data_hash_is_reported_invalid_not_real(
    shared_data: Path, manifest_rows: list[dict[str, str]]
) -> None:
    (row,) = rows_where(manifest_rows, has_provenance_metadata="Truepic")
    findings = read_row(shared_data, row)
    invalid = only(findings, "c2pa_invalid")
    assert (invalid.indicates, invalid.strength) == (Indication.NEUTRAL, Strength.INFO)
    assert "assertion.dataHash.mismatch" in invalid.details["validation_failures"]
    assert invalid.details["claim_generator"].startswith("Truepic_Lens_SDK_libc2pa")
    camera = only(findings, "camera_exif")
    assert (camera.details["make"], camera.details["model"]) == ("Google", "Pixel 5")
    assert "c2pa_capture" not in kinds(findings)
    assert Indication.FAKE not in {f.indicates for f in findings}


# Manifests signed by the tests (throwaway certificate chain, so "untrusted signer")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_signed_generative_claim_is_decisive_in_every_container(fmt: str) -> None:
    image = hostile.encode(hostile.scene(), fmt)
    manifest = c2pa_signing.manifest_with_actions(c2pa_signing.created("trainedAlgorithmicMedia"))
    findings = read_provenance(c2pa_signing.sign(image, fmt, manifest), fmt)
    finding = only(findings, "c2pa_generative")
    assert (finding.indicates, finding.strength) == (Indication.FAKE, Strength.DECISIVE)
    assert finding.details["claim_generator"] == "fakescope-tests 1.0"
    assert finding.details["signer"] == "FakeScope Test Signer"
    assert finding.details["digital_source_types"] == ["trainedAlgorithmicMedia"]
    assert kinds(findings) == ["c2pa_generative"]


def test_signed_capture_claim_is_weak_real_evidence() -> None:
    image = hostile.encode(hostile.scene(), "JPEG")
    manifest = c2pa_signing.manifest_with_actions(c2pa_signing.created("digitalCapture"))
    finding = only(read_provenance(c2pa_signing.sign(image, "JPEG", manifest)), "c2pa_capture")
    assert (finding.indicates, finding.strength) == (Indication.REAL, Strength.WEAK)
    assert finding.details["validation_state"] == "Valid"


def test_composite_with_generated_parts_counts_as_generative() -> None:
    image = hostile.encode(hostile.scene(), "JPEG")
    manifest = c2pa_signing.manifest_with_actions(
        c2pa_signing.created("digitalCapture"),
        {
            "action": "c2pa.edited",
            "digitalSourceType": c2pa_signing.IPTC + "compositeWithTrainedAlgorithmicMedia",
        },
    )
    findings = read_provenance(c2pa_signing.sign(image, "JPEG", manifest))
    assert only(findings, "c2pa_generative").strength is Strength.DECISIVE
    assert "c2pa_capture" not in kinds(findings)


def test_manifest_with_a_source_neither_generated_nor_captured_is_context_only() -> None:
    image = hostile.encode(hostile.scene(), "JPEG")
    manifest = c2pa_signing.manifest_with_actions(c2pa_signing.created("digitalArt"))
    finding = only(read_provenance(c2pa_signing.sign(image, "JPEG", manifest)), "c2pa_manifest")
    assert (finding.indicates, finding.strength) == (Indication.NEUTRAL, Strength.INFO)
    assert "digitalArt" in finding.summary


# C2PA edge cases built from a real signed file


@pytest.fixture
def signed_ai_jpeg(shared_data: Path) -> bytes:
    return (shared_data / "images/fake/tfm_c2pa_aigen/images__test_c2pa.jpg").read_bytes()


def test_pixels_edited_after_signing_keep_the_claim_as_strong_not_decisive(
    signed_ai_jpeg: bytes,
) -> None:
    scan = signed_ai_jpeg.index(b"\xff\xda")
    middle = scan + (len(signed_ai_jpeg) - scan) // 2
    flipped = bytes(b ^ 0x55 for b in signed_ai_jpeg[middle : middle + 32])
    edited = signed_ai_jpeg[:middle] + flipped + signed_ai_jpeg[middle + 32 :]
    findings = read_provenance(edited, "JPEG")
    generative = only(findings, "c2pa_generative")
    assert generative.strength is Strength.STRONG
    assert (
        "assertion.dataHash.mismatch"
        in only(findings, "c2pa_invalid").details["validation_failures"]
    )


@pytest.mark.parametrize("offset", [40, 60, 400, 5_000, 8_000, 30_000])
def test_truncated_manifests_never_raise_and_never_decide(
    signed_ai_jpeg: bytes, offset: int
) -> None:
    truncated = signed_ai_jpeg[: signed_ai_jpeg.index(b"jumb") + offset]
    findings = read_provenance(truncated, "JPEG")
    assert Strength.DECISIVE not in {f.strength for f in findings}
    assert {"c2pa_invalid", "c2pa_generative"} & set(kinds(findings))


@pytest.mark.parametrize("offset", [40, 60, 400, 5_000, 8_000, 30_000])
def test_corrupted_manifests_decide_only_when_the_sdk_still_validates_them(
    signed_ai_jpeg: bytes, offset: int
) -> None:
    # Some manifest bytes (padding, unhashed boxes) are not covered by the signature;
    # corrupting those leaves a valid manifest, so the invariant is about the state.
    start = signed_ai_jpeg.index(b"jumb") + offset
    corrupted = signed_ai_jpeg[:start] + b"\xff" * 16 + signed_ai_jpeg[start + 16 :]
    for finding in read_provenance(corrupted, "JPEG"):
        if finding.strength is Strength.DECISIVE:
            assert finding.details["validation_state"] in {"Valid", "Trusted"}
            assert finding.details["validation_failures"] == ["signingCredential.untrusted"]


@pytest.fixture
def recording_http_server() -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_remote_manifest_reference_is_reported_and_never_fetched(
    recording_http_server: tuple[str, list[str]],
) -> None:
    base_url, requests = recording_http_server
    url = f"{base_url}/manifest.c2pa"
    xmp = hostile.xmp_packet(
        '<rdf:Description rdf:about="" xmlns:dcterms="http://purl.org/dc/terms/" '
        f'dcterms:provenance="{url}"/>'
    )
    data = hostile.encode(hostile.scene(), "JPEG", xmp=xmp.encode())
    finding = only(read_provenance(data, "JPEG"), "c2pa_remote_manifest")
    assert (finding.indicates, finding.strength) == (Indication.NEUTRAL, Strength.INFO)
    assert finding.details["url"] == url
    assert requests == []
