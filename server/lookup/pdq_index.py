"""Near-duplicate search over PDQ hashes: a brute-force scan and a multi-index-hashing index.

`near_matches` is the reference: every known hash against every query, vectorised with numpy.
`PdqIndex` gives the same answers without touching every hash: the 256 bits are cut into 16
chunks of 16 bits, and by the pigeonhole principle two hashes at most `d` bits apart agree on
at least one chunk up to `d // 16` bits (16 chunks each differing in `d // 16 + 1` bits or more
would add up to more than `d`). For the service's default `d = 31` that is one bit: probing
each chunk's exact value and its 16 one-bit flips finds every candidate, which the exact
Hamming distance then confirms or drops. Equal distances are ordered by sha256, so that
every process answers alike whatever order it loaded the images in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from server.lookup.pdq_rows import Parsed, parse_rows, pdq_words, sha_hex, sha_order, sorted_unique

CHUNKS = 16
CHUNK_BITS = 16
CHUNK_VALUES = 1 << CHUNK_BITS
# Probing d // 16 flipped bits per chunk needs 16 * sum(C(16, k), k <= d // 16) probes per
# query: 272 for d < 32, 2,192 for d < 48, 11,152 beyond, each probe hitting n / 65,536
# images on average. From three bits on the candidates are a sixth of the index, their
# random-access checks cost about what the linear scan costs: d >= 48 scans. (Measured on
# 1M random hashes, 2 cores: 0.2 ms per query at d = 31, 1.5 ms at 32-47, 11 ms scanning.)
MAX_PROBE_FLIPS = 2
# Candidates (query, image) verified per numpy batch: bounds the temporary arrays (~100 bytes
# per candidate) whatever the number of queries and the size of the index.
CANDIDATE_BUDGET = 1 << 19
DEFAULT_MERGE_THRESHOLD = 4096
# (query index, row, distance) of the pairs found close enough, as three parallel arrays.
_Pairs = tuple[NDArray[np.integer[Any]], NDArray[np.integer[Any]], NDArray[np.integer[Any]]]


@dataclass(frozen=True)
class NearMatch:
    pdq: str
    sha256: str
    distance: int

    def to_dict(self) -> dict[str, object]:
        return {"pdq": self.pdq, "sha256": self.sha256, "distance": self.distance}


def near_matches(
    queries: Sequence[str],
    known: Sequence[tuple[str, str]],
    *,
    max_distance: int,
    per_query: int = 10,
) -> list[NearMatch]:
    """For each query hash, the known images within `max_distance` bits, closest first.

    Equal distances keep the order of `known`; the matches come grouped by query, in the
    order of `queries`. (`PdqIndex.search` answers the same for `known` sorted by sha256.)
    """
    if not queries or not known:
        return []
    known_words = pdq_words([pdq for _, pdq in known])
    matches: list[NearMatch] = []
    for query, words in zip(queries, pdq_words(queries), strict=True):
        distances = np.bitwise_count(known_words ^ words).sum(axis=1)
        close = np.flatnonzero(distances <= max_distance)
        for index in close[np.argsort(distances[close], kind="stable")][:per_query]:
            matches.append(NearMatch(query, known[index][0], int(distances[index])))
    return matches


def _chunk(columns: NDArray[np.uint64], c: int) -> NDArray[np.uint16]:
    """Chunk c of (4, n) column-major hashes: bits 16 * (c % 4) and up of word c // 4."""
    shift = np.uint64(CHUNK_BITS * (c % 4))
    return ((columns[c // 4] >> shift) & np.uint64(0xFFFF)).astype(np.uint16)


def _close_pairs(
    columns: NDArray[np.uint64],
    rows: NDArray[np.integer[Any]],
    query_columns: NDArray[np.uint64],
    queries: NDArray[np.integer[Any]],
    max_distance: int,
) -> _Pairs:
    """The (query, row, distance) pairs among the candidates that are within `max_distance`.

    A word at a time, dropping pairs as soon as their partial distance is too large: with
    random-looking hashes, about half go after the first word and nearly all after two, so
    the random-access gathers (the cost here) touch about 1.6 words per candidate, not 4.
    """
    distances = np.zeros(len(rows), dtype=np.int64)
    for word in range(4):
        distances += np.bitwise_count(columns[word][rows] ^ query_columns[word][queries])
        keep = np.flatnonzero(distances <= max_distance)
        if len(keep) < len(rows):
            queries, rows, distances = queries[keep], rows[keep], distances[keep]
    return queries, rows, distances


def _flip_masks(flips: int) -> NDArray[np.int64]:
    """Every 16-bit mask with at most `flips` bits set (0 first): the values probed per chunk."""
    values = np.arange(CHUNK_VALUES, dtype=np.uint16)
    return np.flatnonzero(np.bitwise_count(values) <= flips).astype(np.int64)


@dataclass(frozen=True)
class _Linear:
    """Hashes scanned one by one: the recent buffer, or any segment for large distances."""

    shas: NDArray[np.bytes_]
    columns: NDArray[np.uint64]  # (4, n): word k of every hash is contiguous

    def __len__(self) -> int:
        return len(self.shas)

    def within(self, query_columns: NDArray[np.uint64], max_distance: int) -> _Pairs:
        """(query index, row, distance) of every pair within `max_distance` bits."""
        found: list[_Pairs] = []
        count = query_columns.shape[1]
        if len(self) and count:
            step = max(1, CANDIDATE_BUDGET // len(self))
            for first in range(0, count, step):
                batch = query_columns[:, first : first + step, None]
                distances = np.zeros((batch.shape[1], len(self)), dtype=np.int16)
                for word in range(4):
                    distances += np.bitwise_count(self.columns[word] ^ batch[word])
                queries, rows = np.nonzero(distances <= max_distance)
                found.append((queries + first, rows, distances[queries, rows]))
        return _concat(found)


@dataclass(frozen=True)
class _Sorted:
    """The merged hashes, sorted by sha256, with one inverted list per chunk.

    For chunk c, `perms[c]` lists the rows ordered by their chunk value (rows of equal value
    in row order) and the rows whose value is v are `perms[c][starts[c, v] : starts[c, v + 1]]`.
    `starts` is `np.searchsorted` of the sorted chunk column for all 65,537 bounds done once:
    it replaces keeping the sorted uint16 column (2 bytes per row and chunk) by a fixed table
    (16 x 65,537 x 4 bytes = 4 MiB) and each probe's binary search by two look-ups.
    """

    shas: NDArray[np.bytes_]
    columns: NDArray[np.uint64]  # (4, n)
    perms: NDArray[np.uint32]  # (16, n)
    starts: NDArray[np.uint32]  # (16, 65537)

    @classmethod
    def build(cls, shas: NDArray[np.bytes_], columns: NDArray[np.uint64]) -> _Sorted:
        """Sort by sha256 and index every chunk: O(n), about half a second per million images."""
        order = sha_order(shas)
        if order is not None:
            shas, columns = np.take(shas, order), np.take(columns, order, axis=1)
        perms = np.empty((CHUNKS, len(shas)), dtype=np.uint32)
        starts = np.zeros((CHUNKS, CHUNK_VALUES + 1), dtype=np.uint32)
        for c in range(CHUNKS):
            chunk = _chunk(columns, c)
            perms[c] = np.argsort(chunk, kind="stable")  # a radix sort for uint16
            np.cumsum(np.bincount(chunk, minlength=CHUNK_VALUES), out=starts[c, 1:])
        return cls(shas, columns, perms, starts)

    def __len__(self) -> int:
        return len(self.shas)

    def within(self, query_columns: NDArray[np.uint64], max_distance: int) -> _Pairs:
        """(query index, row, distance) of every pair within `max_distance` bits, each once."""
        flips = max_distance // CHUNK_BITS
        if flips > MAX_PROBE_FLIPS or not len(self):
            return _Linear(self.shas, self.columns).within(query_columns, max_distance)
        masks = _flip_masks(flips)
        n, count = len(self), query_columns.shape[1]
        # Chunk c's bounds and rows start at these offsets of the flattened tables.
        bound_base = (np.arange(CHUNKS, dtype=np.int64) * (CHUNK_VALUES + 1))[:, None]
        row_base = (np.arange(CHUNKS, dtype=np.int64) * n)[:, None]
        starts, perms = self.starts.reshape(-1), self.perms.reshape(-1)
        query_chunks = np.stack([_chunk(query_columns, c) for c in range(CHUNKS)], axis=1)
        probes = bound_base + (query_chunks.astype(np.int64)[:, :, None] ^ masks)
        lows = starts[probes].astype(np.int64)  # (queries, chunks, probes per chunk)
        lengths = starts[probes + 1].astype(np.int64) - lows
        candidates = lengths.reshape(count, -1).sum(axis=1)
        # A query with more candidates than images (a hash shared by many images, say) is
        # cheaper scanned; the others go in batches of about CANDIDATE_BUDGET candidates.
        heavy = np.flatnonzero(candidates > n)
        q, rows, d = _Linear(self.shas, self.columns).within(query_columns[:, heavy], max_distance)
        found: list[_Pairs] = [(heavy[q], rows, d)]
        light = np.flatnonzero(candidates <= n)
        batch_of = np.cumsum(candidates[light]) // CANDIDATE_BUDGET
        for batch in np.split(light, np.flatnonzero(np.diff(batch_of)) + 1):
            batch_lengths = lengths[batch].reshape(-1)
            total = int(batch_lengths.sum())
            if not total:
                continue
            # Concatenate the ranges perms[c][low:high] without a Python loop.
            firsts = (row_base + lows[batch]).reshape(-1)
            offsets = np.cumsum(batch_lengths) - batch_lengths
            positions = np.repeat(firsts - offsets, batch_lengths)
            positions += np.arange(total, dtype=np.int64)
            rows = perms[positions].astype(np.int64)
            q = np.repeat(np.repeat(batch, CHUNKS * len(masks)), batch_lengths)
            q, rows, d = _close_pairs(self.columns, rows, query_columns, q, max_distance)
            # A near copy agrees on several chunks and is found once per chunk: keep one.
            _, unique = np.unique(q * n + rows, return_index=True)
            found.append((q[unique], rows[unique], d[unique]))
        return _concat(found)


def _concat(parts: list[_Pairs]) -> _Pairs:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return (
        np.concatenate([p[0] for p in parts]).astype(np.int64),
        np.concatenate([p[1] for p in parts]).astype(np.int64),
        np.concatenate([p[2] for p in parts]).astype(np.int64),
    )


_EMPTY_LINEAR = _Linear(np.zeros(0, dtype="S32"), np.zeros((4, 0), dtype=np.uint64))


class PdqIndex:
    """Every known image's (sha256, pdq) in numpy arrays, searchable by Hamming distance.

    Two parts: the bulk, sorted and indexed per chunk (`_Sorted`), and a small unsorted buffer
    of recent additions scanned linearly, which `merge` folds into the bulk (the owner calls
    it once `pending` passes `merge_threshold`, off the event loop: it rebuilds the bulk).
    An image is held once, whatever the number of times it is added.
    Memory: per image 32 bytes of sha256, 32 of PDQ and 16 x 4 of inverted lists (128),
    plus a fixed 4 MiB of chunk tables; `nbytes` tells.

    `search` answers exactly what `near_matches` answers for the same images listed in
    sha256 order: per query the images within `max_distance` bits, closest first, equal
    distances by ascending sha256, at most `per_query` of them, queries in the order given.

    Threads: one writer at a time (`add`, `merge`); `search` may run in other threads
    meanwhile, as the parts are never changed in place, only replaced (it reads a snapshot).
    """

    def __init__(self, merge_threshold: int = DEFAULT_MERGE_THRESHOLD) -> None:
        self.merge_threshold = merge_threshold
        self._parts: tuple[_Sorted, _Linear] = (
            _Sorted.build(_EMPTY_LINEAR.shas, _EMPTY_LINEAR.columns),
            _EMPTY_LINEAR,
        )

    def __len__(self) -> int:
        bulk, recent = self._parts
        return len(bulk) + len(recent)

    @property
    def pending(self) -> int:
        """Images in the recent buffer, not merged yet."""
        return len(self._parts[1])

    @property
    def nbytes(self) -> int:
        bulk, recent = self._parts
        arrays = (bulk.shas, bulk.columns, bulk.perms, bulk.starts, recent.shas, recent.columns)
        return sum(a.nbytes for a in arrays)

    @classmethod
    def of(cls, parsed: Parsed, merge_threshold: int = DEFAULT_MERGE_THRESHOLD) -> PdqIndex:
        """An index of these rows, merged: `add_parsed` then `merge`, less their copying."""
        index = cls(merge_threshold)
        shas, words = sorted_unique(*parsed)
        index._parts = (_Sorted.build(shas, np.ascontiguousarray(words.T)), _EMPTY_LINEAR)
        return index

    def add(self, rows: Sequence[tuple[str, str]]) -> int:
        """Add (sha256, pdq) pairs to the recent buffer; returns how many were new."""
        return self.add_parsed(parse_rows(rows)) if rows else 0

    def add_parsed(self, parsed: Parsed) -> int:
        """`add` for rows already parsed by `parse_rows` (say, in parts, then concatenated)."""
        shas, words = parsed
        if not len(shas):
            return 0
        shas, words = sorted_unique(shas, words)
        bulk, recent = self._parts
        if len(bulk):
            at = np.minimum(np.searchsorted(bulk.shas, shas), len(bulk) - 1)
            new = bulk.shas[at] != shas
            shas, words = shas[new], words[new]
        if len(recent):
            new = ~np.isin(shas, recent.shas)
            shas, words = shas[new], words[new]
        if len(shas):
            self._parts = (
                bulk,
                _Linear(
                    np.concatenate([recent.shas, shas]),
                    np.concatenate([recent.columns, words.T], axis=1),
                ),
            )
        return len(shas)

    def merge(self) -> None:
        """Fold the recent buffer into the sorted bulk (a rebuild: O(n), run it off the loop)."""
        bulk, recent = self._parts
        if not len(recent):
            return
        merged = _Sorted.build(
            np.concatenate([bulk.shas, recent.shas]),
            np.concatenate([bulk.columns, recent.columns], axis=1),
        )
        self._parts = (merged, _EMPTY_LINEAR)

    def search(
        self, queries: Sequence[str], *, max_distance: int, per_query: int = 10
    ) -> list[NearMatch]:
        """Per query the known images within `max_distance` bits (see the class docstring)."""
        bulk, recent = self._parts
        if not queries or not (len(bulk) + len(recent)) or per_query <= 0:
            return []
        query_columns = np.ascontiguousarray(pdq_words(queries).T)
        found_q, found_sha, found_d = [], [], []
        for part in (bulk, recent):
            q, rows, d = part.within(query_columns, max_distance)
            found_q.append(q)
            found_sha.append(part.shas[rows])
            found_d.append(d)
        q, shas, d = np.concatenate(found_q), np.concatenate(found_sha), np.concatenate(found_d)
        order = np.lexsort((shas, d, q))
        q, shas, d = q[order], shas[order], d[order]
        rank = np.arange(len(q)) - np.searchsorted(q, q, side="left")
        keep = rank < per_query
        q, d = q[keep], d[keep]
        return [
            NearMatch(queries[i], sha, int(dist))
            for i, sha, dist in zip(q.tolist(), sha_hex(shas[keep]), d.tolist(), strict=True)
        ]


def sha_sorted(known: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """`known` deduplicated by sha256 and in sha256 order: `near_matches`'s input that gives
    `PdqIndex.search`'s answers (for tests and benchmarks)."""
    first: dict[str, str] = {}
    for sha, pdq in known:
        first.setdefault(sha.lower(), pdq)
    return sorted(first.items())
