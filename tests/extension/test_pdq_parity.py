"""The extension's PDQ (extension/lib/pdq.js) against the server's (fakescope.images._pdq).

Same pixels in, same hash out: each image is decoded exactly as the server decodes it
(`decode_image`, then the same thumbnail to at most 512 px with PIL's BILINEAR), its RGBA
bytes go to a small Node script that runs pdq.js, and the hash and quality must agree with
the ones `decode_image` computed (pdqhash, Meta's C++ reference). Only floating-point
rounding could make them differ; in practice they are identical.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pictures import encoded, textured_picture
from PIL import Image

from fakescope.images import DecodedImage, decode_image, pdq_distance

REPO_ROOT = Path(__file__).resolve().parents[2]
PDQ_CLI = REPO_ROOT / "extension" / "tests" / "pdq_cli.mjs"
MAX_SIDE = 512  # fakescope.images._PDQ_MAX_SIDE
MAX_DISTANCE = 4
MAX_QUALITY_DIFF = 2
SHARED_CASES = 20


def server_pixels(decoded: DecodedImage) -> Image.Image:
    """The RGB pixels fakescope hashes: the decoded image, thumbnailed as `_pdq` does."""
    rgb = decoded.rgb
    if max(rgb.size) > MAX_SIDE:
        rgb = rgb.copy()
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
    return rgb


def js_pdq(rgb: Image.Image, tmp_path: Path) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "Node.js 20+ runs the extension's PDQ (as its unit tests)"
    raw = tmp_path / "pixels.rgba"
    raw.write_bytes(np.asarray(rgb.convert("RGBA"), dtype=np.uint8).tobytes())
    run = subprocess.run(
        [str(node), str(PDQ_CLI), str(raw), str(rgb.width), str(rgb.height)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def assert_parity(data: bytes, tmp_path: Path) -> tuple[int, int]:
    decoded = decode_image(data)
    got = js_pdq(server_pixels(decoded), tmp_path)
    assert isinstance(got["hash"], str) and len(got["hash"]) == 64
    distance = pdq_distance(decoded.pdq, got["hash"])
    quality_diff = abs(decoded.pdq_quality - int(got["quality"]))
    assert distance <= MAX_DISTANCE, (decoded.pdq, got)
    assert quality_diff <= MAX_QUALITY_DIFF, (decoded.pdq_quality, got)
    return distance, quality_diff


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _noise(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray((_rng(seed).random((height, width, 3)) * 255).astype(np.uint8))


def _gradient(width: int, height: int) -> Image.Image:
    ramp = np.linspace(0, 255, width, dtype=np.float64)[None, :].repeat(height, axis=0)
    return Image.fromarray(np.stack([ramp, ramp[::-1, ::-1], ramp * 0.5], -1).astype(np.uint8))


def _checkerboard(width: int, height: int, cell: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    board = (((x // cell) + (y // cell)) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([board, 255 - board, board], -1))


def _transparent(width: int, height: int) -> Image.Image:
    img = textured_picture(width, height, 7).convert("RGBA")
    alpha = np.zeros((height, width), dtype=np.uint8)
    alpha[height // 4 : 3 * height // 4, :] = 255
    alpha[:, : width // 5] = 128
    img.putalpha(Image.fromarray(alpha))
    return img


SYNTHETIC = {
    "texture-640x480-png": lambda: encoded(textured_picture(640, 480, 1)),
    "texture-300x200-jpeg": lambda: encoded(textured_picture(300, 200, 2), "JPEG", quality=85),
    "texture-1500x900-thumbnailed": lambda: encoded(
        textured_picture(1500, 900, 3), "JPEG", quality=90
    ),
    "texture-700x1300-portrait": lambda: encoded(textured_picture(700, 1300, 4)),
    "noise-257x131": lambda: encoded(_noise(257, 131, 5)),
    "noise-64x64-no-blur": lambda: encoded(_noise(64, 64, 6)),
    "gradient-512x512": lambda: encoded(_gradient(512, 512)),
    "checkerboard-400x400": lambda: encoded(_checkerboard(400, 400, 25)),
    "checkerboard-33x90-small": lambda: encoded(_checkerboard(33, 90, 3)),
    "strip-2000x40": lambda: encoded(textured_picture(2000, 40, 8)),
    "flat-grey-200x150": lambda: encoded(Image.new("RGB", (200, 150), (128, 128, 128))),
    "tiny-4x4": lambda: encoded(_noise(4, 4, 9)),
    "transparent-rgba-320x240": lambda: encoded(_transparent(320, 240)),
    "grey-L-mode-250x250": lambda: encoded(textured_picture(250, 250, 10).convert("L")),
    "palette-P-mode-300x180": lambda: encoded(textured_picture(300, 180, 11).convert("P")),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_pdq_matches_the_server_on_synthetic_images(name: str, tmp_path: Path) -> None:
    assert_parity(SYNTHETIC[name](), tmp_path)


def _spread(rows: list[dict[str, str]], count: int) -> list[dict[str, str]]:
    """`count` rows spread evenly over the manifest (sorted by path): every source and kind."""
    ordered = sorted(rows, key=lambda row: row["relative_path"])
    step = max(len(ordered) // count, 1)
    return ordered[::step][:count]


@pytest.mark.parametrize("index", range(SHARED_CASES))
def test_pdq_matches_the_server_on_shared_images(
    index: int, shared_data: Path, manifest_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    chosen = _spread(manifest_rows, SHARED_CASES)
    if index >= len(chosen):
        pytest.skip(f"the manifest lists only {len(chosen)} images")
    row = chosen[index]
    assert_parity((shared_data / row["relative_path"]).read_bytes(), tmp_path)


def test_the_flat_image_has_low_quality_and_the_texture_high(tmp_path: Path) -> None:
    """The quality the extension gates on (>= 50) separates these as the server's does."""
    flat = js_pdq(Image.new("RGB", (200, 150), (90, 120, 200)), tmp_path)
    texture = js_pdq(textured_picture(640, 480, 1), tmp_path)
    assert int(flat["quality"]) < 50 <= int(texture["quality"])
