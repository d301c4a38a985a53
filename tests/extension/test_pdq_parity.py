"""The extension's PDQ (extension/lib/pdq.js) against the server's (fakescope.images._pdq).

Same pixels in, same hash out: each image is decoded exactly as the server decodes it
(`decode_image`, then the same thumbnail to at most 512 px with PIL's BILINEAR), its RGBA
bytes go to a small Node script that runs pdq.js, and the hash and quality must agree with
the ones `decode_image` computed (pdqhash, Meta's C++ reference). Only floating-point
rounding could make them differ; in practice they are identical.

The extension also hashes the pixels turned and flipped, all seven other ways (`mirrored`,
`rotations`, `flips`: what a turned or flipped repost's original hashes to). Each must be the
reference's hash of the same pixels turned or flipped so (pdqhash's `compute` of PIL's
transpose of them), as the plain hash is: pdq.js reads the blur where the turned image's grid
would (and near the edges computes it with the turned image's weights), instead of the
reference's `compute_dihedral` shortcut (sign changes of the DCT block), which is 20-28 bits off
on real pictures. On a picture turned or flipped by PIL's transpose, the hash for its turn must
equal the original picture's hash (within the same few bits) while the plain hash and the other
turns are far from it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pdqhash
import pytest
from pictures import encoded, textured_picture
from PIL import Image, ImageOps

from fakescope.images import DecodedImage, decode_image, pdq_distance

REPO_ROOT = Path(__file__).resolve().parents[2]
PDQ_CLI = REPO_ROOT / "extension" / "tests" / "pdq_cli.mjs"
MAX_SIDE = 512  # fakescope.images._PDQ_MAX_SIDE
MAX_DISTANCE = 4
MAX_QUALITY_DIFF = 2
SHARED_CASES = 20
# How a repost is turned or flipped (PIL's transpose), for each hash the extension derives,
# by its place in pdq.js's result; each derived hash is the hash of the pixels turned back
# (`UNDO`): a quarter turn clockwise is undone by a quarter turn counterclockwise (ROTATE_90).
ROTATION_TURN = {
    "clockwise": Image.Transpose.ROTATE_270,
    "halfTurn": Image.Transpose.ROTATE_180,
    "counterclockwise": Image.Transpose.ROTATE_90,
}
# Upside down is `img[::-1, :]`, the transpose the mirror then a quarter turn counterclockwise,
# the transverse the mirror then clockwise. Each flip undoes itself.
FLIP_TRANSFORM = {
    "upsideDown": Image.Transpose.FLIP_TOP_BOTTOM,
    "transposed": Image.Transpose.TRANSPOSE,
    "transversed": Image.Transpose.TRANSVERSE,
}
# The turned and flipped copies, by the extension's names: (its result's part, the name).
TRANSFORMS: dict[tuple[str, str], Image.Transpose] = {
    ("mirrored", ""): Image.Transpose.FLIP_LEFT_RIGHT,
    **{("rotations", n): turn for n, turn in ROTATION_TURN.items()},
    **{("flips", n): flip for n, flip in FLIP_TRANSFORM.items()},
}
UNDO = {
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
}
FAR_DISTANCE = 64  # unrelated hashes are ~128 bits apart


def server_pixels(decoded: DecodedImage) -> Image.Image:
    """The RGB pixels fakescope hashes: the decoded image, thumbnailed as `_pdq` does."""
    rgb = decoded.rgb
    if max(rgb.size) > MAX_SIDE:
        rgb = rgb.copy()
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
    return rgb


def js_pdqs(images: list[Image.Image], tmp_path: Path) -> list[dict[str, Any]]:
    """pdq.js on each image's RGBA pixels, in one Node process."""
    node = shutil.which("node")
    assert node is not None, "Node.js 20+ runs the extension's PDQ (as its unit tests)"
    args: list[str] = []
    for index, rgb in enumerate(images):
        raw = tmp_path / f"pixels-{index}.rgba"
        raw.write_bytes(np.asarray(rgb.convert("RGBA"), dtype=np.uint8).tobytes())
        args += [str(raw), str(rgb.width), str(rgb.height)]
    run = subprocess.run(
        [str(node), str(PDQ_CLI), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results: list[dict[str, Any]] = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(results) == len(images)
    return results


def js_pdq(rgb: Image.Image, tmp_path: Path) -> dict[str, Any]:
    return js_pdqs([rgb], tmp_path)[0]


def derived_hash(got: dict[str, Any], kind: str, name: str) -> str:
    """pdq.js's hash for the copy turned or flipped as (`kind`, `name`) say."""
    return str(got[kind] if kind == "mirrored" else got[kind][name])


def reference_turned_hash(rgb: Image.Image, kind: str, name: str) -> str:
    """pdqhash's hash of these pixels turned back from (`kind`, `name`), as hex."""
    turn = TRANSFORMS[kind, name]
    turned = rgb.convert("RGB").transpose(UNDO.get(turn, turn))
    hash_bits, _quality = pdqhash.compute(np.ascontiguousarray(np.asarray(turned)))
    return bytes(np.packbits(np.asarray(hash_bits, dtype=np.uint8))).hex()


def assert_parity(data: bytes, tmp_path: Path) -> tuple[int, int]:
    decoded = decode_image(data)
    pixels = server_pixels(decoded)
    got = js_pdq(pixels, tmp_path)
    assert isinstance(got["hash"], str) and len(got["hash"]) == 64
    distance = pdq_distance(decoded.pdq, got["hash"])
    quality_diff = abs(decoded.pdq_quality - int(got["quality"]))
    assert distance <= MAX_DISTANCE, (decoded.pdq, got)
    assert quality_diff <= MAX_QUALITY_DIFF, (decoded.pdq_quality, got)
    assert sorted(got["rotations"]) == sorted(ROTATION_TURN), got
    assert sorted(got["flips"]) == sorted(FLIP_TRANSFORM), got
    if decoded.pdq_quality == 0:
        return distance, quality_diff  # refused (too small): every hash is zero
    for kind, name in TRANSFORMS:
        derived = derived_hash(got, kind, name)
        reference = reference_turned_hash(pixels, kind, name)
        assert pdq_distance(reference, derived) <= MAX_DISTANCE, (kind, name, got)
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


# --- the turned and flipped hashes against turned and flipped pictures -------------------


def transformed_copy(data: bytes, kind: str, name: str) -> bytes:
    """The picture turned or flipped as `name` says (PIL's transpose), re-encoded losslessly."""
    return encoded(decode_image(data).rgb.transpose(TRANSFORMS[kind, name]))


def test_each_turn_is_undone_by_the_one_its_hash_applies() -> None:
    """The table the references are built from: a copy turned or flipped so, turned back by
    the transpose `reference_turned_hash` applies, is the picture again, pixel for pixel."""
    picture = textured_picture(64, 48, 3)
    for turn in TRANSFORMS.values():
        back = picture.transpose(turn).transpose(UNDO.get(turn, turn))
        assert np.array_equal(np.asarray(back), np.asarray(picture)), turn


def other_hashes(got: dict[str, Any], kind: str, name: str) -> list[str]:
    """Every derived hash but the one for this turn or flip: all must be far from the original."""
    return [derived_hash(got, k, n) for k, n in TRANSFORMS if (k, n) != (kind, name)]


TURN_CASES = {
    "texture-640x480": lambda: encoded(textured_picture(640, 480, 1)),
    "texture-1500x900-thumbnailed": lambda: encoded(textured_picture(1500, 900, 3), "JPEG"),
    "texture-700x1300-portrait": lambda: encoded(textured_picture(700, 1300, 4)),
    "texture-300x200": lambda: encoded(textured_picture(300, 200, 2)),
}


@pytest.mark.parametrize(("kind", "transform"), sorted(TRANSFORMS))
@pytest.mark.parametrize("name", sorted(TURN_CASES))
def test_a_turned_or_flipped_pictures_hash_for_it_is_near_the_original(
    name: str, kind: str, transform: str, tmp_path: Path
) -> None:
    original_bytes = TURN_CASES[name]()
    original = decode_image(original_bytes)
    copy = decode_image(transformed_copy(original_bytes, kind, transform))
    assert original.pdq_quality >= 50 and copy.pdq_quality >= 50
    pixels = server_pixels(copy)
    got = js_pdq(pixels, tmp_path)
    assert pdq_distance(got["hash"], copy.pdq) <= MAX_DISTANCE
    assert pdq_distance(got["hash"], original.pdq) > FAR_DISTANCE, "a copy hashes far away"
    derived = derived_hash(got, kind, transform)
    assert pdq_distance(derived, original.pdq) <= MAX_DISTANCE, (got, original)
    others = other_hashes(got, kind, transform)
    assert all(pdq_distance(h, original.pdq) > FAR_DISTANCE for h in others), got
    reference = reference_turned_hash(pixels, kind, transform)
    assert pdq_distance(reference, derived) <= MAX_DISTANCE


def test_turned_and_flipped_shared_pictures_come_within_the_near_distance(
    shared_data: Path, manifest_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    """Real pictures, each turned and flipped all seven ways: the hash for the turn (or flip) is
    the original's (median 0 bits, at most 2, over all 343 pictures of ../shared/data; the
    reference's shortcut gave a median 20-28 and left up to 38% beyond the near distance); no
    plain hash comes near."""
    originals, copies, transforms = [], [], []
    for row in _spread(manifest_rows, SHARED_CASES):
        data = (shared_data / row["relative_path"]).read_bytes()
        original = decode_image(data)
        if original.pdq_quality < 50:
            continue
        for kind, name in TRANSFORMS:
            originals.append(original)
            copies.append(server_pixels(decode_image(transformed_copy(data, kind, name))))
            transforms.append((kind, name))
    assert len(originals) >= 7 * (SHARED_CASES // 2)
    got = js_pdqs(copies, tmp_path)
    near = [
        pdq_distance(derived_hash(g, *t), o.pdq)
        for g, o, t in zip(got, originals, transforms, strict=True)
    ]
    plain = [pdq_distance(g["hash"], o.pdq) for g, o in zip(got, originals, strict=True)]
    assert all(d > FAR_DISTANCE for d in plain), plain
    assert all(d <= MAX_DISTANCE for d in near), near
    assert sorted(near)[len(near) // 2] == 0, near


def test_the_flip_transforms_are_the_ones_the_names_say() -> None:
    """Upside down is `img[::-1, :]`; the transpose is the left-right mirror then a quarter
    turn counterclockwise, the transverse the mirror then a quarter turn clockwise (the
    wording of the hints)."""
    picture = textured_picture(64, 48, 3)
    pixels = np.asarray(picture)
    mirror = ImageOps.mirror(picture)
    upside_down = picture.transpose(FLIP_TRANSFORM["upsideDown"])
    assert np.array_equal(np.asarray(upside_down), pixels[::-1, :])
    transposed = picture.transpose(FLIP_TRANSFORM["transposed"])
    assert np.array_equal(np.asarray(transposed), pixels.transpose(1, 0, 2))
    turned_ccw = mirror.transpose(Image.Transpose.ROTATE_90)
    assert np.array_equal(np.asarray(transposed), np.asarray(turned_ccw))
    transversed = picture.transpose(FLIP_TRANSFORM["transversed"])
    turned_cw = mirror.transpose(Image.Transpose.ROTATE_270)
    assert np.array_equal(np.asarray(transversed), np.asarray(turned_cw))
