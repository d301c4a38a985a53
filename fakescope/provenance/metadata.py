"""Pull the raw metadata blocks (text chunks, EXIF, XMP) out of image bytes, with hard caps.

PNG and JPEG are walked here directly (containers.py): Pillow only reports PNG text chunks
placed before the pixel data unless the whole image is decoded, and its JPEG header parser
has no cap on the number of segments. WebP, HEIF, AVIF and TIFF go through Pillow's header
parser, their EXIF checked first. GIF carries nothing these readers use.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image

from fakescope.containers import (
    MAX_TEXT_TOTAL,
    MAX_TEXT_VALUE,
    Block,
    TooComplex,
    count_gif_blocks,
    jpeg_blocks,
    png_blocks,
    png_text,
)
from fakescope.evidence import Evidence
from fakescope.exif_block import EXIF_IFD, check_tiff_structure, load_exif
from fakescope.images import enable_heif, pillow_formats, sniff_format
from fakescope.provenance.c2pa_manifest import may_hold_manifest
from fakescope.provenance.findings import decode_text, metadata_error

XMP_PNG_KEY = "XML:com.adobe.xmp"
MAX_ERRORS = 8  # metadata_error findings kept per file; the rest are counted in one more


@dataclass
class RawMetadata:
    """What the readers look at. `truncated` names text keys cut at the cap; `too_complex`
    says why the container was not handed to the C2PA reader."""

    format: str | None
    text: dict[str, str] = field(default_factory=dict)
    truncated: set[str] = field(default_factory=set)
    exif: Image.Exif | None = None
    xmp: bytes | None = None
    errors: list[Evidence] = field(default_factory=list)
    too_complex: str | None = None
    suppressed_errors: int = 0

    def add_error(self, finding: Evidence) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(finding)
        else:
            self.suppressed_errors += 1


def extract_metadata(data: bytes, image_format: str | None = None) -> RawMetadata:
    fmt = (image_format or sniff_format(data) or "").upper() or None
    meta = RawMetadata(format=fmt)
    try:
        if fmt == "PNG":
            _read_blocks(png_blocks(data), meta)
        elif fmt == "JPEG":
            _read_blocks(jpeg_blocks(data), meta)
        elif fmt == "GIF":
            if may_hold_manifest(data):
                count_gif_blocks(data)
        else:
            _read_with_pillow(data, meta)
    except TooComplex as exc:
        meta.too_complex = str(exc)
        meta.add_error(metadata_error("container", "too many parts; reading stopped", error=exc))
    if meta.suppressed_errors:
        meta.errors.append(
            metadata_error("container", f"{meta.suppressed_errors} more unreadable blocks")
        )
    return meta


def _read_blocks(blocks: Iterator[Block], meta: RawMetadata) -> None:
    total = 0
    for block in blocks:
        if block.kind == "error":
            meta.add_error(
                metadata_error(meta.format.lower() if meta.format else "container", block.problem)
            )
        elif block.kind == "exif":
            meta.exif = _load_exif(block.body, meta)
        elif block.kind == "xmp":
            meta.xmp = block.body
        elif total <= MAX_TEXT_TOTAL:
            try:
                key, value = png_text(block.key, block.body)
            except (ValueError, zlib.error) as exc:
                meta.add_error(metadata_error(f"png:{block.key}", "bad text chunk", error=exc))
                continue
            total += len(value)
            _store_text(meta, key, value)


def _store_text(meta: RawMetadata, key: str, value: str) -> None:
    if len(value) > MAX_TEXT_VALUE:
        value = value[:MAX_TEXT_VALUE]
        meta.truncated.add(key)
    if key == XMP_PNG_KEY:
        meta.xmp = value.encode("utf-8")
    else:
        meta.text.setdefault(key, value)


def _read_with_pillow(data: bytes, meta: RawMetadata) -> None:
    if meta.format == "HEIF":
        enable_heif()
    if meta.format == "TIFF":
        # A TIFF file is one big EXIF-like structure, and Pillow reads its first IFD on open.
        try:
            check_tiff_structure(data)
        except ValueError as exc:
            meta.add_error(metadata_error("container", "implausible TIFF structure", error=exc))
            return
    try:
        # Header only: no pixels are decoded to read metadata.
        with Image.open(io.BytesIO(data), formats=pillow_formats()) as img:
            meta.format = meta.format or (img.format or None)
            xmp = img.info.get("xmp")
            if isinstance(xmp, bytes | str):
                meta.xmp = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
            raw = img.info.get("exif")
            if isinstance(raw, bytes):
                meta.exif = _load_exif(raw, meta)
            elif meta.format == "TIFF":
                meta.exif = _tiff_exif(img, meta)
    except Exception as exc:
        meta.add_error(metadata_error("container", "could not parse the file header", error=exc))


def _tiff_exif(img: Image.Image, meta: RawMetadata) -> Image.Exif | None:
    try:
        exif = img.getexif()
        exif.get_ifd(EXIF_IFD)
    except Exception as exc:
        meta.add_error(metadata_error("exif", "corrupt EXIF block", error=exc))
        return None
    return exif if len(exif) else None


def _load_exif(body: bytes, meta: RawMetadata) -> Image.Exif | None:
    try:
        exif = load_exif(body)
    except Exception as exc:
        meta.add_error(metadata_error("exif", "corrupt EXIF block", error=exc))
        return None
    if len(exif):
        return exif
    # Pillow only warns (and returns nothing) for an unreadable block: notice it here.
    block = body.removeprefix(b"Exif\x00\x00")
    if len(block) > 8 and _ifd0_entry_count(block) != 0:
        meta.add_error(metadata_error("exif", "EXIF block present but unreadable"))
    return None


def _ifd0_entry_count(block: bytes) -> int | None:
    """How many entries the first IFD of a TIFF-structured EXIF block declares; None when the
    header or the IFD offset is broken. A well-formed block with 0 entries is empty, not corrupt
    (some tools write one, e.g. an 8-byte header and an empty IFD in a PNG eXIf chunk)."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(block[:4])
    if order is None:
        return None
    (offset,) = struct.unpack(order + "I", block[4:8])
    if offset < 8 or offset + 2 > len(block):
        return None
    (count,) = struct.unpack(order + "H", block[offset : offset + 2])
    return int(count)


def exif_text(exif: Image.Exif | None, tag: int, ifd: int | None = None) -> str:
    """One EXIF string value, decoded and stripped; "" when absent or unreadable."""
    if exif is None:
        return ""
    try:
        value = exif.get_ifd(ifd).get(tag) if ifd is not None else exif.get(tag)
    except Exception:
        return ""
    if isinstance(value, bytes | str):
        return decode_text(value)
    return ""


def exif_raw(exif: Image.Exif | None, tag: int, ifd: int | None = None) -> bytes | None:
    if exif is None:
        return None
    try:
        value = exif.get_ifd(ifd).get(tag) if ifd is not None else exif.get(tag)
    except Exception:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return value if isinstance(value, bytes) else None
