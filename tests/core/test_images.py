"""decode_image: allowed formats decode to upright RGB; every hostile input gets its typed error."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import hostile_images as hostile
import pytest
from PIL import Image

from fakescope.errors import (
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    UndecodableImageError,
    UnsupportedFormatError,
)
from fakescope.images import (
    ALLOWED_FORMATS,
    MAX_PIXELS_CEILING,
    DecodedImage,
    ImageLimits,
    decode_image,
    enable_heif,
    pdq_distance,
    read_image_bytes,
    sha256_hex,
    sniff_format,
)


def decode_without_warnings(data: bytes, limits: ImageLimits | None = None) -> DecodedImage:
    """Decode with every decompression-bomb warning turned into a test failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return decode_image(data, limits or ImageLimits())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"])
def test_every_allowed_format_decodes_to_rgb_with_its_facts(fmt: str) -> None:
    if fmt == "HEIF":
        enable_heif()
    data = hostile.encode(hostile.scene(96, 64), fmt)
    image = decode_image(data)
    assert image.format == fmt
    assert (image.width, image.height) == (96, 64)
    assert image.rgb.mode == "RGB" and image.rgb.size == (96, 64)
    assert image.n_frames == 1
    assert image.bytes == len(data)
    assert image.sha256 == hashlib.sha256(data).hexdigest() == sha256_hex(data)
    assert len(image.pdq) == 64 and int(image.pdq, 16) >= 0
    assert 0 <= image.pdq_quality <= 100
    assert image.facts() == {
        "format": fmt,
        "width": 96,
        "height": 64,
        "bytes": len(data),
        "pdq": image.pdq,
        "pdq_quality": image.pdq_quality,
        "n_frames": 1,
    }


def test_allowed_formats_are_the_documented_list() -> None:
    assert {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"} == ALLOWED_FORMATS


def test_zero_bytes_raise_empty_image_error() -> None:
    with pytest.raises(EmptyImageError):
        decode_image(b"")


def test_more_bytes_than_the_cap_raise_too_large_before_decoding() -> None:
    data = hostile.encode(hostile.scene(), "PNG")
    with pytest.raises(ImageTooLargeError):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))


def test_reading_a_file_stops_just_past_the_byte_cap() -> None:
    stream = hostile.EndlessStream()
    with pytest.raises(ImageTooLargeError, match="over the limit of 1000 bytes"):
        read_image_bytes(stream, ImageLimits(max_bytes=1000))  # type: ignore[arg-type]
    assert stream.bytes_read == 1001


def test_reading_a_file_within_the_cap_returns_all_of_it(tmp_path: Path) -> None:
    data = hostile.encode(hostile.scene(), "PNG")
    (tmp_path / "a.png").write_bytes(data)
    assert read_image_bytes(tmp_path / "a.png", ImageLimits(max_bytes=len(data))) == data
    with pytest.raises(ImageTooLargeError):
        read_image_bytes(tmp_path / "a.png", ImageLimits(max_bytes=len(data) - 1))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.02, 0.3, 0.6, 0.95])
def test_truncated_files_raise_undecodable(fmt: str, keep: float) -> None:
    data = hostile.encode(hostile.scene(256, 192, seed=3), fmt)
    with pytest.raises(UndecodableImageError):
        decode_image(data[: max(12, int(len(data) * keep))])


def test_corrupt_pixel_data_behind_a_valid_header_raises_undecodable() -> None:
    png = hostile.encode(hostile.scene(128, 96), "PNG")
    start = png.index(b"IDAT") + 4
    # Garbage inside the zlib stream (CRC is not checked by Pillow for IDAT; zlib fails).
    broken = png[:start] + b"\xff" * 64 + png[start + 64 :]
    with pytest.raises(UndecodableImageError):
        decode_image(broken)


def test_header_claiming_ten_billion_pixels_is_too_large_and_never_a_warning() -> None:
    with pytest.raises(ImageTooLargeError):
        decode_without_warnings(hostile.png_header_only(100_000, 100_000))


def test_header_inside_pillows_warning_band_is_too_large_and_never_a_warning() -> None:
    # 100 M pixels: above Pillow's warning threshold (89 M), below its error threshold.
    with pytest.raises(ImageTooLargeError):
        decode_without_warnings(hostile.png_header_only(10_000, 10_000))


