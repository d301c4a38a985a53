"""The extension's PDQ (extension/lib/pdq.js) against the server's (fakescope.images._pdq).

Same pixels in, same hash out: each image is decoded exactly as the server decodes it
(`decode_image`, then the same thumbnail to at most 512 px with PIL's BILINEAR), its RGBA
bytes go to a small Node script that runs pdq.js, and the hash and quality must agree with
the ones `decode_image` computed (pdqhash, Meta's C++ reference). Only floating-point
rounding could make them differ; in practice they are identical.

The extension also derives, from the same DCT block, the hash of the left-right mirror of
the pixels (`mirrored`: what a mirrored repost's original hashes to). It must equal the
reference's own: pdqhash's `compute_dihedral(rgb)[0][MIRROR_INDEX]` on the same pixels. And
on a mirrored picture, that hash must fall within the server's near-match distance of the
original picture's hash while the plain hash is far from it.

Likewise the rotation hashes (`rotations`: what a rotated repost's original hashes to, one
per turn it may have been given) must equal `compute_dihedral(rgb)[0][1..3]`, and on a
picture turned by PIL's transpose, the one for its turn must fall within the near-match
distance of the original's hash while the plain hash is far from it.

And the flip hashes (`flips`: what a repost flipped upside down, or across a diagonal, i.e.
mirrored and turned a quarter turn, hashes to flipped back) must equal
`compute_dihedral(rgb)[0][4]`, `[6]` and `[7]`, with the same near/far checks.
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
# compute_dihedral's order: original, rotate 90, 180, 270, flip X, flip Y, flip +1, flip -1.
# Flip Y (the reference's dct16OriginalToFlipY) is the left-right mirror, `img[:, ::-1]`.
MIRROR_INDEX = 5
# The reference's "rotate 90" is PIL's ROTATE_90 (counterclockwise): the hash that undoes a
# quarter turn clockwise, pdq.js's `rotations.clockwise`; and so on.
ROTATION_INDEX = {"clockwise": 1, "halfTurn": 2, "counterclockwise": 3}
# How a repost is turned, by PIL's transpose, for each of those.
ROTATION_TURN = {
    "clockwise": Image.Transpose.ROTATE_270,
    "halfTurn": Image.Transpose.ROTATE_180,
    "counterclockwise": Image.Transpose.ROTATE_90,
}
# Flip X is upside down (`img[::-1, :]`), flip +1 the transpose (PIL's TRANSPOSE: the mirror
# then a quarter turn counterclockwise), flip -1 the transverse (the mirror then clockwise).
# Each flip undoes itself: the hash named for a copy's flip is its original's.
FLIP_INDEX = {"upsideDown": 4, "transposed": 6, "transversed": 7}
FLIP_TRANSFORM = {
    "upsideDown": Image.Transpose.FLIP_TOP_BOTTOM,
    "transposed": Image.Transpose.TRANSPOSE,
    "transversed": Image.Transpose.TRANSVERSE,
}
NEAR_DISTANCE = 31  # the server's FAKESCOPE_PDQ_MAX_DISTANCE default (server/lookup/)
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


def reference_dihedral_hashes(rgb: Image.Image) -> list[str]:
    """pdqhash's eight dihedral hashes of these pixels, from their own DCT block, as hex."""
    pixels = np.ascontiguousarray(np.asarray(rgb.convert("RGB"), dtype=np.uint8))
    hashes, _quality = pdqhash.compute_dihedral(pixels)
    return [bytes(np.packbits(np.asarray(h, dtype=np.uint8))).hex() for h in hashes]


def reference_mirror_hash(rgb: Image.Image) -> str:
    """pdqhash's hash of the left-right mirror of these pixels, from their own DCT block."""
    return reference_dihedral_hashes(rgb)[MIRROR_INDEX]


