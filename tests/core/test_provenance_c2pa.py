"""C2PA manifests: real signed files, manifests signed by the tests, and broken ones.

Trust policy under test: a cryptographically valid manifest without integrity failures
decides, whether or not its signer is on a trust list (the state is kept in details)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import c2pa_signing
import hostile_images as hostile
import pytest
from provenance_checks import kinds, only, read_row, rows_where

from fakescope.evidence import Indication, Strength
from fakescope.provenance import c2pa_store, read_provenance
from fakescope.provenance.c2pa_manifest import _manifest_findings
from fakescope.provenance.c2pa_store import MAX_INGREDIENT_DEPTH, MAX_INGREDIENTS, MAX_MANIFESTS
from fakescope.provenance.findings import DETAIL_ITEMS

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


# Ingredients: AI-generated media opened by an editor or placed in a composite


def _ai_original(source_type: str = "trainedAlgorithmicMedia") -> bytes:
    image = hostile.encode(hostile.scene(seed=1), "JPEG")
    manifest = c2pa_signing.manifest_with_actions(
        c2pa_signing.created(source_type), generator="Image Generator"
    )
    return c2pa_signing.sign(image, "JPEG", manifest)


def _opened_by(editor: str, original: bytes, title: str) -> bytes:
    """`original` opened, edited and signed again by `editor` (the original a parentOf)."""
    manifest = c2pa_signing.manifest_with_actions(
        c2pa_signing.using("c2pa.opened", "original"), {"action": "c2pa.edited"}, generator=editor
    )
    parent = c2pa_signing.ingredient("original", title, "parentOf")
    image = hostile.encode(hostile.scene(seed=2), "JPEG")
    return c2pa_signing.sign(image, "JPEG", manifest, [(parent, original)])


def test_ai_image_opened_and_signed_again_by_an_editor_is_decisive_through_its_parent() -> None:
    findings = read_provenance(_opened_by("Photo Editor", _ai_original(), "generated.jpg"))
    finding = only(findings, "c2pa_generative")
    assert (finding.indicates, finding.strength) == (Indication.FAKE, Strength.DECISIVE)
    for name in ("generated.jpg", "Image Generator 1.0", "Photo Editor 1.0", "Edited"):
        assert name in finding.summary
    details = finding.details
    assert details["claim_generator"] == "Photo Editor 1.0"
    assert details["digital_source_types"] == []
    assert [a["action"] for a in details["actions"]] == ["c2pa.opened", "c2pa.edited"]
    assert details["ingredients"] == [
        {
            "title": "generated.jpg",
            "relationship": "parentOf",
            "claim_generator": "Image Generator 1.0",
            "digital_source_types": ["trainedAlgorithmicMedia"],
            "depth": 1,
            "validation": "ok",
            "validation_failures": [],
        }
    ]
    assert details["generative_ingredient"] == details["ingredients"][0]
    assert kinds(findings) == ["c2pa_generative"]
    json.dumps(finding.to_dict())


def test_capture_composited_with_an_ai_generated_component_counts_as_generative() -> None:
    photo = hostile.encode(hostile.scene(seed=3), "JPEG")
    sticker = hostile.encode(hostile.scene(seed=4), "JPEG")  # an ingredient without a manifest
    manifest = c2pa_signing.manifest_with_actions(
        c2pa_signing.created("digitalCapture"),
        c2pa_signing.using("c2pa.placed", "generated"),
        c2pa_signing.using("c2pa.placed", "sticker"),
        generator="Compositor",
    )
    components = [
        (c2pa_signing.ingredient("generated", "sky.jpg", "componentOf"), _ai_original()),
        (c2pa_signing.ingredient("sticker", "sticker.jpg", "componentOf"), sticker),
    ]
    findings = read_provenance(c2pa_signing.sign(photo, "JPEG", manifest, components))
    finding = only(findings, "c2pa_generative")
    assert finding.strength is Strength.DECISIVE
    assert "Composited" in finding.summary and "sky.jpg" in finding.summary
    assert finding.details["digital_source_types"] == ["digitalCapture"]
    by_title = {i["title"]: i for i in finding.details["ingredients"]}
    assert by_title["sky.jpg"]["relationship"] == "componentOf"
    assert by_title["sticker.jpg"]["validation"] == "no manifest"
    assert "c2pa_capture" not in kinds(findings)


def test_edit_of_a_camera_capture_is_not_generative_and_lists_its_ingredient() -> None:
    image = hostile.encode(hostile.scene(seed=5), "JPEG")
    camera = c2pa_signing.manifest_with_actions(
        c2pa_signing.created("digitalCapture"), generator="Camera"
    )
    edited = _opened_by("Photo Editor", c2pa_signing.sign(image, "JPEG", camera), "photo.jpg")
    findings = read_provenance(edited)
    assert Indication.FAKE not in {f.indicates for f in findings}
    finding = only(findings, "c2pa_manifest")
    (ingredient,) = finding.details["ingredients"]
    assert ingredient["digital_source_types"] == ["digitalCapture"]
    assert ingredient["claim_generator"] == "Camera 1.0"


def test_ai_original_edited_twice_is_found_at_depth_two() -> None:
    once = _opened_by("First Editor", _ai_original(), "generated.jpg")
    twice = _opened_by("Second Editor", once, "retouched.jpg")
    finding = only(read_provenance(twice), "c2pa_generative")
    assert finding.strength is Strength.DECISIVE
    assert "Second Editor 1.0" in finding.summary and "generated.jpg" in finding.summary
    depths = {i["title"]: i["depth"] for i in finding.details["ingredients"]}
    assert depths == {"retouched.jpg": 1, "generated.jpg": 2}
    assert finding.details["generative_ingredient"]["claim_generator"] == "Image Generator 1.0"


def test_ai_ingredient_that_failed_validation_when_added_is_strong_not_decisive() -> None:
    original = _ai_original()
    tampered = original[:-200] + bytes(b ^ 0x55 for b in original[-200:-168]) + original[-168:]
    findings = read_provenance(_opened_by("Photo Editor", tampered, "generated.jpg"))
    finding = only(findings, "c2pa_generative")
    assert finding.strength is Strength.STRONG
    assert finding.details["validation_state"] == "Valid"
    (ingredient,) = finding.details["ingredients"]
    assert ingredient["validation"] == "failed"
    assert "assertion.dataHash.mismatch" in ingredient["validation_failures"]


# Hostile stores, handed straight to the store reader


def _store(manifests: dict[str, dict[str, Any]], active: str = "m0") -> dict[str, Any]:
    return {"active_manifest": active, "manifests": manifests, "validation_status": []}


def _made(source_type: str | None, *ingredients: str) -> dict[str, Any]:
    """A manifest creating `source_type` (or opening), with parentOf ingredients by label."""
    action = {"action": "c2pa.opened"}
    if source_type:
        action = c2pa_signing.created(source_type)
    return {
        "claim_generator": "hostile",
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [action]}}],
        "ingredients": [
            {"title": ref, "relationship": "parentOf", "active_manifest": ref, "label": ref}
            for ref in ingredients
        ],
    }


def _chain(length: int) -> dict[str, Any]:
    """m0 opened m1 … opened m{length}, which an AI model made."""
    manifests = {f"m{i}": _made(None, f"m{i + 1}") for i in range(length)}
    manifests[f"m{length}"] = _made("trainedAlgorithmicMedia")
    return _store(manifests)


def test_generative_ingredient_is_followed_down_to_the_depth_bound_and_no_further() -> None:
    deepest = only(_manifest_findings(_chain(MAX_INGREDIENT_DEPTH), "Valid"), "c2pa_generative")
    assert deepest.details["generative_ingredient"]["depth"] == MAX_INGREDIENT_DEPTH
    too_deep = _manifest_findings(_chain(MAX_INGREDIENT_DEPTH + 1), "Valid")
    assert kinds(too_deep) == ["c2pa_manifest"]
    assert kinds(_manifest_findings(_chain(10_000), "Valid")) == ["c2pa_manifest"]


def test_ingredient_cycles_and_wide_stores_are_walked_within_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cycle = _store({"m0": _made(None, "m1", "m0"), "m1": _made(None, "m0", "m1")})
    assert [i.depth for i in c2pa_store.ingredients(cycle, "m0")] == [1, 1, 2, 2]
    assert kinds(_manifest_findings(cycle, "Valid")) == ["c2pa_manifest"]

    wide_refs = [f"w{i}" for i in range(10_000)]
    wide = _store({"m0": _made(None, *wide_refs)} | {r: _made(None, "m0") for r in wide_refs})
    assert len(c2pa_store.ingredients(wide, "m0")) == MAX_INGREDIENTS
    (finding,) = _manifest_findings(wide, "Valid")
    assert len(finding.details["ingredients"]) == DETAIL_ITEMS

    # With the entry budget lifted, the manifest budget still holds.
    monkeypatch.setattr(c2pa_store, "MAX_INGREDIENTS", 100_000)
    followed = [i for i in c2pa_store.ingredients(wide, "m0") if i.depth == 2]
    assert len(followed) == MAX_MANIFESTS - 1


def test_a_generative_action_after_many_others_still_counts() -> None:
    # Only the first DETAIL_ITEMS actions go into the details; all of them are classified.
    def edits_then(source_type: str) -> list[dict[str, Any]]:
        captured = c2pa_signing.created("digitalCapture")
        return [captured] * (DETAIL_ITEMS + 5) + [c2pa_signing.created(source_type)]

    active = _made(None)
    active["assertions"][0]["data"]["actions"] = edits_then("trainedAlgorithmicMedia")
    finding = only(_manifest_findings(_store({"m0": active}), "Valid"), "c2pa_generative")
    assert finding.details["digital_source_types"] == ["digitalCapture", "trainedAlgorithmicMedia"]
    assert len(finding.details["actions"]) == DETAIL_ITEMS

    ingredient = _made(None)
    ingredient["assertions"][0]["data"]["actions"] = edits_then("trainedAlgorithmicMedia")
    store = _store({"m0": _made(None, "m1"), "m1": ingredient})
    assert kinds(_manifest_findings(store, "Valid")) == ["c2pa_generative"]


def test_malformed_ingredient_entries_never_raise() -> None:
    junk: list[Any] = [
        1,
        "m1",
        None,
        {"active_manifest": ["m1"]},
        {"active_manifest": {"m1": 1}, "validation_results": [1]},
        {"active_manifest": "m1", "validation_results": {"activeManifest": "x"}, "label": None},
        {"active_manifest": "missing", "validation_status": "bad", "title": {"x": 1}},
    ]
    manifests: dict[str, Any] = {
        "m0": {"ingredients": junk, "assertions": "bad", "claim_generator_info": 5},
        "m1": {"ingredients": {"m0": 1}, "assertions": [1, {"label": "c2pa.actions", "data": []}]},
    }
    store = _store(manifests) | {"validation_results": {"ingredientDeltas": [1, {"x": None}]}}
    (finding,) = _manifest_findings(store, "Valid")
    assert finding.kind == "c2pa_manifest"
    json.dumps(finding.to_dict())
