"""lib/image-size.js reads the size that the decoder will allocate for, from the header of real
files as encoders write them (Pillow: baseline and progressive JPEG with EXIF, lossy, lossless and
extended WebP, GIF, BMP both ways up, PNG, AVIF), so the worker can refuse to decode an image
too large for a PDQ hash without decoding it."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from PIL import Image, features

EXTENSION_DIR = Path(__file__).resolve().parents[2] / "extension"

READ_SIZES = """
import { readFileSync } from 'node:fs';
import { imageSizeOf } from './lib/image-size.js';
const paths = JSON.parse(process.argv[1]);
console.log(JSON.stringify(paths.map((p) => imageSizeOf(new Uint8Array(readFileSync(p))))));
"""


def encoded(size: tuple[int, int], fmt: str, **options: Any) -> bytes:
    picture = Image.new("RGBA" if fmt == "WEBP" else "RGB", size, (40, 160, 90, 255))
    out = io.BytesIO()
    picture.save(out, format=fmt, **options)
    return out.getvalue()


def test_the_header_size_of_real_files_in_every_format_the_worker_decodes(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker, a long enough string to move the frame header along"
    cases = {
        "baseline.jpg": ((1203, 517), "JPEG", {"exif": exif.tobytes()}),
        "progressive.jpg": ((517, 1203), "JPEG", {"progressive": True}),
        "lossy.webp": ((641, 383), "WEBP", {"lossless": False}),
        "lossless.webp": ((383, 641), "WEBP", {"lossless": True}),
        "extended.webp": ((777, 333), "WEBP", {"exif": exif.tobytes()}),
        "image.gif": ((259, 1031), "GIF", {}),
        "image.bmp": ((333, 77), "BMP", {}),
        "image.png": ((16384, 3), "PNG", {}),
    }
    if features.check("avif"):
        cases["image.avif"] = ((421, 263), "AVIF", {})
    paths = []
    for name, (size, fmt, options) in cases.items():
        path = tmp_path / name
        path.write_bytes(encoded(size, fmt, **options))
        paths.append(str(path))
    # Top-down BMP: a negative height in the header.
    top_down = bytearray(Path(tmp_path / "image.bmp").read_bytes())
    top_down[22:26] = (-77).to_bytes(4, "little", signed=True)
    (tmp_path / "top-down.bmp").write_bytes(bytes(top_down))
    paths.append(str(tmp_path / "top-down.bmp"))
    expected = [list(size) for size, _, _ in cases.values()] + [[333, 77]]

    node = shutil.which("node")
    assert node is not None, "Node.js 20+ runs the extension's pure modules"
    run = subprocess.run(
        [node, "--input-type=module", "-e", READ_SIZES, json.dumps(paths)],
        cwd=EXTENSION_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    sizes = [[s["width"], s["height"]] if s else None for s in json.loads(run.stdout)]
    assert sizes == expected
