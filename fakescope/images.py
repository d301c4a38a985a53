"""Safe decoding of untrusted image bytes, and the image's identity (SHA-256 and PDQ).

Every failure is a typed `ImageError`: the caller never sees a Pillow exception or a
decompression-bomb warning.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import os
import stat
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pdqhash
from PIL import Image, ImageOps

from fakescope.containers import (
    PNG_SIGNATURE,
    TooComplex,
    check_gif_structure,
    count_jpeg_scans,
    jpeg_blocks,
)
from fakescope.errors import (
    EmptyImageError,
    ImageTooLargeError,
    UndecodableImageError,
    UnsupportedFormatError,
)
from fakescope.exif_block import check_tiff_pages, check_tiff_structure

__all__ = [
    "ALLOWED_FORMATS",
    "DecodedImage",
    "ImageLimits",
    "decode_image",
    "enable_heif",
    "pdq_distance",
    "pillow_formats",
    "read_image_bytes",
    "sha256_hex",
    "sniff_format",
]

ALLOWED_FORMATS: frozenset[str] = frozenset(
    {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"}
)

# Process-wide policy, set once at import (warnings.catch_warnings is not thread-safe, and
# decoding runs in worker threads): a decompression bomb is an error, never a warning. Pillow
# warns between 1x and 2x its own threshold; this turns that warning into an exception, which
# decode_image reports as ImageTooLargeError. Pillow's "Corrupt EXIF data" warning is dropped:
# a broken EXIF block only means "orientation unknown" here, and provenance reports it.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)

# The pixel limit that matters is `ImageLimits.max_pixels`, checked from the header before
# any pixel is decoded, with a message naming it. Pillow's own threshold (89 Mpx) would
# refuse larger images first, whatever the limit says; it is raised to the highest limit
# allowed, and stays as a backstop.
MAX_PIXELS_CEILING = 500_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS_CEILING

# PDQ's reference filters cost about a second on a 9-megapixel photo; every image is hashed
# from the same bounded downscale instead, which keeps hashes comparable across sizes.
_PDQ_MAX_SIDE = 512

# Leading bytes of the allowed containers. Used to tell "an allowed format, but broken"
# (UndecodableImageError) from "not an image we accept" (UnsupportedFormatError).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied before any pixel is decoded."""

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 64_000_000

    def __post_init__(self) -> None:
        if not 1 <= self.max_pixels <= MAX_PIXELS_CEILING:
            raise ValueError(f"max_pixels must be between 1 and {MAX_PIXELS_CEILING}")


@dataclass(frozen=True)
class DecodedImage:
    """The first frame of an image as upright 8-bit RGB, with its identity."""

    rgb: Image.Image = field(repr=False)
    format: str
    width: int
    height: int
    sha256: str
    pdq: str
    pdq_quality: int
    n_frames: int
    bytes: int

    def facts(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "pdq": self.pdq,
            "pdq_quality": self.pdq_quality,
            "n_frames": self.n_frames,
        }


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pdq_distance(a_hex: str, b_hex: str) -> int:
    """Hamming distance between two 256-bit PDQ hashes given as 64 hex characters."""
    if len(a_hex) != 64 or len(b_hex) != 64:
        raise ValueError("PDQ hashes must be 64 hex characters")
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


