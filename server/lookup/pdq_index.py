"""Near-duplicate search over PDQ hashes: vectorised Hamming distance with numpy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def pdq_words(hexes: Sequence[str]) -> NDArray[np.uint64]:
    """64-hex-char hashes → an (n, 4) array of 64-bit words."""
    if not hexes:
        return np.zeros((0, 4), dtype=np.uint64)
    raw = np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8")
    return raw.astype(np.uint64).reshape(len(hexes), 4)


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
    """For each query hash, the known images within `max_distance` bits, closest first."""
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