def test_outside_pytest_a_bomb_in_pillows_warning_band_prints_no_warning(tmp_path: Path) -> None:
    # pytest resets warning filters per test, so check the import-time policy in a fresh process.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(hostile.png_header_only(10_000, 10_000))
    script = (
        "import pathlib, sys\n"
        "from fakescope.errors import ImageTooLargeError\n"
        "from fakescope.images import decode_image\n"
        "try:\n"
        "    decode_image(pathlib.Path(sys.argv[1]).read_bytes())\n"
        "except ImageTooLargeError:\n"
        "    print('too large')\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", script, str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip() == "too large", result.stderr
    assert "Warning" not in result.stderr


def test_real_zlib_bomb_under_pillows_threshold_is_stopped_by_the_pixel_cap() -> None:
    bomb = hostile.png_zero_bomb(8_500)  # 72 M pixels in about 70 KB
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLargeError):
        decode_without_warnings(bomb)


def test_pixel_cap_is_configurable_and_inclusive() -> None:
    data = hostile.encode(hostile.scene(100, 50), "PNG")
    assert decode_image(data, ImageLimits(max_pixels=5_000)).width == 100
    with pytest.raises(ImageTooLargeError):
        decode_image(data, ImageLimits(max_pixels=4_999))


def test_the_pixel_cap_not_pillows_threshold_decides_and_names_itself() -> None:
    header = hostile.png_header_only(10_000, 10_000)  # 100 M pixels, over Pillow's 89 M
    with pytest.raises(ImageTooLargeError, match="over the limit of 80000000 pixels"):
        decode_without_warnings(header, ImageLimits(max_pixels=80_000_000))
    # A higher cap lets the header through: only the missing pixel data stops this one.
    with pytest.raises(UndecodableImageError):
        decode_without_warnings(header, ImageLimits(max_pixels=150_000_000))
    with pytest.raises(ValueError, match="max_pixels"):
        ImageLimits(max_pixels=MAX_PIXELS_CEILING + 1)


def test_png_with_a_huge_text_chunk_still_decodes() -> None:
    png = hostile.encode(hostile.scene(), "PNG")
    data = hostile.png_with_chunks(png, hostile.text_chunk("parameters", "x" * 3_000_000))
    image = decode_image(data)
    assert (image.format, image.width, image.height) == ("PNG", 96, 64)


def test_png_with_a_compressed_text_bomb_is_too_large() -> None:
    # 50 MB of text in a 50 KB zTXt chunk: Pillow refuses to inflate it, and so do we.
    bomb = hostile.ztxt_chunk("Comment", zlib.compress(b"A" * 50_000_000, 9))
    data = hostile.png_with_chunks(hostile.encode(hostile.scene(), "PNG"), bomb)
    with pytest.raises(ImageTooLargeError):
        decode_image(data)


def test_format_is_sniffed_from_content_not_from_the_file_name(tmp_path: Path) -> None:
    disguised = tmp_path / "holiday.jpg"
    disguised.write_bytes(hostile.encode(hostile.scene(), "PNG"))
    assert decode_image(disguised.read_bytes()).format == "PNG"
    assert sniff_format(disguised.read_bytes()) == "PNG"


def test_dataset_png_saved_with_a_jpg_extension_decodes_as_png(shared_data: Path) -> None:
    path = shared_data / "images/fake/kolors/controlnet__Canny_woman_1_sdxl.jpg"
    assert decode_image(path.read_bytes()).format == "PNG"


def test_polyglot_image_with_appended_zip_decodes_the_image_and_hashes_every_byte() -> None:
    # Documented behaviour: trailing data after a complete image is ignored for pixels but
    # is part of the identity (SHA-256 covers the exact bytes received).
    jpeg = hostile.encode(hostile.scene(), "JPEG")
    polyglot = jpeg + hostile.zip_bytes()
    image = decode_image(polyglot)
    assert image.format == "JPEG"
    assert image.sha256 == sha256_hex(polyglot) != sha256_hex(jpeg)
    assert image.pdq == decode_image(jpeg).pdq


