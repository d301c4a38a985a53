"""Image store benchmark: what keeping image bytes in the database costs against files.

The server keeps analysed image bytes for /v1/ask and the review page, on files
(FAKESCOPE_IMAGE_STORE=files, one machine) or in the database (`database`, the default
when API processes and GPU workers are split). This measures the three operations the
server performs, through the same store classes, for several image sizes:

  save    bytes not kept yet (once per new analysed image)
  again   bytes kept already: only their retention clock moves (a cache hit)
  load    read them back (a question about the image, the review page)

on files, SQLite and PostgreSQL, and prints milliseconds per operation with the ratio to
files measured in the same run (best of the rounds, alternated).

    python benchmarks/bench_image_store.py            # full run (about a minute)
    python benchmarks/bench_image_store.py --quick    # smoke run for CI
    python benchmarks/bench_image_store.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench_scale_out import create_database, drop_database  # noqa: E402

OPERATIONS = ("save", "again", "load")


def payloads(size: int, count: int, seed: int) -> dict[str, bytes]:
    """``count`` distinct byte strings of ``size`` bytes, by their SHA-256."""
    found = {}
    for i in range(count):
        data = (seed * 1_000_003 + i).to_bytes(8, "big") + os.urandom(size - 8)
        found[hashlib.sha256(data).hexdigest()] = data
    return found


async def timed(items: dict[str, bytes], op: Callable[[str, bytes], Awaitable[Any]]) -> float:
    """Milliseconds per operation over ``items``, one after another."""
    started = time.perf_counter()
    for sha, data in items.items():
        await op(sha, data)
    return (time.perf_counter() - started) * 1000 / len(items)


async def measure(store: Any, items: dict[str, bytes]) -> dict[str, float]:
    async def load(sha: str, data: bytes) -> None:
        if await store.load(sha) != data:
            raise RuntimeError("the store gave back other bytes")

    return {
        "save": await timed(items, store.save),
        "again": await timed(items, store.save),
        "load": await timed(items, load),
    }


async def run(sizes: Sequence[int], count: int, rounds: int) -> dict[str, Any]:
    from server.analyze.image_rows import DatabaseImageStore
    from server.analyze.image_store import FileImageStore
    from server.db.database import Database
    from server.db.engine import create_engine
    from server.db.migrate import upgrade_async

    pg_name, pg_url = create_database()
    try:
        with tempfile.TemporaryDirectory(prefix="fakescope-images-") as tmp:
            sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            for url in (sqlite_url, pg_url):
                await upgrade_async(url)
            sqlite_db = Database(
                create_engine(sqlite_url), create_engine(sqlite_url, immediate=True)
            )
            pg_db = Database(create_engine(pg_url))
            stores = {
                "files": FileImageStore(Path(tmp) / "images"),
                "sqlite": DatabaseImageStore(sqlite_db),
                "postgres": DatabaseImageStore(pg_db),
            }
            runs: dict[str, dict[str, list[dict[str, float]]]] = {
                str(size): {name: [] for name in stores} for size in sizes
            }
            seed = 0
            try:
                for _ in range(rounds):
                    for size in sizes:
                        for name, store in stores.items():  # alternated: noise hits all
                            seed += 1
                            runs[str(size)][name].append(
                                await measure(store, payloads(size, count, seed))
                            )
            finally:
                await sqlite_db.dispose()
                await pg_db.dispose()
    finally:
        drop_database(pg_name)
    best = {
        size: {
            name: {op: round(min(r[op] for r in measured), 3) for op in OPERATIONS}
            for name, measured in by_store.items()
        }
        for size, by_store in runs.items()
    }
    ratios = {
        size: {
            name: {
                op: round(figures[op] / max(by_store["files"][op], 1e-6), 2) for op in OPERATIONS
            }
            for name, figures in by_store.items()
            if name != "files"
        }
        for size, by_store in best.items()
    }
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "images_per_round": count,
        "rounds": rounds,
        "ms_per_operation": best,
        "ratio_to_files": ratios,
    }


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size < 1024 * 1024 else f"{size // (1024 * 1024)} MiB"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (CI smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        sizes, count, rounds = [64 * 1024, 1024 * 1024], 4, 1
    else:
        sizes, count, rounds = [64 * 1024, 1024 * 1024, 8 * 1024 * 1024], 24, 3
    report = asyncio.run(run(sizes, count, rounds))
    print(f"image store, {report['machine']}, best of {rounds} rounds of {count} images")
    print(
        f"{'size':<8}{'store':<10}" + "".join(f"{op + ' ms':>12}{'/files':>8}" for op in OPERATIONS)
    )
    for size, by_store in report["ms_per_operation"].items():
        for name, figures in by_store.items():
            ratio = report["ratio_to_files"][size].get(name, {})
            cells = "".join(f"{figures[op]:>12.3f}{ratio.get(op, 1.0):>8.2f}" for op in OPERATIONS)
            print(f"{_size_label(int(size)):<8}{name:<10}{cells}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
