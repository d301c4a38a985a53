"""Container walkers: the metadata blocks of PNG and JPEG files, read straight from the bytes
with hard caps, and a GIF block count. Hostile files hide their cost in structure (hundreds
of thousands of tiny chunks or segments), so every walk stops at a count, not only a size.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_VALUE = 1024 * 1024  # characters kept per text chunk (a ComfyUI graph fits easily)
MAX_TEXT_TOTAL = 8 * 1024 * 1024
MAX_TEXT_CHUNKS = 256
# Real files stay far below these (a 25 MB PNG in 8 KB IDAT chunks has ~3,000 chunks); they
# also bound the C2PA reader, whose cost grows with the parts it walks (~20 µs each).
MAX_PNG_CHUNKS = 8_000
MAX_JPEG_SEGMENTS = 4_096
MAX_GIF_BLOCKS = 16_000
# Pillow opens a GIF, and counts its frames, by walking its blocks in Python: every frame
# (~15 µs each), extension, data sub-block and stray byte between blocks (one to three µs
# each). 25 MB of one-pixel frames, one-byte sub-blocks, empty comments or stray bytes cost
# it 4 (stray bytes) to 35 seconds. Real files stay far below: a long animation has
# thousands of frames, and a 25 MB GIF in full 255-byte sub-blocks about 100,000 of them.
MAX_GIF_FRAMES = 20_000
MAX_GIF_PARTS = 200_000
# Each scan of a progressive JPEG is a pass over every block of the image, however few bytes
# it takes (an end-of-band run covers the whole image in a few bytes): thousands of scans in
# a few hundred kilobytes cost minutes (libjpeg-turbo's "LJT-01-003"). Encoders write about
# ten (libjpeg's default script: 10 in colour, 6 in grey); a hundred leaves room for any
# hand-tuned script.
MAX_JPEG_SCANS = 100
XMP_JPEG_SIGNATURE = b"http://ns.adobe.com/xap/1.0/\x00"
EXIF_JPEG_SIGNATURE = b"Exif\x00\x00"


class TooComplex(ValueError):
    """The container has more structural parts than any real image of its kind."""


@dataclass(frozen=True)
class Block:
    """One metadata block found in a container: its kind and raw body, or a problem."""

    kind: str  # "text", "exif", "xmp", "error"
    body: bytes = b""
    key: str = ""
    problem: str = ""


def png_blocks(data: bytes) -> Iterator[Block]:
    """Text chunks (decoded later), the first eXIf chunk; errors as `Block("error")`.
    Raises TooComplex past MAX_PNG_CHUNKS chunks."""
    if not data.startswith(PNG_SIGNATURE):
        yield Block("error", problem="missing PNG signature")
        return
    pos, chunks, texts, exif_seen = len(PNG_SIGNATURE), 0, 0, False
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        start, pos = pos + 8, pos + 12 + length
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise TooComplex(f"more than {MAX_PNG_CHUNKS} PNG chunks")
        if start + length > len(data):
            yield Block("error", problem=f"chunk {kind!r} is truncated")
            return
        if kind == b"IEND":
            return
        if kind == b"eXIf" and not exif_seen:  # the PNG spec allows one
            exif_seen = True
            yield Block("exif", data[start : start + length])
        elif kind in {b"tEXt", b"zTXt", b"iTXt"}:
            texts += 1
            if texts <= MAX_TEXT_CHUNKS:
                yield Block("text", data[start : start + length], key=kind.decode())


def png_text(kind: str, body: bytes) -> tuple[str, str]:
    """Key and value of a tEXt, zTXt or iTXt chunk (PNG spec 11.3.4); ValueError or
    zlib.error when malformed. Values are cut just past MAX_TEXT_VALUE."""
    key_raw, sep, rest = body.partition(b"\x00")
    if not sep or not key_raw:
        raise ValueError("no keyword")
    key = key_raw[:80].decode("latin-1")
    if kind == "tEXt":
        return key, rest[: MAX_TEXT_VALUE + 1].decode("latin-1")
    if kind == "zTXt":
        return key, _inflate(rest[1:]).decode("latin-1")
    compressed = rest[0:1] == b"\x01"
    _lang, _, rest = rest[2:].partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    raw = _inflate(text) if compressed else text[: MAX_TEXT_VALUE + 1]
    return key, raw.decode("utf-8", errors="replace")


def _inflate(compressed: bytes) -> bytes:
    # Bounded: a few kilobytes can inflate to gigabytes.
    return zlib.decompressobj().decompress(compressed, MAX_TEXT_VALUE + 1)


def jpeg_blocks(data: bytes) -> Iterator[Block]:
    """The first APP1 EXIF and APP1 XMP segments before the scan data; lying lengths and
    cut segments as errors. Raises TooComplex past MAX_JPEG_SEGMENTS markers."""
    pos, markers, found = 2, 0, set()
    while pos + 4 <= len(data):
        markers += 1
        if markers > MAX_JPEG_SEGMENTS:
            raise TooComplex(f"more than {MAX_JPEG_SEGMENTS} JPEG markers before the scan")
        if data[pos] != 0xFF:
            yield Block("error", problem=f"no JPEG marker at byte {pos}")
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after this
            return
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(data):
            yield Block("error", problem=f"segment 0xFF{marker:02X} declares {length} bytes")
            return
        body = data[pos + 4 : end]
        pos = end
        if marker != 0xE1:
            continue
        if body.startswith(EXIF_JPEG_SIGNATURE) and "exif" not in found:
            found.add("exif")
            yield Block("exif", body[len(EXIF_JPEG_SIGNATURE) :])
        elif body.startswith(XMP_JPEG_SIGNATURE) and "xmp" not in found:
            found.add("xmp")
            yield Block("xmp", body[len(XMP_JPEG_SIGNATURE) :])


# The next marker after a scan's entropy-coded data: 0xFF followed by neither a stuffed zero,
# a restart marker (RST0-7, inside the data) nor another 0xFF (fill).
_MARKER_AFTER_SCAN = re.compile(rb"\xff(?![\x00\xd0-\xd7\xff])")


def count_jpeg_scans(data: bytes) -> int:
    """The scans (SOS markers) of a JPEG's first image, up to its end-of-image marker.
    Raises TooComplex past MAX_JPEG_SCANS scans, or past twice MAX_JPEG_SEGMENTS markers
    (those before the first scan, which `jpeg_blocks` caps, and the tables between scans)."""
    pos, markers, scans = 2, 0, 0
    while pos + 4 <= len(data):
        markers += 1
        if markers > 2 * MAX_JPEG_SEGMENTS:
            raise TooComplex(f"more than {2 * MAX_JPEG_SEGMENTS} JPEG markers")
        if data[pos] != 0xFF:
            return scans  # broken: Pillow says how
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # end of image (an MPO's next picture, a motion photo's video follow)
            return scans
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
        if marker == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise TooComplex(f"more than {MAX_JPEG_SCANS} JPEG scans")
            following = _MARKER_AFTER_SCAN.search(data, pos)
            if following is None:
                return scans
            pos = following.start()
    return scans


def check_gif_structure(data: bytes) -> None:
    """Raise TooComplex past MAX_GIF_FRAMES images, or past MAX_GIF_PARTS extensions, data
    sub-blocks and stray bytes, walked as Pillow walks them (a stray byte is skipped alone)."""
    if len(data) < 13:
        return
    pos = _gif_first_block(data)
    frames, parts = 0, 0
    while pos < len(data) and data[pos] != 0x3B:  # up to the trailer
        introducer = data[pos]
        if introducer == 0x2C:  # image descriptor, optional local table, LZW code size
            frames += 1
            if frames > MAX_GIF_FRAMES:
                raise TooComplex(f"more than {MAX_GIF_FRAMES} GIF frames")
            pos = _after_gif_image_descriptor(data, pos)
        else:  # an extension's introducer and label, or a stray byte
            parts += 1
            pos += 2 if introducer == 0x21 else 1
        if introducer == 0x21:
            pos = _after_gif_extension_head(data, pos, first_frame=frames == 0)
        if introducer in (0x21, 0x2C):
            while pos < len(data) and data[pos] and parts <= MAX_GIF_PARTS:  # data sub-blocks
                parts += 1
                pos += data[pos] + 1
            pos += 1  # the zero terminator
        if parts > MAX_GIF_PARTS:
            raise TooComplex(f"more than {MAX_GIF_PARTS} GIF blocks and stray bytes")


def _after_gif_extension_head(data: bytes, pos: int, *, first_frame: bool) -> int:
    """Where Pillow walks on an extension's sub-blocks from (``pos``: just after its label).

    Pillow reads an extension's first sub-block apart from the rest (and, on the first frame,
    the second of a looping GIF's NETSCAPE2.0 one): when that one is empty, its terminator
    does not end the extension but for a comment; the bytes after it are walked as more
    sub-blocks. A walk that stopped there would see other blocks than Pillow walks: a big
    sub-block hiding thousands of stray bytes Pillow steps through one by one."""
    if pos >= len(data) or data[pos - 1] == 0xFE:
        return pos
    head = data[pos + 1 : pos + 1 + data[pos]]
    if first_frame and data[pos - 1] == 0xFF and head.startswith(b"NETSCAPE2.0"):
        pos += len(head) + 1
    return pos + 1 if pos < len(data) and data[pos] == 0 else pos


def _gif_first_block(data: bytes) -> int:
    """Where a GIF's blocks start: after the header, screen descriptor and global table."""
    return 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)


def _after_gif_image_descriptor(data: bytes, pos: int) -> int:
    """Past the image descriptor at ``pos``, its local table and LZW code size: its data
    sub-blocks start there."""
    flags = data[pos + 9] if pos + 9 < len(data) else 0
    return pos + 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1


def count_gif_blocks(data: bytes) -> int:
    """Extension, image and data sub-blocks of a GIF, up to the cap (TooComplex past it).
    Only a count: FakeScope reads no GIF metadata itself, but C2PA's reader walks them all."""
    if len(data) < 13:
        return 0
    pos = _gif_first_block(data)
    blocks = 0
    while pos < len(data):
        introducer = data[pos]
        if introducer == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif introducer == 0x2C:
            pos = _after_gif_image_descriptor(data, pos)
        else:  # trailer or garbage
            return blocks
        while pos < len(data) and data[pos]:  # data sub-blocks until the zero terminator
            blocks += 1
            if blocks > MAX_GIF_BLOCKS:
                raise TooComplex(f"more than {MAX_GIF_BLOCKS} GIF blocks")
            pos += data[pos] + 1
        pos += 1
        blocks += 1
    return blocks