def test_polyglot_png_with_appended_html_decodes_the_image() -> None:
    data = hostile.encode(hostile.scene(), "PNG") + hostile.HTML
    assert decode_image(data).format == "PNG"


def test_html_behind_png_magic_is_undecodable() -> None:
    with pytest.raises(UndecodableImageError):
        decode_image(hostile.PNG_SIGNATURE + hostile.HTML)


def test_html_before_an_image_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError):
        decode_image(hostile.HTML + hostile.encode(hostile.scene(), "PNG"))


@pytest.mark.parametrize(
    "data",
    [hostile.HTML, hostile.SVG, b"%PDF-1.7\n", hostile.zip_bytes(), b"\x00" * 64],
    ids=["html", "svg", "pdf", "zip", "zeros"],
)
def test_non_images_raise_unsupported_format(data: bytes) -> None:
    with pytest.raises(UnsupportedFormatError):
        decode_image(data)


def test_image_formats_outside_the_allow_list_are_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError):
        decode_image(hostile.encode(hostile.scene(32, 32), "ICO"))


def test_every_image_failure_is_an_image_error() -> None:
    for data in (b"", hostile.HTML, hostile.png_header_only(100_000, 100_000)):
        with pytest.raises(ImageError):
            decode_image(data)


def test_cmyk_jpeg_becomes_rgb_with_the_right_colour() -> None:
    image = decode_image(hostile.cmyk_jpeg((0, 255, 255, 0)))  # pure red in CMYK
    red, green, blue = image.rgb.getpixel((10, 10))
    assert image.rgb.mode == "RGB"
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_grey_png_is_scaled_not_clipped() -> None:
    image = decode_image(hostile.png_16bit_grey(8, 8, 32_768))
    assert image.rgb.mode == "RGB"
    assert image.rgb.getpixel((0, 0)) == (128, 128, 128)


