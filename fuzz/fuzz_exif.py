"""EXIF / TIFF structures (exif_block.py): check_tiff_structure and check_tiff_pages raise
ValueError only; load_exif ValueError or one of Pillow's errors (its callers catch them
all, so only a hang or a blow-up counts there), and the tag readers never raise."""

from __future__ import annotations

import struct

from fuzz.harness import instrumented, main

with instrumented():
    from fakescope.exif_block import check_tiff_pages, check_tiff_structure, load_exif
    from fakescope.provenance.camera import read_camera_exif
    from fakescope.provenance.metadata import RawMetadata

ALLOWED: tuple[type[BaseException], ...] = (ValueError,)


def target(data: bytes) -> None:
    check_tiff_pages(data)
    try:
        exif = load_exif(data)
    except (ValueError, struct.error, OSError, SyntaxError, KeyError, IndexError, TypeError):
        exif = None
    read_camera_exif(RawMetadata(format="JPEG", exif=exif))
    check_tiff_structure(data)


if __name__ == "__main__":
    main(target, ALLOWED, "exif")
