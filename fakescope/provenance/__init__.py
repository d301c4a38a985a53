"""Provenance evidence: what the file itself says about how it was made.

`read_provenance` runs every reader on the raw bytes, on CPU, without the network. It
never raises for bad metadata: anything unreadable becomes a `metadata_error` finding.
"""

from __future__ import annotations

from collections.abc import Callable

from fakescope.evidence import Evidence
from fakescope.provenance.c2pa_manifest import may_hold_manifest, read_c2pa
from fakescope.provenance.camera import read_camera_exif
from fakescope.provenance.comfyui import read_comfyui
from fakescope.provenance.findings import metadata_error
from fakescope.provenance.generators import read_generator_text
from fakescope.provenance.metadata import RawMetadata, extract_metadata
from fakescope.provenance.xmp import CREATOR_TOOL, XmpProperties, read_xmp, source_type_findings

__all__ = ["read_provenance"]


def read_provenance(data: bytes, image_format: str | None = None) -> list[Evidence]:
    """Every provenance finding in `data`; [] for bytes that carry none (or no bytes)."""
    if not data:
        return []
    try:
        meta = extract_metadata(data, image_format)
    except Exception as exc:
        return [metadata_error("container", "metadata could not be extracted", error=exc)]
    xmp = XmpProperties()

    def read_xmp_block() -> list[Evidence]:
        nonlocal xmp
        xmp, errors = read_xmp(meta.xmp)
        return errors + source_type_findings(xmp)

    readers: list[tuple[str, Callable[[], list[Evidence]]]] = [
        ("c2pa", lambda: _c2pa(data, meta)),
        ("xmp", read_xmp_block),
        ("comfyui", lambda: read_comfyui(meta)),
        ("generator text", lambda: read_generator_text(meta, xmp.get(CREATOR_TOOL))),
        ("exif", lambda: read_camera_exif(meta)),
    ]
    findings = list(meta.errors)
    for source, reader in readers:
        findings += _guarded(source, reader)
    return findings


def _c2pa(data: bytes, meta: RawMetadata) -> list[Evidence]:
    if not meta.too_complex:
        return read_c2pa(data, meta.format)
    if may_hold_manifest(data):
        return [metadata_error("c2pa", "manifest not checked: the file has too many parts")]
    return []


def _guarded(source: str, reader: Callable[[], list[Evidence]]) -> list[Evidence]:
    # One malformed block must not hide what the other readers found.
    try:
        return reader()
    except Exception as exc:
        return [metadata_error(source, "reader failed on malformed metadata", error=exc)]
