"""The PDQ near-duplicate index: the same answers as the brute-force scan, kept in step with
the database (SQLite and PostgreSQL), and served by POST /v1/lookup."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import insert

from fakescope.images import pdq_distance
from server.db.database import Database
from server.db.engine import create_engine
from server.db.models import Image
from server.lookup import pdq_index
from server.lookup.live_index import LivePdqIndex
from server.lookup.pdq_index import PdqIndex, near_matches, sha_sorted
from server.timefmt import utcnow

REPO_ROOT = Path(__file__).resolve().parents[2]
DISTANCES = (0, 8, 31, 32, 48)


def _flip(pdq: str, rng: np.random.Generator, bits: int) -> str:
    value = int(pdq, 16)
    for bit in rng.choice(256, bits, replace=False):
        value ^= 1 << int(bit)
    return f"{value:064x}"


def _dataset(seed: int, n: int = 3000) -> tuple[list[tuple[str, str]], list[str]]:
    """Random images, images planted at 0-40 bits of some queries, ties, a crowded hash."""
    rng = np.random.default_rng(seed)

    def random_hex() -> str:
        return rng.bytes(32).hex()

    known = [(random_hex(), random_hex()) for _ in range(n)]
    queries = [random_hex() for _ in range(30)]
    for _ in range(150):
        base = known[int(rng.integers(len(known)))][1]
        query = _flip(base, rng, int(rng.integers(0, 41)))
        queries.append(query)
        for _ in range(int(rng.integers(0, 4))):  # more images near that query
            known.append((random_hex(), _flip(query, rng, int(rng.integers(0, 41)))))
    # Twelve images with one hash (equal distances, more than per_query), some of their
    # sha256s ending in zero bytes; and a hash shared by 400 images (its 16 x 400 candidates
    # outnumber the index's images: that query is scanned, not probed).
    tied = random_hex()
    known += [(random_hex()[:-4] + "0000", tied) for _ in range(6)]
    known += [(random_hex(), _flip(tied, rng, 1)) for _ in range(6)]
    crowded = random_hex()
    known += [(random_hex(), crowded) for _ in range(400)]
    queries += [tied, _flip(tied, rng, 2), crowded, _flip(crowded, rng, 31)]
    order = rng.permutation(len(known))
    return [known[i] for i in order], queries


def _assert_agrees(index: PdqIndex, known: list[tuple[str, str]], queries: list[str]) -> None:
    reference = sha_sorted(known)
    for distance in DISTANCES:
        for per_query in (10, 3):
            expected = near_matches(queries, reference, max_distance=distance, per_query=per_query)
            found = index.search(queries, max_distance=distance, per_query=per_query)
            assert found == expected, (distance, per_query)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_index_answers_like_the_brute_force_scan_before_and_after_a_merge(seed: int) -> None:
    known, queries = _dataset(seed)
    index = PdqIndex(merge_threshold=500)
    bulk, recent = known[: len(known) // 2], known[len(known) // 2 :]
    index.add(bulk)
    index.merge()
    _assert_agrees(index, bulk, queries)  # all in the sorted bulk

    assert index.add(recent[:300]) == 300
    assert index.pending == 300
    _assert_agrees(index, bulk + recent[:300], queries)  # bulk and recent buffer

    index.add(recent)
    index.merge()
    assert index.pending == 0 and len(index) == len(known)
    _assert_agrees(index, known, queries)


def test_small_batches_give_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidates are verified in batches of CANDIDATE_BUDGET: many small ones here."""
    monkeypatch.setattr(pdq_index, "CANDIDATE_BUDGET", 300)
    known, queries = _dataset(4, n=2000)
    index = PdqIndex()
    index.add(known[:-200])
    index.merge()
    index.add(known[-200:])
    _assert_agrees(index, known, queries)


