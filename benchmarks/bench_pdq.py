"""PDQ near-duplicate search: the multi-index-hashing `PdqIndex` against the brute-force scan.

Builds N random PDQ hashes (with near-duplicates planted at 0-40 bits from some queries),
times building the index and a 500-query search at max_distance 31 (the service's
default), and the brute-force `near_matches` on the same data: on every query when N is
small, else on a subset of the queries, its per-query time standing for all (the scan costs
the same for every query). Prints ms per query for both, their ratio and the index's memory
per image, and checks that both give the same answers on the queries compared.

    python benchmarks/bench_pdq.py            # 1,000,000 images (about half a minute)
    python benchmarks/bench_pdq.py --quick    # 20,000 images (a few seconds)
    python benchmarks/bench_pdq.py --n 200000 --json out.json

`--load` times instead a process's first load of the index (`LivePdqIndex`) from
PostgreSQL: it creates a scratch database (`fakescope_bench_pdq_<pid>`, dropped at the end;
FAKESCOPE_TEST_POSTGRES_URL names the server, 127.0.0.1:5432 by default), fills `images`
with N random images (5% of them flat, PDQ quality under 50, which the index leaves out)
and, in each of `--rounds` rounds, times on the same data:

  before    the previous load: rows streamed through SQLAlchemy (`yield_per`), parsed per
            partition, indexed with numpy's generic sorts (`np.unique`, a stable argsort of
            the 32-byte sha256 strings); split into query (until the first 50,000 rows are
            in), row transfer, hex parsing and index build
  after     `LivePdqIndex.refresh()` end to end (COPY, parsed while it arrives), and the
            same stages timed one after the other (query: until COPY's first bytes; they
            add up to more than the load, which overlaps parsing with the transfer)
  streamed  rows streamed as before, indexed as now: what SQLite and other drivers get

and prints the medians and the ratio before / after, checking that every load holds the
same images with the same chunk tables.

    python benchmarks/bench_pdq.py --load                 # 1,000,000 images (a minute or two)
    python benchmarks/bench_pdq.py --load --quick         # 20,000 images, one round
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.lookup.pdq_index import CHUNK_VALUES, CHUNKS, PdqIndex, near_matches, sha_sorted
from server.lookup.pdq_rows import Parsed, pdq_words

# Brute force goes over at most this many (query, image) pairs; beyond, a subset of queries.
BRUTE_PAIRS = 25_000_000
POSTGRES_ADMIN_URL = os.environ.get(
    "FAKESCOPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
FLAT_SHARE = 0.05  # images of PDQ quality under 50: in the table, not in the index
FILL_BATCH = 100_000


def make_data(
    n: int, queries: int, seed: int
) -> tuple[list[tuple[str, str]], list[str], list[int]]:
    """N (sha256, pdq) pairs and the queries: half random, half at 0-40 bits of a known
    hash, each of those with a second image planted at 1-8 bits from the query."""
    rng = np.random.default_rng(seed)
    pdq_bytes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    sha_bytes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    near = queries // 2
    bases = rng.choice(n - near, near, replace=False)
    query_bytes = rng.integers(0, 256, (queries, 32), dtype=np.uint8)
    flipped: list[int] = []
    for i, base in enumerate(bases):
        bits = np.unpackbits(pdq_bytes[base])
        flips = int(rng.integers(0, 41))
        bits[rng.choice(256, flips, replace=False)] ^= 1
        query_bytes[i] = np.packbits(bits)
        planted = bits.copy()
        planted[rng.choice(256, int(rng.integers(1, 9)), replace=False)] ^= 1
        pdq_bytes[n - near + i] = np.packbits(planted)  # overwrites a random image
        flipped.append(flips)
    pdq_hex, sha_hex = pdq_bytes.tobytes().hex(), sha_bytes.tobytes().hex()
    known = [(sha_hex[i * 64 : i * 64 + 64], pdq_hex[i * 64 : i * 64 + 64]) for i in range(n)]
    order = rng.permutation(queries)
    query_hex = query_bytes.tobytes().hex()
    return known, [query_hex[i * 64 : i * 64 + 64] for i in order], flipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="images in the index")
    parser.add_argument("--quick", action="store_true", help="20,000 images (smoke run)")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--max-distance", type=int, default=31)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--load", action="store_true", help="time the first load instead")
    parser.add_argument("--rounds", type=int, default=3, help="--load: rounds (1 with --quick)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.n
    if args.load:
        figures = asyncio.run(bench_load(n, 1 if args.quick else args.rounds, args.seed))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    started = time.perf_counter()
    known, queries, _ = make_data(n, args.queries, args.seed)
    print(
        f"PDQ index benchmark: {n:,} images, {len(queries)} queries, "
        f"max_distance {args.max_distance} ({platform.processor() or platform.machine()}, "
        f"data made in {time.perf_counter() - started:.1f} s)"
    )

    started = time.perf_counter()
    index = PdqIndex()
    index.add(known)
    added = time.perf_counter()
    index.merge()
    built = time.perf_counter()
    build_s = built - started
    fixed = CHUNKS * (CHUNK_VALUES + 1) * 4  # the chunk tables, whatever n
    per_image = (index.nbytes - fixed) / n
    print(
        f"index build: {build_s:.2f} s (add {added - started:.2f} s, "
        f"merge {built - added:.2f} s); memory {per_image:.1f} bytes per image "
        f"+ {fixed / 2**20:.1f} MiB fixed ({index.nbytes / n:.1f} bytes per image in all)"
    )

    index.search(queries[:5], max_distance=args.max_distance)  # warm-up
    started = time.perf_counter()
    found = index.search(queries, max_distance=args.max_distance)
    index_ms = (time.perf_counter() - started) * 1000 / len(queries)
    print(f"index search: {index_ms:.3f} ms per query ({len(found)} matches in all)")

    compared = min(len(queries), max(1, BRUTE_PAIRS // n))
    subset = queries[:compared]
    ordered = sha_sorted(known)  # near_matches breaks ties in list order: sha256 order here
    # near_matches parses the known hashes once per call: left out of its per-query time.
    started = time.perf_counter()
    pdq_words([pdq for _, pdq in ordered])
    parse_s = time.perf_counter() - started
    started = time.perf_counter()
    brute = near_matches(subset, ordered, max_distance=args.max_distance)
    brute_ms = max(1e-6, (time.perf_counter() - started - parse_s) * 1000 / compared)
    scaled = "" if compared == len(queries) else f", timed on {compared} of the queries"
    print(
        f"brute force: {brute_ms:.3f} ms per query{scaled} "
        f"(+ {parse_s * 1000:.0f} ms per call to parse the hashes, not counted)"
    )
    mine = index.search(subset, max_distance=args.max_distance)
    assert mine == brute, "the index and the brute-force scan disagree"
    ratio = brute_ms / index_ms
    print(f"ratio (brute force / index): {ratio:.1f}x faster per query")
    print(f"results agree on {compared} queries ({len(brute)} matches)")
    if args.json:
        figures = {
            "images": n,
            "queries": len(queries),
            "max_distance": args.max_distance,
            "index_build_s": build_s,
            "index_ms_per_query": index_ms,
            "brute_ms_per_query": brute_ms,
            "brute_queries_timed": compared,
            "ratio": ratio,
            "bytes_per_image": per_image,
            "fixed_bytes": fixed,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


# -- --load: a process's first load of the index from PostgreSQL -------------------------


def _hex_digits(data: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(n, k) bytes → (n, 2k) lower-case hex digits, as ASCII codes."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    out = np.empty((len(data), 2 * data.shape[1]), dtype=np.uint8)
    out[:, 0::2], out[:, 1::2] = digits[data >> 4], digits[data & 15]
    return out


def _image_lines(rng: np.random.Generator, n: int) -> bytes:
    """N random images as COPY text lines for `images` (of fixed width: built by numpy)."""
    tab = np.full((n, 1), ord("\t"), dtype=np.uint8)
    quality = np.where(rng.random(n) < FLAT_SHARE, b"20", b"90").view(np.uint8).reshape(n, 2)
    tail = np.frombuffer(b"\tPNG\t64\t64\t1000\t1\t2026-11-01 00:00:00+00\n", dtype=np.uint8)
    columns = [
        _hex_digits(rng.integers(0, 256, (n, 32), dtype=np.uint8)),
        tab,
        _hex_digits(rng.integers(0, 256, (n, 32), dtype=np.uint8)),
        tab,
        quality,
        np.broadcast_to(tail, (n, len(tail))),
    ]
    return np.concatenate(columns, axis=1).tobytes()


def _scratch_database(n: int, seed: int) -> tuple[str, str]:
    """A new database named for this process, migrated, with N images; (name, async URL)."""
    import psycopg

    from server.db.migrate import upgrade_async

    name = f"fakescope_bench_pdq_{os.getpid()}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    asyncio.run(
        upgrade_async(f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}")
    )
    rng = np.random.default_rng(seed)
    columns = "sha256, pdq, pdq_quality, format, width, height, bytes, n_frames, first_seen_at"
    with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
        with conn.cursor() as cursor, cursor.copy(f"COPY images ({columns}) FROM STDIN") as copy:
            for first in range(0, n, FILL_BATCH):
                copy.write(_image_lines(rng, min(FILL_BATCH, n - first)))
        conn.execute("VACUUM ANALYZE images")
    return name, f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _build_before(parts: list[Parsed]) -> PdqIndex:
    """The index as the previous load built it: `np.unique` to drop repeated sha256s, then
    merging sorted the 32-byte strings (now both sort by the first 8 bytes, see
    `pdq_rows.sha_order`, which finds this input in order and leaves it)."""
    shas = np.concatenate([shas for shas, _ in parts])
    words = np.concatenate([words for _, words in parts])
    _, first = np.unique(shas, return_index=True)
    first.sort()
    shas, columns = shas[first], np.ascontiguousarray(words[first].T)
    order = np.argsort(shas, kind="stable")
    shas, columns = shas[order], np.ascontiguousarray(columns[:, order])
    index = PdqIndex()
    index.add_parsed((shas, np.ascontiguousarray(columns.T)))
    index.merge()
    return index


Timed = tuple[dict[str, float], PdqIndex]


async def _load_before(db: Any) -> Timed:
    from sqlalchemy import func, select

    from server.db.models import Image
    from server.lookup.live_index import LOAD_PARTITION, indexed_rows
    from server.lookup.pdq_rows import parse_rows

    started = time.perf_counter()
    first_rows, parse_s, parts = 0.0, 0.0, []
    async with db.connect() as conn:
        await conn.execute(select(func.max(Image.first_seen_at)))
        result = await conn.stream(indexed_rows().execution_options(yield_per=LOAD_PARTITION))
        async for partition in result.partitions(LOAD_PARTITION):
            first_rows = first_rows or time.perf_counter()
            parsing = time.perf_counter()
            parts.append(await asyncio.to_thread(parse_rows, partition))
            parse_s += time.perf_counter() - parsing
    read = time.perf_counter()
    index = await asyncio.to_thread(_build_before, parts)
    done = time.perf_counter()
    stages = {
        "query_s": first_rows - started,
        "transfer_s": read - first_rows - parse_s,
        "parse_s": parse_s,
        "build_s": done - read,
    }
    return {"total_s": done - started, **stages}, index


async def _load_after(db: Any) -> Timed:
    from server.lookup.live_index import LivePdqIndex

    live = LivePdqIndex(db)
    started = time.perf_counter()
    await live.refresh()
    return {"total_s": time.perf_counter() - started}, live.index


async def _stages_after(db: Any) -> Timed:
    """The new load's stages one after the other: COPY's output received whole, then
    parsed block by block, then indexed."""
    from server.lookup import live_index

    literal = {"literal_binds": True}
    started = time.perf_counter()
    received: list[bytes] = []
    first_bytes = 0.0

    async def receive(data: bytes) -> None:
        nonlocal first_bytes
        first_bytes = first_bytes or time.perf_counter()
        received.append(data)

    async with db.connect() as conn:
        query = live_index.indexed_rows().compile(dialect=conn.dialect, compile_kwargs=literal)
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.copy_from_query(str(query), output=receive)
    read = time.perf_counter()
    text, parts, first = b"".join(received), [], 0
    while first < len(text):
        end = text.rfind(b"\n", first, first + live_index.COPY_BLOCK) + 1 or len(text)
        parts.append(live_index.parse_copy_text(text[first:end]))
        first = end
    parsed = time.perf_counter()
    index = live_index.build_index(parts)
    done = time.perf_counter()
    stages = {
        "query_s": first_bytes - started,
        "transfer_s": read - first_bytes,
        "parse_s": parsed - read,
        "build_s": done - parsed,
    }
    return {"total_s": done - started, **stages}, index


async def _load_streamed(db: Any) -> Timed:
    from server.lookup.live_index import build_index, stream_rows

    started = time.perf_counter()
    async with db.connect() as conn:
        parts = await stream_rows(conn)
    index = await asyncio.to_thread(build_index, parts)
    return {"total_s": time.perf_counter() - started}, index


def _same_index(a: PdqIndex, b: PdqIndex) -> bool:
    (bulk_a, recent_a), (bulk_b, recent_b) = a._parts, b._parts
    arrays = ("shas", "columns", "perms", "starts")
    same = all(np.array_equal(getattr(bulk_a, k), getattr(bulk_b, k)) for k in arrays)
    return same and len(recent_a) == len(recent_b) == 0


async def _measure(url: str, rounds: int) -> dict[str, Any]:
    from server.db.database import Database
    from server.db.engine import create_engine

    loads: dict[str, Callable[[Any], Awaitable[Timed]]] = {
        "before": _load_before,
        "after": _load_after,
        "after_stages": _stages_after,
        "streamed": _load_streamed,
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in loads}
    db = Database(create_engine(url))
    try:
        for _ in range(rounds):
            reference = None
            for name, load in loads.items():
                figures, index = await load(db)
                runs[name].append(figures)
                reference = index if reference is None else reference
                assert _same_index(index, reference), f"{name} loaded another index"
        assert reference is not None
        indexed = len(reference)
    finally:
        await db.dispose()
    medians = {
        name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for name, rows in runs.items()
    }
    return {"indexed": indexed, "median": medians, "runs": runs}


async def _postgres_version(url: str) -> str:
    from sqlalchemy import text

    from server.db.engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(text("SHOW server_version"))).scalar())
    finally:
        await engine.dispose()


def _stages(figures: dict[str, float]) -> str:
    return " + ".join(f"{k[:-2]} {figures[k]:.2f}" for k in figures if k != "total_s")


async def bench_load(n: int, rounds: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    name, url = await asyncio.to_thread(_scratch_database, n, seed)
    try:
        version = await _postgres_version(url)
        print(
            f"PDQ index first load: {n:,} images in PostgreSQL {version}, {rounds} round(s), "
            f"medians ({platform.machine()}, {os.cpu_count()} cores; "
            f"table filled in {time.perf_counter() - started:.1f} s)"
        )
        measured = await _measure(url, rounds)
    finally:
        await asyncio.to_thread(_drop_database, name)
    medians = measured["median"]
    before, after = medians["before"], medians["after"]
    ratio = before["total_s"] / after["total_s"]
    print(f"{measured['indexed']:,} images indexed (quality 50 and over)")
    print(f"before: {before['total_s']:.2f} s = {_stages(before)} s")
    print(
        f"after: {after['total_s']:.2f} s (COPY, parsed while it arrives); its stages one "
        f"after the other: {_stages(medians['after_stages'])} s"
    )
    print(
        f"streamed rows, new build (SQLite, other drivers): {medians['streamed']['total_s']:.2f} s"
    )
    print(f"ratio (before / after): {ratio:.1f}x faster first load")
    print("every load holds the same images and chunk tables")
    return {
        "mode": "load",
        "images": n,
        "indexed": measured["indexed"],
        "rounds": rounds,
        "postgres": version,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "median_s": medians,
        "ratio": ratio,
        "runs": measured["runs"],
    }


if __name__ == "__main__":
    sys.exit(main())
