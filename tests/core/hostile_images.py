"""Builders for the images the tests feed to the decoder and the provenance readers:
ordinary files in every allowed format, and hostile ones made on the spot (bombs,
truncations, polyglots, metadata traps). Nothing here is read from disk."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import Any

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def scene(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A structured RGB picture (gradients and blocks) that hashes with high PDQ quality."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    red = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
    green = (ys * 255 // max(height - 1, 1)).astype(np.uint8)
    blue = np.zeros((height, width), np.uint8)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
        blue[y0 : y0 + height // 4, x0 : x0 + width // 4] = int(rng.integers(60, 255))
    return Image.fromarray(np.stack([red, green, blue], axis=-1), mode="RGB")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_with_chunks(png: bytes, *chunks: bytes) -> bytes:
    """Insert chunks right after IHDR (signature 8 bytes + IHDR chunk 25 bytes)."""
    return png[:33] + b"".join(chunks) + png[33:]


def text_chunk(key: str, value: str) -> bytes:
    return png_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1"))


def ztxt_chunk(key: str, compressed_value: bytes) -> bytes:
    return png_chunk(b"zTXt", key.encode("latin-1") + b"\x00\x00" + compressed_value)


def itxt_chunk(key: str, value: str) -> bytes:
    body = key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")
    return png_chunk(b"iTXt", body)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a token of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_zero_bomb(side: int) -> bytes:
    """A genuine decompression bomb: side x side grey pixels of zeros, a few hundred KB."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    deflate = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [deflate.compress(row) for _ in range(side)]
    parts.append(deflate.flush())
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def png_16bit_rgb(width: int, height: int, rgb16: tuple[int, int, int]) -> bytes:
    """16 bits per channel RGB, which Pillow cannot write itself."""
    pixel = struct.pack(">HHH", *rgb16)
    raw = b"".join(b"\x00" + pixel * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def png_16bit_grey(width: int, height: int, value: int) -> bytes:
    return encode(Image.fromarray(np.full((height, width), value, dtype=np.uint16)), "PNG")


def cmyk_jpeg(cmyk: tuple[int, int, int, int] = (0, 255, 255, 0)) -> bytes:
    return encode(Image.new("CMYK", (32, 24), cmyk), "JPEG", quality=95)


def animated(
    fmt: str, colours: list[tuple[int, int, int]], size: tuple[int, int] = (24, 16)
) -> bytes:
    frames = [Image.new("RGB", size, colour) for colour in colours]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def oriented_jpeg(width: int = 20, height: int = 10, orientation: int = 6) -> bytes:
    """A width x height JPEG, left half red and right half blue, tagged with `orientation`."""
    img = Image.new("RGB", (width, height), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def jpeg_with_exif(tags: dict[int, Any], exif_ifd: dict[int, Any] | None = None) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    if exif_ifd:
        sub = exif.get_ifd(0x8769)
        sub.update(exif_ifd)
    return encode(scene(), "JPEG", exif=exif.tobytes())


def jpeg_with_raw_app1(payload: bytes) -> bytes:
    """A JPEG with an extra APP1 segment holding `payload` verbatim, right after SOI."""
    base = encode(scene(), "JPEG")
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return base[:2] + segment + base[2:]


def xmp_packet(body: str) -> str:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'{body}</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )


def xmp_digital_source_type(code: str, as_attribute: bool = True) -> str:
    uri = f"http://cv.iptc.org/newscodes/digitalsourcetype/{code}"
    ns = 'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
    if as_attribute:
        return xmp_packet(
            f'<rdf:Description rdf:about="" {ns} Iptc4xmpExt:DigitalSourceType="{uri}"/>'
        )
    return xmp_packet(
        f'<rdf:Description rdf:about="" {ns}>'
        f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{uri}"/></rdf:Description>'
    )


def billion_laughs_xmp() -> str:
    """The classic entity-expansion bomb: ten levels of ten references each."""
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return (
        f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(entities)}]>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">&lol9;</x:xmpmeta>'
    )


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return buffer.getvalue()


HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<script>alert(1)</script><rect width="10" height="10"/></svg>'
)


def exif_entry_bomb(entries: int, blob: bytes) -> bytes:
    """A TIFF/EXIF block whose entries all declare the same megabytes of data."""
    data_at = 8 + 2 + 12 * entries + 4
    ifd = struct.pack("<H", entries) + b"".join(
        struct.pack("<HHII", 0x9000 + i % 100, 7, len(blob), data_at) for i in range(entries)
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + blob


def exif_ifd_loop() -> bytes:
    """IFD0 whose EXIF sub-IFD pointer points back at IFD0."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, 4, 1, 8) + b"\x00" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd


def gif_with(extension_bytes: bytes) -> bytes:
    gif = encode(Image.new("RGB", (4, 4)), "GIF")
    table = 3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0
    return gif[: 13 + table] + extension_bytes + gif[13 + table :]


class EndlessStream:
    """/dev/zero as a stream: only bounded reads ever end."""

    def __init__(self) -> None:
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        assert size is not None and size >= 0, "an unbounded read of an endless stream"
        self.bytes_read += size
        return b"\0" * size