def test_planted_copies_are_found_at_their_distance_for_every_distance_up_to_40() -> None:
    rng = np.random.default_rng(9)
    known = [(rng.bytes(32).hex(), rng.bytes(32).hex()) for _ in range(2000)]
    query = rng.bytes(32).hex()
    planted = [(rng.bytes(32).hex(), _flip(query, rng, bits)) for bits in range(41)]
    index = PdqIndex()
    index.add(known + planted)
    index.merge()
    for distance in range(41):
        found = index.search([query], max_distance=distance, per_query=100)
        assert [m.distance for m in found] == list(range(distance + 1))
        assert [m.sha256 for m in found] == [sha for sha, _ in planted[: distance + 1]]


def test_adding_an_image_twice_gives_one_match_and_malformed_rows_are_skipped() -> None:
    index = PdqIndex()
    sha, pdq = "ab" * 32, "0f" * 32
    assert index.add([(sha, pdq), (sha, pdq)]) == 1
    assert index.add([(sha, pdq)]) == 0  # held in the recent buffer
    index.merge()
    assert index.add([(sha.upper(), pdq), ("cd" * 32, "zz" * 32), ("ef" * 31, pdq)]) == 0
    assert len(index) == 1
    found = index.search([pdq], max_distance=31)
    assert [m.to_dict() for m in found] == [{"pdq": pdq, "sha256": sha, "distance": 0}]
    assert index.search([], max_distance=31) == []
    assert PdqIndex().search([pdq], max_distance=31) == []


def test_sha256s_alike_in_their_first_bytes_are_sorted_and_deduplicated_like_the_strings() -> None:
    """The index sorts by the first 8 bytes of each sha256 when they differ for every two
    images; here many share them (and a sha256 comes twice), so the strings decide."""
    known, queries = _dataset(6, n=1500)
    rng = np.random.default_rng(6)
    prefixes = [rng.bytes(8).hex() for _ in range(40)]
    known = [(prefixes[i % 40] + sha[16:], pdq) for i, (sha, pdq) in enumerate(known)]
    index = PdqIndex()
    assert index.add(known[:900] + known[:5]) == 900
    index.merge()
    index.add(known[900:] + known[895:905])
    _assert_agrees(index, known, queries)
    index.merge()
    assert len(index) == len(known)
    _assert_agrees(index, known, queries)
    built = PdqIndex.of(pdq_index.parse_rows(known + known[::7]))  # the first load's way
    assert len(built) == len(known) and built.pending == 0
    _assert_agrees(built, known, queries)


# -- kept in step with the database ------------------------------------------------------


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(database_url))
    try:
        yield database
    finally:
        await database.dispose()


async def _store(db: Database, sha: str, pdq: str, seen_ago_s: float = 0.0) -> None:
    """An image row as the service writes it, stamped `seen_ago_s` in the past."""
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(Image).values(
                sha256=sha,
                pdq=pdq,
                pdq_quality=100,
                format="PNG",
                width=1,
                height=1,
                bytes=1,
                n_frames=1,
                first_seen_at=utcnow() - timedelta(seconds=seen_ago_s),
            )
        )


async def test_refresh_reads_rows_committed_late_within_the_margin_and_only_the_window(
    db: Database,
) -> None:
    live = LivePdqIndex(db, margin_s=60)
    await _store(db, "a1" * 32, "00" * 32)
    assert await live.search(["00" * 32], max_distance=0) != []  # the first search loads all
    # Committed after that load but stamped 30 s before it (a slow writer elsewhere).
    await _store(db, "b2" * 32, "00" * 31 + "01", seen_ago_s=30)
    found = await live.search(["00" * 32], max_distance=31)
    assert [(m.sha256, m.distance) for m in found] == [("a1" * 32, 0), ("b2" * 32, 1)]
    assert await live.refresh() == 0  # the window is read again, nothing added twice
    # A row stamped two hours ago is outside the window: refreshes read only recent rows
    # (the margin bounds how late a write may commit; see server/lookup/live_index.py).
    await _store(db, "c3" * 32, "00" * 31 + "03", seen_ago_s=7200)
    assert await live.refresh() == 0
    assert len(live.index) == 2
    assert await LivePdqIndex(db).refresh() == 3  # a new process loads everything


