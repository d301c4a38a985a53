"""Camera EXIF (make, model, capture time): weak evidence of a capture, never proof.
Any program can write these tags, and some generators do."""

from __future__ import annotations

from typing import Any

from fakescope.evidence import Evidence, Indication, Strength
from fakescope.provenance.comfyui import is_graph_text
from fakescope.provenance.findings import clip
from fakescope.provenance.metadata import RawMetadata, exif_text

EXIF_IFD = 0x8769
TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_SOFTWARE = 0x0131
TAG_DATETIME_ORIGINAL = 0x9003
TAG_LENS_MODEL = 0xA434


def read_camera_exif(meta: RawMetadata) -> list[Evidence]:
    # ComfyUI's WebP savers write their graphs into Make and Model: not a camera.
    make, model = (
        "" if is_graph_text(value) else value
        for value in (exif_text(meta.exif, TAG_MAKE), exif_text(meta.exif, TAG_MODEL))
    )
    if not (make or model):
        return []
    details: dict[str, Any] = {
        "make": clip(make, 100),
        "model": clip(model, 100),
        "software": clip(exif_text(meta.exif, TAG_SOFTWARE), 100),
        "datetime_original": clip(exif_text(meta.exif, TAG_DATETIME_ORIGINAL, EXIF_IFD), 40),
        "lens_model": clip(exif_text(meta.exif, TAG_LENS_MODEL, EXIF_IFD), 100),
    }
    camera = " ".join(dict.fromkeys(part for part in (make, model) if part))
    return [
        Evidence(
            kind="camera_exif",
            indicates=Indication.REAL,
            strength=Strength.WEAK,
            summary=clip(f"EXIF names a camera: {camera} (easy to write; not proof).", 200),
            source="exif",
            details={key: value for key, value in details.items() if value},
        )
    ]