def sniff_format(data: bytes) -> str | None:
    """The allowed container the leading bytes announce, or None. Never trusts a file name."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AVIF_BRANDS:
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
    return None


def pillow_formats() -> list[str]:
    """The allowed formats Pillow can open right now (HEIF only once its plugin is registered)."""
    Image.init()
    return sorted(name for name in ALLOWED_FORMATS if name in Image.OPEN)


@functools.cache
def enable_heif() -> None:
    """Let Pillow open HEIF/HEIC (pillow-heif), once per process."""
    # Imported lazily: pillow-heif loads libheif, which most requests never need.
    from pillow_heif import register_heif_opener

    register_heif_opener()


def read_image_bytes(
    source: str | os.PathLike[str] | BinaryIO, limits: ImageLimits = ImageLimits()
) -> bytes:
    """The bytes of an image file (a path, or an open binary stream such as stdin), read up
    to the byte cap: a file over it is ImageTooLargeError without reading the rest (a video
    passed by mistake, /dev/zero). OSError for a path that cannot be read; EmptyImageError
    for a named pipe that no program writes to (reading it would wait for ever)."""
    if isinstance(source, str | os.PathLike):
        with _open_without_waiting(source) as (stream, first):
            return _read_capped(stream, limits, first)
    return _read_capped(source, limits)


@contextlib.contextmanager
def _open_without_waiting(path: str | os.PathLike[str]) -> Iterator[tuple[BinaryIO, bytes]]:
    """The file open for reading, and the bytes already read from it.

    open() of a named pipe waits until a program opens it for writing, and may never return.
    Opened without waiting, a pipe with a writer (a shell's `<(command)`) is read as standard
    input is; one without is refused at once.
    """
    no_wait = getattr(os, "O_NONBLOCK", 0)  # POSIX; elsewhere there are no named pipes to fear
    fd = os.open(path, os.O_RDONLY | no_wait | getattr(os, "O_BINARY", 0))
    with open(fd, "rb", buffering=0) as stream:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        first = b""
        if stat.S_ISFIFO(mode):
            try:
                first = os.read(fd, 1 << 16)
            except BlockingIOError:  # a writer is there; it has written nothing yet
                pass
            else:
                if not first:
                    raise EmptyImageError(
                        "a named pipe that no program writes to; start its writer first, or "
                        "give - and redirect the pipe to standard input"
                    )
        if no_wait:
            os.set_blocking(fd, True)  # a terminal or a pipe with a writer: wait for its bytes
        yield stream, first


def _read_capped(source: BinaryIO, limits: ImageLimits, first: bytes = b"") -> bytes:
    chunks, total = [first], len(first)
    while total <= limits.max_bytes:
        chunk = source.read(min(1 << 20, limits.max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limits.max_bytes:
        raise ImageTooLargeError(f"the file is over the limit of {limits.max_bytes} bytes")
    return b"".join(chunks)


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Decode untrusted bytes into a `DecodedImage`, or raise an `ImageError` subclass."""
    if not data:
        raise EmptyImageError("no bytes were given")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"{len(data)} bytes is over the limit of {limits.max_bytes}")
    announced = sniff_format(data)
    if announced == "HEIF":
        enable_heif()
    _check_structure(data, announced)
    with _open(data, announced) as img:
        fmt = _format_name(img, announced)
        width, height = img.size
        if width * height > limits.max_pixels:
            raise ImageTooLargeError(
                f"{width}x{height} is over the limit of {limits.max_pixels} pixels"
            )
        n_frames = _frame_count(img)
        rgb = _upright_rgb(img)
    vector, quality = _pdq(rgb)
    return DecodedImage(
        rgb=rgb,
        format=fmt,
        width=rgb.width,
        height=rgb.height,
        sha256=sha256_hex(data),
        pdq=vector,
        pdq_quality=quality,
        n_frames=n_frames,
        bytes=len(data),
    )


# Pillow parses a PNG's chunks before the image data in Python, one by one; real files have
# a handful there (a 25 MB file's thousands of chunks are image data, after the first IDAT).
MAX_PNG_CHUNKS_BEFORE_DATA = 4_096


def _check_structure(data: bytes, announced: str | None) -> None:
    """Refuse, before Pillow parses them, headers built to make parsing slow.

    Pillow walks JPEG segments, PNG chunks and GIF blocks in Python, with no cap, reads every
    entry of a TIFF directory and walks every page of a TIFF or GIF to count them: a few
    megabytes of tiny segments, fill bytes, entries sharing one blob or one-pixel pages or
    frames cost it seconds (minutes at the upload limit). libjpeg decodes every scan of a
    progressive JPEG over the whole image, however few bytes the scan takes. No camera or
    editor writes such files; each check costs microseconds on a real one (a GIF of
    megabytes: milliseconds, a walk over its sub-blocks).
    """
    try:
        if announced == "JPEG":
            for _ in jpeg_blocks(data):  # counts markers up to the scan; raises past the cap
                pass
            count_jpeg_scans(data)
        elif announced == "PNG":
            _count_png_chunks_before_data(data)
        elif announced == "GIF":
            check_gif_structure(data)
        elif announced == "TIFF":
            check_tiff_structure(data)
            check_tiff_pages(data)
        elif announced is None:  # BigTIFF has no magic above, but Pillow opens it as a TIFF
            check_tiff_pages(data)
    except (TooComplex, ValueError, struct.error) as exc:
        raise UndecodableImageError(f"{announced or 'TIFF'} structure refused: {exc}") from exc


