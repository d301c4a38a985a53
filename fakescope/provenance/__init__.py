"""Provenance evidence: what the file itself says about how it was made.

`read_provenance` runs every reader on the raw bytes, on CPU, without the network. It
never raises for bad metadata: anything unreadable becomes a `metadata_error` finding.
"""

from __future__ import annotations

from collections.abc import Callable

from fakescope.evidence import Evidence
from fakescope.provenance.c2pa_manifest import read_c2pa
from fakescope.provenance.camera import read_camera_exif
from fakescope.provenance.comfyui import read_comfyui
from fakescope.provenance.findings import metadata_error
from fakescope.provenance.generators import read_generator_text
from fakescope.provenance.metadata import extract_metadata
from fakescope.provenance.xmp import read_xmp_source_type

__all__ = ["read_provenance"]


def read_provenance(data: bytes, image_format: str | None = None) -> list[Evidence]:
    """Every provenance finding in `data`; [] for bytes that carry none (or no bytes)."""
    if not data:
        return []
    try:
        meta = extract_metadata(data, image_format)
    except Exception as exc:
        return [metadata_error("container", "metadata could not be extracted", error=exc)]
    readers: list[tuple[str, Callable[[], list[Evidence]]]] = [
        ("c2pa", lambda: read_c2pa(data, meta.format)),
        ("xmp", lambda: read_xmp_source_type(meta.xmp)),
        ("png:prompt/workflow", lambda: read_comfyui(meta.text, meta.truncated)),
        ("generator text", lambda: read_generator_text(meta)),
        ("exif", lambda: read_camera_exif(meta)),
    ]
    findings = list(meta.errors)
    for source, reader in readers:
        findings += _guarded(source, reader)
    return findings


def _guarded(source: str, reader: Callable[[], list[Evidence]]) -> list[Evidence]:
    # One malformed block must not hide what the other readers found.
    try:
        return reader()
    except Exception as exc:
        return [metadata_error(source, "reader failed on malformed metadata", error=exc)]