def test_16_bit_rgb_png_keeps_its_colour() -> None:
    image = decode_image(hostile.png_16bit_rgb(8, 8, (0x8000, 0x4000, 0x2000)))
    assert image.rgb.getpixel((0, 0)) == (128, 64, 32)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_composited_on_white(mode: str) -> None:
    img = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    img.paste((10, 20, 30, 255), (0, 0, 8, 16))
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE)
        img.info["transparency"] = img.getpixel((15, 15))
    data = hostile.encode(img, "PNG", transparency=img.info.get("transparency"))
    rgb = decode_image(data).rgb
    assert rgb.getpixel((15, 15)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) != (255, 255, 255)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_decode_their_first_frame_and_report_the_frame_count(fmt: str) -> None:
    data = hostile.animated(fmt, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    image = decode_image(data)
    assert image.n_frames == 3
    red, green, blue = image.rgb.getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize(
    "tail",
    [b"!", b"!\xf9\x04", b",", b"," + b"\x00" * 9],
    ids=["extension-introducer", "extension-cut", "descriptor-introducer", "descriptor-cut"],
)
def test_a_gif_cut_short_after_a_frame_decodes_the_frames_before_the_cut(tail: bytes) -> None:
    # Found by fuzz/fuzz_decode.py: Pillow's frame count raised IndexError or struct.error,
    # which decode_image let through (no ImageError) for a GIF cut after its first frame.
    data = hostile.animated("GIF", [(255, 0, 0), (0, 0, 255)])
    assert data.endswith(b"\x3b")  # the trailer, replaced by the start of a cut block
    image = decode_image(data[:-1] + tail)
    assert image.n_frames == 2
    red, green, blue = image.rgb.getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60


def test_exif_orientation_is_applied() -> None:
    image = decode_image(hostile.oriented_jpeg(20, 10, orientation=6))
    assert (image.width, image.height) == (10, 20)
    assert image.rgb.size == (10, 20)
    # Orientation 6 means "rotate 90° clockwise to display": the red left half ends on top.
    red_top = image.rgb.getpixel((5, 2))
    blue_bottom = image.rgb.getpixel((5, 17))
    assert red_top[0] > 200 and red_top[2] < 60
    assert blue_bottom[2] > 200 and blue_bottom[0] < 60


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_exif_does_not_make_readable_pixels_unreadable() -> None:
    data = hostile.jpeg_with_raw_app1(b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + b"\x00" * 16)
    image = decode_image(data)
    assert (image.width, image.height) == (96, 64)


def test_pdq_distance_counts_differing_bits() -> None:
    zero, ones = "0" * 64, "f" * 64
    assert pdq_distance(zero, zero) == 0
    assert pdq_distance(zero, ones) == 256
    assert pdq_distance(zero, "1" + "0" * 63) == 1
    with pytest.raises(ValueError):
        pdq_distance("abc", zero)


def test_pdq_is_stable_under_reencoding_and_far_between_different_photos(
    shared_data: Path,
) -> None:
    photo = (shared_data / "images/real/exif_samples/gps__DSCN0010.jpg").read_bytes()
    other = (shared_data / "images/real/scikit_image_data/chelsea.png").read_bytes()
    original = decode_image(photo)
    small = original.rgb.resize((original.width // 2, original.height // 2))
    reencoded = decode_image(hostile.encode(small, "JPEG", quality=60))
    different = decode_image(other)
    assert original.pdq_quality >= 50
    assert pdq_distance(original.pdq, reencoded.pdq) <= 31
    assert pdq_distance(original.pdq, different.pdq) >= 90


def test_decoded_image_is_independent_of_the_input_buffer() -> None:
    buffer = bytearray(hostile.encode(hostile.scene(), "PNG"))
    image = decode_image(bytes(buffer))
    buffer[:] = b"\x00" * len(buffer)
    assert image.rgb.getpixel((95, 0))[0] == 255


# Each case takes milliseconds now; before the structure checks they took 0.5-3 s at 3 MB
# (and grew with the size: tens of seconds at the 25 MB upload limit).
DECODE_BUDGET_S = 0.5
_PNG = hostile.encode(hostile.scene(), "PNG")
_JPEG = hostile.encode(hostile.scene(), "JPEG")
_SHARED_3MB = b"\x00" * 3_000_000


@pytest.mark.parametrize(
    ("data", "refused"),
    [
        (_JPEG[:2] + b"\xff\xe2\x00\x04ab" * 500_000 + _JPEG[2:], True),
        (_JPEG[:2] + b"\xff" * 3_000_000 + _JPEG[2:], True),
        (hostile.png_with_chunks(_PNG, *[hostile.png_chunk(b"abCd", b"")] * 300_000), True),
        (hostile.exif_entry_bomb(60_000, _SHARED_3MB), True),
        # The pixels are fine; only the EXIF block is hostile: decoded as stored, not rotated.
        (
            hostile.encode(
                hostile.scene(), "WEBP", exif=hostile.exif_entry_bomb(60_000, _SHARED_3MB)
            ),
            False,
        ),
        (
            hostile.png_with_chunks(
                _PNG, hostile.png_chunk(b"eXIf", hostile.exif_entry_bomb(60_000, _SHARED_3MB))
            ),
            False,
        ),
    ],
    ids=[
        "jpeg-500k-tiny-segments",
        "jpeg-3mb-fill-bytes",
        "png-300k-chunks-before-the-pixels",
        "tiff-60k-entries-sharing-3mb",
        "webp-exif-entries-sharing-3mb",
        "png-exif-entries-sharing-3mb",
    ],
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_headers_built_to_be_slow_are_refused_or_skipped_in_milliseconds(
    data: bytes, refused: bool
) -> None:
    started = time.perf_counter()
    if refused:
        with pytest.raises(UndecodableImageError, match="structure refused"):
            decode_image(data)
    else:
        decoded = decode_image(data)
        assert (decoded.width, decoded.height) == (96, 64)
    assert time.perf_counter() - started < DECODE_BUDGET_S


def test_ordinary_files_with_many_parts_still_decode() -> None:
    # Hundreds of metadata segments and chunks, far beyond what editors write, stay allowed.
    jpeg = _JPEG[:2] + b"\xff\xe2\x00\x04ab" * 500 + _JPEG[2:]
    png = hostile.png_with_chunks(_PNG, *[hostile.text_chunk(f"k{i}", "v") for i in range(500)])
    for data in (jpeg, png):
        decoded = decode_image(data)
        assert (decoded.width, decoded.height) == (96, 64)
