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
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from pdq_load_measure import bench_load

from server.lookup.pdq_index import CHUNK_VALUES, CHUNKS, PdqIndex, near_matches, sha_sorted
from server.lookup.pdq_rows import pdq_words

# Brute force goes over at most this many (query, image) pairs; beyond, a subset of queries.
BRUTE_PAIRS = 25_000_000


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


if __name__ == "__main__":
    sys.exit(main())
