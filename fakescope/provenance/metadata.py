"""Pull the raw metadata blocks (text chunks, EXIF, XMP) out of image bytes, with hard caps.

PNG chunks are walked here directly: Pillow only reports text chunks placed before the
pixel data unless the whole image is decoded, and it refuses oversized compressed chunks
by failing the open. Other formats go through Pillow's header parser.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field

from PIL import Image

from fakescope.evidence import Evidence
from fakescope.images import enable_heif, pillow_formats, sniff_format
from fakescope.provenance.findings import decode_text, metadata_error

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_VALUE = 1024 * 1024  # characters kept per text chunk (a ComfyUI graph fits easily)
MAX_TEXT_TOTAL = 8 * 1024 * 1024
MAX_TEXT_CHUNKS = 256
XMP_PNG_KEY = "XML:com.adobe.xmp"


@dataclass
class RawMetadata:
    """What the readers look at. `truncated` names text keys cut at the cap."""

    format: str | None
    text: dict[str, str] = field(default_factory=dict)
    truncated: set[str] = field(default_factory=set)
    exif: Image.Exif | None = None
    xmp: bytes | None = None
    errors: list[Evidence] = field(default_factory=list)


def extract_metadata(data: bytes, image_format: str | None = None) -> RawMetadata:
    fmt = (image_format or sniff_format(data) or "").upper() or None
    meta = RawMetadata(format=fmt)
    if fmt == "PNG":
        _read_png_chunks(data, meta)
    else:
        _read_with_pillow(data, meta)
    return meta


def _read_with_pillow(data: bytes, meta: RawMetadata) -> None:
    if meta.format == "HEIF":
        enable_heif()
    try:
        # Header only: no pixels are decoded to read metadata.
        with Image.open(io.BytesIO(data), formats=pillow_formats()) as img:
            meta.format = meta.format or (img.format or None)
            xmp = img.info.get("xmp")
            if isinstance(xmp, bytes | str):
                meta.xmp = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
            meta.exif = _exif_of(img, meta)
    except Exception as exc:
        meta.errors.append(
            metadata_error("container", "could not parse the file header", error=exc)
        )


def _exif_of(img: Image.Image, meta: RawMetadata) -> Image.Exif | None:
    try:
        exif = img.getexif()
        # Touch the sub-IFD now so a corrupt one is reported here, not in a reader.
        exif.get_ifd(0x8769)
    except Exception as exc:
        meta.errors.append(metadata_error("exif", "corrupt EXIF block", error=exc))
        return None
    return _nonempty_exif(exif, img.info.get("exif"), meta)


def _nonempty_exif(exif: Image.Exif, raw: object, meta: RawMetadata) -> Image.Exif | None:
    # Pillow only warns (and returns nothing) for an unreadable block: notice it here.
    if len(exif):
        return exif
    if isinstance(raw, bytes):
        block = raw.removeprefix(b"Exif\x00\x00")
        if len(block) > 8 and _ifd0_entry_count(block) != 0:
            meta.errors.append(metadata_error("exif", "EXIF block present but unreadable"))
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


def _read_png_chunks(data: bytes, meta: RawMetadata) -> None:
    if not data.startswith(PNG_SIGNATURE):
        meta.errors.append(metadata_error("png", "missing PNG signature"))
        return
    pos, total, count = len(PNG_SIGNATURE), 0, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if len(body) < length:
            meta.errors.append(metadata_error("png", f"chunk {kind!r} is truncated"))
            return
        if kind == b"IEND":
            return
        if kind == b"eXIf":
            meta.exif = _load_exif(body, meta)
        elif kind in {b"tEXt", b"zTXt", b"iTXt"}:
            count += 1
            if count > MAX_TEXT_CHUNKS or total > MAX_TEXT_TOTAL:
                continue
            try:
                key, value = _text_chunk(kind, body)
            except (ValueError, zlib.error) as exc:
                meta.errors.append(
                    metadata_error(f"png:{kind.decode()}", "bad text chunk", error=exc)
                )
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


def _text_chunk(kind: bytes, body: bytes) -> tuple[str, str]:
    """Key and value of a tEXt, zTXt or iTXt chunk (PNG spec 11.3.4)."""
    key_raw, sep, rest = body.partition(b"\x00")
    if not sep or not key_raw:
        raise ValueError("no keyword")
    key = key_raw.decode("latin-1")
    if kind == b"tEXt":
        return key, rest[: MAX_TEXT_VALUE + 1].decode("latin-1")
    if kind == b"zTXt":
        return key, _inflate(rest[1:]).decode("latin-1")
    compressed = rest[0:1] == b"\x01"
    _lang, _, rest = rest[2:].partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    raw = _inflate(text) if compressed else text[: MAX_TEXT_VALUE + 1]
    return key, raw.decode("utf-8", errors="replace")


def _inflate(compressed: bytes) -> bytes:
    # Bounded: a few kilobytes can inflate to gigabytes.
    inflater = zlib.decompressobj()
    return inflater.decompress(compressed, MAX_TEXT_VALUE + 1)


def _load_exif(body: bytes, meta: RawMetadata) -> Image.Exif | None:
    exif = Image.Exif()
    try:
        exif.load(body)
        exif.get_ifd(0x8769)
    except Exception as exc:
        meta.errors.append(metadata_error("exif", "corrupt eXIf chunk", error=exc))
        return None
    return _nonempty_exif(exif, body, meta)


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


def exif_raw(exif: Image.Exif | None, tag: int, ifd: int) -> bytes | None:
    if exif is None:
        return None
    try:
        value = exif.get_ifd(ifd).get(tag)
    except Exception:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return value if isinstance(value, bytes) else None
