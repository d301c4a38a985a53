"""C2PA manifests (Content Credentials) read with c2pa-python, never touching the network.

Trust policy. The SDK reports one of three validation states:
- "Trusted": signature valid, no integrity failure, signer on a trust list;
- "Valid":   the same, but the signer is not on a trust list ("signingCredential.untrusted");
- "Invalid": a signature or integrity check failed.
This service ships no trust list, so almost every signer is "untrusted" here. What a
signature proves is that the claim was not altered since signing, so "Valid" and
"Trusted" both make a generative claim decisive; the trust state is kept in `details`.
An "Invalid" manifest whose claim signature still verifies (only the asset changed since
signing) keeps its generative claim as strong evidence; otherwise the claim is weak.

Ingredients. An editor that opens an AI-generated image, or places one in a composite,
signs a new active manifest and keeps the original's manifest as an ingredient
(`c2pa_store.ingredients` follows them, bounded). When the active manifest declares no
generative source but an ingredient's manifest does, at any depth, that is a generative
finding too, and it wins over a capture claim as a generative action does. Decisive when
the active manifest is valid and no manifest on the way down to that ingredient shows an
integrity failure (as recorded in the ingredient entry and in the SDK's `ingredientDeltas`;
again "signingCredential.untrusted" is not one); strong when the active claim signature
verifies but something failed; weak otherwise.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from fakescope.evidence import Evidence, Indication, Strength
from fakescope.provenance import c2pa_store
from fakescope.provenance.c2pa_store import UNTRUSTED, Ingredient
from fakescope.provenance.findings import clip, clip_list, metadata_error
from fakescope.provenance.source_types import SourceClass, classify, source_code

# Formats c2pa-rs reads that FakeScope also accepts (BMP carries no manifests).
MIME_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "HEIF": "image/heif",
    "AVIF": "image/avif",
}
# Never fetch a manifest named by URL (the request would leave from the server, unguarded),
# and never ask an OCSP responder either.
OFFLINE_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
_URL = re.compile(r"https?://\S+")


def read_c2pa(data: bytes, image_format: str | None) -> list[Evidence]:
    mime = MIME_TYPES.get((image_format or "").upper())
    if mime is None or not may_hold_manifest(data):
        return []
    import c2pa  # the native library loads on first use only

    try:
        context = c2pa.Context.from_dict(OFFLINE_SETTINGS)
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
    except c2pa.C2paError as exc:
        return [_error_finding(exc)] if _may_hold_manifest(data, exc) else []
    if reader is None:
        return []
    try:
        with reader:
            store = json.loads(reader.json())
            state = str(reader.get_validation_state() or store.get("validation_state") or "")
    except (c2pa.C2paError, ValueError) as exc:
        return [_error_finding(exc)]
    return _manifest_findings(store, state)


def may_hold_manifest(data: bytes) -> bool:
    """Whether the bytes can carry a manifest at all: an embedded store is a JUMBF box (its
    type "jumb" is stored uncompressed in every container), a remote one is named by XMP
    `dcterms:provenance`. The SDK's cost grows with the parts of a file, so skip the rest."""
    return b"jumb" in data or b"provenance" in data


def _may_hold_manifest(data: bytes, exc: Exception) -> bool:
    """Whether a reader error is about a manifest at all (JUMBF box or remote reference);
    on other broken files the SDK fails too, and the container error is reported elsewhere."""
    return b"jumb" in data or "remote" in str(exc).lower()


def _error_finding(exc: Exception) -> Evidence:
    message = str(exc)
    if "remote" in message.lower():
        url = _URL.search(message)
        return Evidence(
            kind="c2pa_remote_manifest",
            indicates=Indication.NEUTRAL,
            strength=Strength.INFO,
            summary="The image points to a remote C2PA manifest, which was not fetched.",
            source="c2pa",
            details={"url": clip(url.group(0)) if url else None, "error": clip(message)},
        )
    return Evidence(
        kind="c2pa_invalid",
        indicates=Indication.NEUTRAL,
        strength=Strength.INFO,
        summary="A C2PA manifest is present but could not be read.",
        source="c2pa",
        details={"validation_state": "Unreadable", "error": clip(message)},
    )


def _manifest_findings(store: dict[str, Any], state: str) -> list[Evidence]:
    manifests = store.get("manifests")
    label = store.get("active_manifest")
    active = (
        manifests.get(label) if isinstance(manifests, dict) and isinstance(label, str) else None
    )
    if not isinstance(label, str) or not isinstance(active, dict):
        return [metadata_error("c2pa", "manifest store has no active manifest")]
    failures = c2pa_store.failure_codes(store)
    integrity_failures = [code for code in failures if code != UNTRUSTED]
    actions = c2pa_store.actions(active)
    source_types = [a["digitalSourceType"] for a in actions if a.get("digitalSourceType")]
    codes = list(dict.fromkeys(source_code(t) for t in source_types))
    ingredients = c2pa_store.ingredients(store, label)
    signature = active.get("signature_info")
    signature = signature if isinstance(signature, dict) else {}
    details: dict[str, Any] = {
        "claim_generator": clip(c2pa_store.claim_generator(active)),
        "signer": clip(str(signature.get("common_name") or "")),
        "issuer": clip(str(signature.get("issuer") or "")),
        "signed_at": signature.get("time"),
        "validation_state": state,
        "trust": "trusted" if state == "Trusted" else "untrusted signer",
        "validation_failures": clip_list(failures),
        "digital_source_types": clip_list(codes),
        "actions": clip_list(actions),
        "ingredients": clip_list([i.detail() for i in ingredients]),
    }
    valid = state in {"Valid", "Trusted"} and not integrity_failures
    findings = [] if valid else [_invalid(details, integrity_failures)]
    classes = {classify(t) for t in source_types}
    generative = [i for i in ingredients if i.generative]
    verified = c2pa_store.claim_verified(store)
    if SourceClass.GENERATIVE in classes:
        findings.append(_generative(details, valid, verified))
    elif generative:
        # Prefer an ingredient whose chain validated, then the nearest (the walk is BFS).
        best = min(generative, key=lambda i: (i.chain_failed, i.depth))
        findings.append(_generative_ingredient(details, best, valid, verified))
    elif valid and SourceClass.SYNTHETIC in classes:
        findings.append(_synthetic(details))
    elif valid and SourceClass.CAPTURE in classes:
        findings.append(_capture(details))
    elif valid:
        findings.append(_plain_manifest(details))
    return findings