def assert_parity(data: bytes, tmp_path: Path) -> tuple[int, int]:
    decoded = decode_image(data)
    pixels = server_pixels(decoded)
    got = js_pdq(pixels, tmp_path)
    assert isinstance(got["hash"], str) and len(got["hash"]) == 64
    assert isinstance(got["mirrored"], str) and len(got["mirrored"]) == 64
    distance = pdq_distance(decoded.pdq, got["hash"])
    quality_diff = abs(decoded.pdq_quality - int(got["quality"]))
    assert distance <= MAX_DISTANCE, (decoded.pdq, got)
    assert quality_diff <= MAX_QUALITY_DIFF, (decoded.pdq_quality, got)
    reference = reference_dihedral_hashes(pixels)
    mirror = reference[MIRROR_INDEX]
    assert pdq_distance(mirror, got["mirrored"]) <= MAX_DISTANCE, (mirror, got)
    assert sorted(got["rotations"]) == sorted(ROTATION_INDEX), got
    for name, index in ROTATION_INDEX.items():
        rotation = got["rotations"][name]
        assert pdq_distance(reference[index], rotation) <= MAX_DISTANCE, (name, reference, got)
    assert sorted(got["flips"]) == sorted(FLIP_INDEX), got
    for name, index in FLIP_INDEX.items():
        flip = got["flips"][name]
        assert pdq_distance(reference[index], flip) <= MAX_DISTANCE, (name, reference, got)
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


# --- the mirror hash against mirrored pictures ------------------------------------------


def mirrored_copy(data: bytes) -> bytes:
    """The picture flipped left to right (`img[:, ::-1]`), re-encoded losslessly."""
    return encoded(ImageOps.mirror(decode_image(data).rgb))


def test_the_mirror_transform_is_the_one_that_undoes_a_left_right_flip() -> None:
    """Flip Y of the mirrored pixels is the original's hash, give or take the sampling grid."""
    picture = textured_picture(640, 480, 1)
    original = decode_image(encoded(picture))
    flipped = server_pixels(decode_image(mirrored_copy(encoded(picture))))
    hashes, _quality = pdqhash.compute_dihedral(np.ascontiguousarray(np.asarray(flipped)))
    packed = [bytes(np.packbits(np.asarray(h, dtype=np.uint8))).hex() for h in hashes]
    distances = [pdq_distance(original.pdq, h) for h in packed]
    assert min(distances) == distances[MIRROR_INDEX] <= NEAR_DISTANCE, distances
    assert all(d > FAR_DISTANCE for i, d in enumerate(distances) if i != MIRROR_INDEX), distances


MIRROR_CASES = {
    "texture-640x480": lambda: encoded(textured_picture(640, 480, 1)),
    "texture-1500x900-thumbnailed": lambda: encoded(textured_picture(1500, 900, 3), "JPEG"),
    "texture-700x1300-portrait": lambda: encoded(textured_picture(700, 1300, 4)),
    "texture-300x200": lambda: encoded(textured_picture(300, 200, 2)),
}


@pytest.mark.parametrize("name", sorted(MIRROR_CASES))
def test_a_mirrored_pictures_mirror_hash_is_near_the_original(name: str, tmp_path: Path) -> None:
    original_bytes = MIRROR_CASES[name]()
    original = decode_image(original_bytes)
    copy = decode_image(mirrored_copy(original_bytes))
    assert original.pdq_quality >= 50 and copy.pdq_quality >= 50
    got = js_pdq(server_pixels(copy), tmp_path)
    assert pdq_distance(got["hash"], copy.pdq) <= MAX_DISTANCE
    assert pdq_distance(got["hash"], original.pdq) > FAR_DISTANCE, "a mirror hashes far away"
    assert pdq_distance(got["mirrored"], original.pdq) <= NEAR_DISTANCE, (got, original.pdq)


