"""EXIF blocks (TIFF structures) checked before Pillow reads them.

Pillow copies every entry's data as the entry declares it: an IFD of thousands of entries
that all point at the same megabytes of a block costs seconds and gigabytes of copying.
A real block holds each value once, so the data its entries declare fits in the block.
"""

from __future__ import annotations

import struct

from PIL import Image

EXIF_PREFIX = b"Exif\x00\x00"
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
INTEROP_IFD = 0xA005
MAX_IFD_ENTRIES = 1024
MAX_OUT_OF_RANGE = 8
# Pillow counts a TIFF's pages (n_frames) by walking the whole chain of directories, in a time
# that grows with the square of their number: 200,000 one-pixel pages (23 MB) cost minutes.
# A multi-page scan has tens of pages; web images have one.
MAX_TIFF_PAGES = 1024
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_ORDERS = {b"II*\x00": "<", b"MM\x00*": ">"}


def load_exif(block: bytes) -> Image.Exif:
    """IFD0 and the EXIF sub-IFD of a block, read by Pillow once the structure is plausible;
    ValueError (or Pillow's own error) for a hostile or broken block."""
    check_tiff_structure(block)
    exif = Image.Exif()
    exif.load(block)
    exif.get_ifd(EXIF_IFD)  # read now, so a corrupt sub-IFD is reported by the caller
    return exif


def check_tiff_structure(block: bytes) -> None:
    """Raise ValueError when the IFDs Pillow would read declare more data than the block
    holds (or absurd entry counts). Unknown headers are left to Pillow to refuse."""
    block = block.removeprefix(EXIF_PREFIX)
    order = _ORDERS.get(block[:4])
    if order is None:
        return
    (first,) = struct.unpack(order + "I", _header_field(block, 4, 4))
    declared, out_of_range = 0, 0
    pending, seen = [first], set[int]()
    while pending and len(seen) < 8:
        offset = pending.pop()
        if offset in seen or offset < 8 or offset + 2 > len(block):
            continue
        seen.add(offset)
        size, missing, pointers = _ifd_data(block, offset, order)
        declared, out_of_range = declared + size, out_of_range + missing
        pending += pointers
    if declared > 2 * len(block):
        raise ValueError(f"EXIF entries declare {declared} bytes in a block of {len(block)}")
    if out_of_range > MAX_OUT_OF_RANGE:
        raise ValueError(f"{out_of_range} EXIF entries point past the end of the block")


def check_tiff_pages(data: bytes) -> None:
    """Raise ValueError past MAX_TIFF_PAGES directories in the chain of a TIFF or BigTIFF
    file's pages (a chain that loops back is cut where it does, as Pillow cuts it)."""
    order = _ORDERS.get(data[:4])
    if order is not None:
        offset_of, count_size, entry_size = order + "I", 2, 12
    elif data[:4] in (b"II+\x00", b"MM\x00+"):
        order = "<" if data[0] == ord("I") else ">"
        offset_of, count_size, entry_size = order + "Q", 8, 20
    else:
        return
    width = struct.calcsize(offset_of)
    count_of = order + ("H" if count_size == 2 else "Q")
    start = 4 if width == 4 else 8
    (offset,) = struct.unpack(offset_of, _header_field(data, start, width))
    seen: set[int] = set()
    while offset and offset not in seen and offset + count_size <= len(data):
        seen.add(offset)
        if len(seen) > MAX_TIFF_PAGES:
            raise ValueError(f"more than {MAX_TIFF_PAGES} TIFF pages")
        (count,) = struct.unpack(count_of, data[offset : offset + count_size])
        at = offset + count_size + entry_size * count
        if at + width > len(data):
            return
        (offset,) = struct.unpack(offset_of, data[at : at + width])


def _header_field(data: bytes, start: int, width: int) -> bytes:
    """The first IFD's offset field; ValueError (not struct.error, which the callers that
    catch ValueError would let through) when the header ends before it."""
    field = data[start : start + width]
    if len(field) < width:
        raise ValueError(f"TIFF header cut short at {len(data)} bytes")
    return field


def _ifd_data(block: bytes, offset: int, order: str) -> tuple[int, int, list[int]]:
    """(bytes of out-of-line data declared, entries pointing past the end, sub-IFD offsets)."""
    (count,) = struct.unpack(order + "H", block[offset : offset + 2])
    if count > MAX_IFD_ENTRIES:
        raise ValueError(f"EXIF directory of {count} entries")
    declared, out_of_range, pointers = 0, 0, []
    end = min(offset + 2 + 12 * count, len(block) - 11)
    for at in range(offset + 2, end, 12):
        tag, kind, n, value = struct.unpack(order + "HHII", block[at : at + 12])
        size = _TYPE_SIZES.get(kind, 0) * n
        if tag in (EXIF_IFD, GPS_IFD, INTEROP_IFD):
            pointers.append(value)
        if size <= 4:
            continue
        if value + size > len(block):
            out_of_range += 1
        else:
            declared += size
    return declared, out_of_range, pointers