def _generative(details: dict[str, Any], valid: bool, claim_verified: bool) -> Evidence:
    codes = ", ".join(dict.fromkeys(details["digital_source_types"]))
    who = details["claim_generator"] or "unknown software"
    strength, how = _generative_strength(details, valid, claim_verified)
    return Evidence(
        kind="c2pa_generative",
        indicates=Indication.FAKE,
        strength=strength,
        summary=clip(f"C2PA manifest by {who} declares generative AI ({codes}); {how}.", 200),
        source="c2pa",
        details=details,
    )


def _generative_strength(
    details: dict[str, Any], valid: bool, claim_verified: bool, ingredient_failed: bool = False
) -> tuple[Strength, str]:
    """How much a generative claim weighs (module docstring), and why, in words."""
    if valid and not ingredient_failed:
        return Strength.DECISIVE, f"signed and valid ({details['trust']})"
    if valid:
        return Strength.STRONG, "an ingredient manifest failed validation"
    if claim_verified:
        return Strength.STRONG, "signature valid but the file changed after signing"
    return Strength.WEAK, "manifest failed validation"


_MADE_WITH = {
    "parentOf": "Edited by {editor} from AI-generated media",
    "componentOf": "Composited by {editor} with AI-generated media",
    "inputTo": "Made by {editor} from AI-generated input",
}


def _generative_ingredient(
    details: dict[str, Any], ingredient: Ingredient, valid: bool, claim_verified: bool
) -> Evidence:
    codes = ", ".join(c for c in ingredient.source_types if classify(c) is SourceClass.GENERATIVE)
    editor = clip(details["claim_generator"] or "unknown software", 60)
    made = _MADE_WITH.get(ingredient.top_relationship, "Made by {editor} with AI-generated media")
    title = clip(ingredient.title, 50) or "untitled"
    where = f" (depth {ingredient.depth})" if ingredient.depth > 1 else ""
    who = clip(ingredient.claim_generator or "unknown software", 50)
    strength, how = _generative_strength(details, valid, claim_verified, ingredient.chain_failed)
    return Evidence(
        kind="c2pa_generative",
        indicates=Indication.FAKE,
        strength=strength,
        summary=clip(
            f'{made.format(editor=editor)}: ingredient "{title}"{where} by {who} declares '
            f"{codes}; {how}.",
            200,
        ),
        source="c2pa",
        details={**details, "generative_ingredient": ingredient.detail()},
    )


def _capture(details: dict[str, Any]) -> Evidence:
    return Evidence(
        kind="c2pa_capture",
        indicates=Indication.REAL,
        strength=Strength.WEAK,
        summary=clip(
            f"C2PA manifest by {details['claim_generator'] or 'unknown software'} declares a "
            "camera capture; a claim of capture is not proof of authenticity.",
            200,
        ),
        source="c2pa",
        details=details,
    )


def _synthetic(details: dict[str, Any]) -> Evidence:
    codes = ", ".join(dict.fromkeys(details["digital_source_types"]))
    return Evidence(
        kind="c2pa_manifest",
        indicates=Indication.FAKE,
        strength=Strength.WEAK,
        summary=clip(
            f"C2PA manifest by {details['claim_generator'] or 'unknown software'} declares "
            f"synthetic media not made by a trained model ({codes}).",
            200,
        ),
        source="c2pa",
        details=details,
    )


def _invalid(details: dict[str, Any], failures: list[str]) -> Evidence:
    return Evidence(
        kind="c2pa_invalid",
        indicates=Indication.NEUTRAL,
        strength=Strength.INFO,
        summary=clip(f"C2PA manifest failed validation: {', '.join(failures) or 'invalid'}.", 200),
        source="c2pa",
        details=details,
    )


def _plain_manifest(details: dict[str, Any]) -> Evidence:
    codes = ", ".join(dict.fromkeys(details["digital_source_types"]))
    claim = f"declares the source type {codes}" if codes else "declares no source type"
    return Evidence(
        kind="c2pa_manifest",
        indicates=Indication.NEUTRAL,
        strength=Strength.INFO,
        summary=clip(
            f"C2PA manifest by {details['claim_generator'] or 'unknown software'} {claim}, "
            "neither generated nor captured.",
            200,
        ),
        source="c2pa",
        details=details,
    )
