"""`bench_pdq.py --load`: a process's first load of the PDQ index (`LivePdqIndex`) from
PostgreSQL, timed before and after the bulk load and per stage (see bench_pdq.py's help)."""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from server.lookup.pdq_index import PdqIndex
from server.lookup.pdq_rows import Parsed

POSTGRES_ADMIN_URL = os.environ.get(
    "FAKESCOPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
FLAT_SHARE = 0.05  # images of PDQ quality under 50: in the table, not in the index
FILL_BATCH = 100_000


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