def _count_png_chunks_before_data(data: bytes) -> None:
    pos, chunks = len(PNG_SIGNATURE), 0
    while pos + 8 <= len(data) and data[pos + 4 : pos + 8] not in (b"IDAT", b"IEND"):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS_BEFORE_DATA:
            raise TooComplex(f"more than {MAX_PNG_CHUNKS_BEFORE_DATA} chunks before the pixels")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        pos += 12 + length


def _open(data: bytes, announced: str | None) -> Image.Image:
    """Read the header only (no pixels yet), restricted to the allowed formats."""
    try:
        return Image.open(io.BytesIO(data), formats=pillow_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"decompression bomb: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        if announced is None:
            raise UnsupportedFormatError("not an image in an allowed format") from exc
        raise UndecodableImageError(f"{announced} header is corrupt or truncated") from exc
    except ValueError as exc:
        # Pillow refuses PNG text chunks that inflate past its cap: a bomb in the metadata.
        if "too large" in str(exc).lower():
            raise ImageTooLargeError(f"metadata chunk too large: {exc}") from exc
        raise UndecodableImageError(f"corrupt image header: {exc}") from exc
    except Exception as exc:
        raise UndecodableImageError(f"corrupt image header: {exc}") from exc


def _format_name(img: Image.Image, announced: str | None) -> str:
    fmt = (img.format or announced or "").upper()
    if fmt == "MPO":
        # Multi-picture JPEG (stereo and some compact cameras): the first picture is a JPEG.
        fmt = "JPEG"
    if fmt not in ALLOWED_FORMATS:
        raise UnsupportedFormatError(f"format {fmt or 'unknown'} is not allowed")
    return fmt


def _frame_count(img: Image.Image) -> int:
    """The frames Pillow can walk to. A later frame cut short or corrupt (a GIF truncated
    after its first frame: Pillow raises IndexError or struct.error while counting) must
    not make the first frame unreadable, as a browser shows such a file: the frames before
    it are counted."""
    try:
        return int(getattr(img, "n_frames", 1) or 1)
    except Exception:
        return img.tell() + 1


def _upright_rgb(img: Image.Image) -> Image.Image:
    """Decode the first frame, apply EXIF orientation, and flatten it to 8-bit RGB."""
    try:
        img.seek(0)
        img.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"decompression bomb: {exc}") from exc
    except Exception as exc:
        raise UndecodableImageError(f"pixel data is corrupt or truncated: {exc}") from exc
    frame = _apply_orientation(img)
    try:
        return _to_rgb(frame)
    except Exception as exc:
        raise UndecodableImageError(f"cannot convert {frame.mode} pixels to RGB: {exc}") from exc


def _apply_orientation(img: Image.Image) -> Image.Image:
    raw_exif = img.info.get("exif")
    if isinstance(raw_exif, bytes):
        try:
            # Pillow copies every entry's data as declared: a hostile block costs seconds.
            check_tiff_structure(raw_exif)
        except (ValueError, struct.error):
            return img  # orientation unknown: the pixels as stored (provenance reports it)
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:
        # A broken EXIF block must not make readable pixels unreadable; keep them as stored.
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        img = _high_depth_to_l(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "RGB":
        return img.copy()
    return img.convert("RGB")


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """Scale high-depth grey to 8 bits (Pillow's own conversion to "L" clips at 255)."""
    if img.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8), "L")
    # 32-bit integer and float modes do not say their range: scale by what the data holds.
    values = np.asarray(img, dtype=np.float32)
    top = float(values.max()) if values.size else 0.0
    if 0.0 < top <= 1.0 and img.mode == "F":
        scale = 255.0
    elif top > 255.0:
        scale = 255.0 / (65535.0 if top <= 65535.0 else top)
    else:
        scale = 1.0
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")


def _pdq(rgb: Image.Image) -> tuple[str, int]:
    small = rgb
    if max(rgb.size) > _PDQ_MAX_SIDE:
        small = rgb.copy()
        small.thumbnail((_PDQ_MAX_SIDE, _PDQ_MAX_SIDE), Image.Resampling.BILINEAR)
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(small, dtype=np.uint8)))
    packed = np.packbits(np.asarray(bits, dtype=np.uint8))
    return packed.tobytes().hex(), int(quality)