async def test_concurrent_searches_refresh_safely_and_merge(db: Database) -> None:
    live = LivePdqIndex(db, merge_threshold=4)
    rng = np.random.default_rng(5)
    rows = [(rng.bytes(32).hex(), rng.bytes(32).hex()) for _ in range(12)]
    for sha, pdq in rows[:3]:
        await _store(db, sha, pdq)
    await live.refresh()
    for sha, pdq in rows[3:]:
        await _store(db, sha, pdq)
    queries = [pdq for _, pdq in rows]
    answers = await asyncio.gather(*(live.search(queries, max_distance=31) for _ in range(5)))
    expected = near_matches(queries, sha_sorted(rows), max_distance=31)
    assert all(answer == expected for answer in answers)
    assert len(live.index) == 12 and live.index.pending == 0  # 9 new > 4: merged


# -- through the API ---------------------------------------------------------------------


def _picture(fmt: str, **save: int) -> bytes:
    """One picture (waves, a disc, a gradient and some grain), encoded as `fmt`.

    The grain is what JPEG at quality 90 smooths: the copy's PDQ is a few bits off (2 here).
    """
    y, x = np.mgrid[0:256, 0:256].astype(np.float64)
    red = 128 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0)
    green = 255 * ((x - 90) ** 2 + (y - 140) ** 2 < 60**2)
    blue = (x + y) / 2
    grain = np.random.default_rng(3).normal(0, 30, (256, 256, 3))
    pixels = np.stack([red, green, blue], axis=2) + grain
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, "RGB").save(buffer, fmt, **save)
    return buffer.getvalue()


async def test_lookup_finds_an_image_analysed_after_the_first_lookup_and_a_jpeg_copy(
    client,
) -> None:
    png, jpeg = _picture("PNG"), _picture("JPEG", quality=90)
    first = (await client.post("/v1/analyze", files={"file": ("a.png", png)})).json()
    pdq = first["image"]["pdq"]
    before = (await client.post("/v1/lookup", json={"pdq": [pdq]})).json()
    assert before["near"] == [{"pdq": pdq, "sha256": first["sha256"], "distance": 0}]

    copy = (await client.post("/v1/analyze", files={"file": ("a.jpg", jpeg)})).json()
    assert copy["image"]["format"] == "JPEG" and copy["sha256"] != first["sha256"]
    distance = pdq_distance(pdq, copy["image"]["pdq"])
    assert distance <= 31, "the JPEG copy should be a near-duplicate of the PNG"
    after = (await client.post("/v1/lookup", json={"pdq": [pdq]})).json()
    expected = [
        {"pdq": pdq, "sha256": first["sha256"], "distance": 0},
        {"pdq": pdq, "sha256": copy["sha256"], "distance": distance},
    ]
    assert after["near"] == sorted(expected, key=lambda m: (m["distance"], m["sha256"]))
    assert after["results"] == {}


async def test_flat_images_are_never_near_matches_of_each_other(client) -> None:
    """Blank and nearly blank images have PDQ hashes of quality near 0: never hints."""
    flats = []
    for shade in (0, 1, 255):
        buffer = io.BytesIO()
        PILImage.new("RGB", (128, 128), (shade, shade, shade)).save(buffer, "PNG")
        flats.append(
            (await client.post("/v1/analyze", files={"file": ("f.png", buffer.getvalue())})).json()
        )
    assert all(f["image"]["pdq_quality"] < 50 for f in flats)
    # Their hashes are noise (a black one is all zeros): none is a hint about the others.
    hashes = [f["image"]["pdq"] for f in flats]
    found = (await client.post("/v1/lookup", json={"pdq": hashes})).json()
    assert found["near"] == []
    # The picture with structure next to them is still found through its hash.
    picture = (await client.post("/v1/analyze", files={"file": ("a.png", _picture("PNG"))})).json()
    assert picture["image"]["pdq_quality"] >= 50
    again = (await client.post("/v1/lookup", json={"pdq": [picture["image"]["pdq"]]})).json()
    assert [m["sha256"] for m in again["near"]] == [picture["sha256"]]


def test_bench_pdq_quick_runs_and_prints_the_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_pdq.py"), "--quick"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio (brute force / index)" in result.stdout
    assert "results agree" in result.stdout
