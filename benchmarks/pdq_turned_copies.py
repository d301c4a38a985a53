"""How close the extension's turned and flipped PDQ hashes come to the original's, on real
pictures: each picture of ../shared/data (PDQ quality >= 50) is turned and flipped all seven
ways by PIL's transpose, decoded and shrunk as the server does, hashed by extension/lib/pdq.js
under Node, and the hash named for the copy's turn is compared with the original's hash (the
server's). Prints, per kind of copy, the median distance, the share within the server's
near-match distance (31) and the largest distance; and the smallest distance of any copy's
plain hash (a copy must not match by it).

    python benchmarks/pdq_turned_copies.py                      # all pictures (a few minutes)
    python benchmarks/pdq_turned_copies.py --limit 40
    python benchmarks/pdq_turned_copies.py --compare OLD/extension/tests/pdq_cli.mjs

`--compare` runs another version's pdq_cli.mjs on the same copies (e.g. from
`git archive <rev> extension | tar -x -C OLD`) and prints its figures beside. `--reencode`
makes each copy as a repost would be: turned, shrunk to 80% and saved as JPEG (quality 75),
instead of a lossless PNG of the turned pixels.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fakescope.images import decode_image, pdq_distance  # noqa: E402

NEAR_DISTANCE = 31  # the server's FAKESCOPE_PDQ_MAX_DISTANCE default
MAX_SIDE = 512  # the server hashes at most 512 px on the long side
# Each copy by how it is made, and the part of pdq.js's result that should undo it.
COPIES: dict[str, tuple[Image.Transpose, tuple[str, ...]]] = {
    "mirrored": (Image.Transpose.FLIP_LEFT_RIGHT, ("mirrored",)),
    "turned clockwise": (Image.Transpose.ROTATE_270, ("rotations", "clockwise")),
    "turned a half turn": (Image.Transpose.ROTATE_180, ("rotations", "halfTurn")),
    "turned counterclockwise": (Image.Transpose.ROTATE_90, ("rotations", "counterclockwise")),
    "flipped upside down": (Image.Transpose.FLIP_TOP_BOTTOM, ("flips", "upsideDown")),
    "transposed": (Image.Transpose.TRANSPOSE, ("flips", "transposed")),
    "transversed": (Image.Transpose.TRANSVERSE, ("flips", "transversed")),
}


def encoded(rgb: Image.Image, reencode: bool) -> bytes:
    """The copy's file: the turned pixels as PNG, or shrunk to 80% as JPEG (`--reencode`)."""
    buffer = io.BytesIO()
    if reencode:
        size = (max(round(rgb.width * 0.8), 1), max(round(rgb.height * 0.8), 1))
        rgb.convert("RGB").resize(size, Image.Resampling.BILINEAR).save(
            buffer, format="JPEG", quality=75
        )
    else:
        rgb.save(buffer, format="PNG")
    return buffer.getvalue()


def server_pixels(rgb: Image.Image) -> Image.Image:
    if max(rgb.size) > MAX_SIDE:
        rgb = rgb.copy()
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
    return rgb


def run_cli(cli: Path, images: list[Image.Image], workdir: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("Node.js 20+ is needed to run extension/lib/pdq.js")
    results: list[dict[str, Any]] = []
    for start in range(0, len(images), 200):  # keep the command line short
        args: list[str] = []
        for index, rgb in enumerate(images[start : start + 200]):
            raw = workdir / f"{start + index}.rgba"
            raw.write_bytes(np.asarray(rgb.convert("RGBA"), dtype=np.uint8).tobytes())
            args += [str(raw), str(rgb.width), str(rgb.height)]
        run = subprocess.run(
            [node, str(cli), *args], capture_output=True, text=True, check=True, timeout=600
        )
        results += [json.loads(line) for line in run.stdout.splitlines()]
    return results


def part(result: dict[str, Any], path: tuple[str, ...]) -> str:
    value: Any = result
    for key in path:
        value = value[key]
    return str(value)


def summary(distances: list[int]) -> dict[str, float]:
    return {
        "median": statistics.median(distances),
        "within_near": sum(d <= NEAR_DISTANCE for d in distances) / len(distances),
        "max": max(distances),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=0, help="at most this many pictures")
    parser.add_argument("--cli", type=Path, default=REPO_ROOT / "extension/tests/pdq_cli.mjs")
    parser.add_argument("--compare", type=Path, help="another version's pdq_cli.mjs")
    parser.add_argument("--reencode", action="store_true", help="copies shrunk to 80%%, JPEG")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with (args.data / "MANIFEST.tsv").open(newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh, delimiter="\t"), key=lambda r: r["relative_path"])
    if args.limit:
        rows = rows[:: max(len(rows) // args.limit, 1)][: args.limit]
    originals: list[str] = []
    copies: list[Image.Image] = []
    kinds: list[str] = []
    for done, row in enumerate(rows, 1):
        original = decode_image((args.data / row["relative_path"]).read_bytes())
        if original.pdq_quality < 50:
            continue
        for kind, (turn, _path) in COPIES.items():
            copy = decode_image(encoded(original.rgb.transpose(turn), args.reencode))
            originals.append(original.pdq)
            copies.append(server_pixels(copy.rgb))
            kinds.append(kind)
        if done == len(rows) or done % 25 == 0:
            print(f"decoded {done}/{len(rows)} pictures", file=sys.stderr, flush=True)

    versions = {"current": args.cli, **({"compared": args.compare} if args.compare else {})}
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, cli in versions.items():
            got = run_cli(cli, copies, Path(workdir))
            by_kind: dict[str, list[int]] = {kind: [] for kind in COPIES}
            plain: list[int] = []
            for result, original_pdq, kind in zip(got, originals, kinds, strict=True):
                by_kind[kind].append(pdq_distance(part(result, COPIES[kind][1]), original_pdq))
                plain.append(pdq_distance(result["hash"], original_pdq))
            figures[name] = {
                "copies": {kind: summary(d) for kind, d in by_kind.items()},
                "all": summary([d for ds in by_kind.values() for d in ds]),
                "plain_hash_min": min(plain),
            }
    pictures = len(originals) // len(COPIES)
    made = "shrunk to 80% and saved as JPEG 75" if args.reencode else "lossless"
    print(f"{pictures} pictures, {len(copies)} copies ({made}); distance of the hash for the")
    print("copy's turn to the original's hash: median, share within 31 bits, largest")
    for kind in [*COPIES, "all"]:
        cells = []
        for name in versions:
            f = figures[name]["all"] if kind == "all" else figures[name]["copies"][kind]
            cells.append(f"{name}: {f['median']:g}, {f['within_near']:.1%}, {f['max']}")
        print(f"  {kind:<24} " + "   ".join(cells))
    for name in versions:
        print(f"  closest plain hash of a copy ({name}): {figures[name]['plain_hash_min']} bits")
    if args.json:
        report = {"pictures": pictures, "reencoded": args.reencode, "figures": figures}
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