def test_mirrored_shared_pictures_mostly_come_within_the_near_distance(
    shared_data: Path, manifest_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    """Real pictures: the reference's sampling grid is not exactly symmetric, so the mirror
    hash of a mirrored copy lands a few to ~30 bits from the original (median ~20 bits over
    ../shared/data, ~6% beyond 31). Most must match; none may match by their plain hash."""
    originals, copies = [], []
    for row in _spread(manifest_rows, SHARED_CASES):
        data = (shared_data / row["relative_path"]).read_bytes()
        original = decode_image(data)
        if original.pdq_quality < 50:
            continue
        originals.append(original)
        copies.append(server_pixels(decode_image(mirrored_copy(data))))
    assert len(originals) >= SHARED_CASES // 2
    got = js_pdqs(copies, tmp_path)
    near = [pdq_distance(g["mirrored"], o.pdq) for g, o in zip(got, originals, strict=True)]
    plain = [pdq_distance(g["hash"], o.pdq) for g, o in zip(got, originals, strict=True)]
    assert all(d > FAR_DISTANCE for d in plain), plain
    assert sum(d <= NEAR_DISTANCE for d in near) >= 0.75 * len(near), near
    for pixels, g in zip(copies, got, strict=True):
        assert pdq_distance(reference_mirror_hash(pixels), g["mirrored"]) <= MAX_DISTANCE


# --- the rotation hashes against rotated pictures ---------------------------------------


# The turned and flipped copies, by the extension's names: (its result's part, the name).
TRANSFORMS = {
    **{("rotations", n): (ROTATION_TURN[n], ROTATION_INDEX[n]) for n in ROTATION_INDEX},
    **{("flips", n): (FLIP_TRANSFORM[n], FLIP_INDEX[n]) for n in FLIP_INDEX},
}


def transformed_copy(data: bytes, kind: str, name: str) -> bytes:
    """The picture turned or flipped as `name` says (PIL's transpose), re-encoded losslessly."""
    return encoded(decode_image(data).rgb.transpose(TRANSFORMS[kind, name][0]))


def test_the_dihedral_indices_are_the_ones_that_undo_each_turn_and_flip() -> None:
    """On a turned or flipped picture, the reference's dihedral hash named for that turn or
    flip is the original's hash (give or take the sampling grid), and every other one is far."""
    picture = textured_picture(640, 480, 1)
    original = decode_image(encoded(picture))
    for (kind, name), (_, index) in TRANSFORMS.items():
        copy = server_pixels(decode_image(transformed_copy(encoded(picture), kind, name)))
        distances = [pdq_distance(original.pdq, h) for h in reference_dihedral_hashes(copy)]
        assert min(distances) == distances[index] <= NEAR_DISTANCE, (name, distances)
        assert all(d > FAR_DISTANCE for i, d in enumerate(distances) if i != index), distances


def other_hashes(got: dict[str, Any], kind: str, name: str) -> list[str]:
    """The hashes that must be far from the original on a copy turned or flipped as `name`:
    the other rotations for a turn; for a flip, every other derived hash."""
    others = [h for other, h in got[kind].items() if other != name]
    if kind == "flips":
        others += [got["mirrored"], *got["rotations"].values()]
    return others


@pytest.mark.parametrize(("kind", "transform"), sorted(TRANSFORMS))
@pytest.mark.parametrize("name", sorted(MIRROR_CASES))
def test_a_turned_or_flipped_pictures_hash_for_it_is_near_the_original(
    name: str, kind: str, transform: str, tmp_path: Path
) -> None:
    original_bytes = MIRROR_CASES[name]()
    original = decode_image(original_bytes)
    copy = decode_image(transformed_copy(original_bytes, kind, transform))
    assert original.pdq_quality >= 50 and copy.pdq_quality >= 50
    pixels = server_pixels(copy)
    got = js_pdq(pixels, tmp_path)
    assert pdq_distance(got["hash"], copy.pdq) <= MAX_DISTANCE
    assert pdq_distance(got["hash"], original.pdq) > FAR_DISTANCE, "a copy hashes far away"
    assert pdq_distance(got[kind][transform], original.pdq) <= NEAR_DISTANCE, (got, original)
    others = other_hashes(got, kind, transform)
    assert all(pdq_distance(h, original.pdq) > FAR_DISTANCE for h in others), got
    reference = reference_dihedral_hashes(pixels)[TRANSFORMS[kind, transform][1]]
    assert pdq_distance(reference, got[kind][transform]) <= MAX_DISTANCE


@pytest.mark.parametrize("kind", ["rotations", "flips"])
def test_turned_or_flipped_shared_pictures_mostly_come_within_the_near_distance(
    kind: str, shared_data: Path, manifest_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    """Real pictures, each turned (or flipped) each way: most hashes for the turn (or flip)
    match the original's; no plain hash does."""
    names = [name for k, name in TRANSFORMS if k == kind]
    originals, copies, transforms = [], [], []
    for row in _spread(manifest_rows, SHARED_CASES):
        data = (shared_data / row["relative_path"]).read_bytes()
        original = decode_image(data)
        if original.pdq_quality < 50:
            continue
        for name in names:
            originals.append(original)
            copies.append(server_pixels(decode_image(transformed_copy(data, kind, name))))
            transforms.append(name)
    assert len(originals) >= 3 * (SHARED_CASES // 2)
    got = js_pdqs(copies, tmp_path)
    near = [
        pdq_distance(g[kind][t], o.pdq) for g, o, t in zip(got, originals, transforms, strict=True)
    ]
    plain = [pdq_distance(g["hash"], o.pdq) for g, o in zip(got, originals, strict=True)]
    assert all(d > FAR_DISTANCE for d in plain), plain
    assert sum(d <= NEAR_DISTANCE for d in near) >= 0.75 * len(near), near


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
