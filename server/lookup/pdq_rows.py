"""(sha256, pdq) rows as the PDQ index holds them: sha256s as 32-byte strings, PDQs as (n, 4)
arrays of 64-bit words, parsed in bulk from hex text or raw bytes and put in sha256 order.

Used by the index (`pdq_index.py`) and its loader (`live_index.py`), which hands it rows
from the database a block at a time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from itertools import compress

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger("fakescope.server")

# \Z, not $: "$" also matches before a final newline (and fromhex skips it).
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}\Z")


def pdq_words(hexes: Sequence[str]) -> NDArray[np.uint64]:
    """64-hex-char hashes → an (n, 4) array of 64-bit words."""
    if not hexes:
        return np.zeros((0, 4), dtype=np.uint64)
    raw = np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8")
    return raw.astype(np.uint64).reshape(len(hexes), 4)


def sha_keys(hexes: Sequence[str]) -> NDArray[np.bytes_]:
    """sha256 hex digests → a 1-D array of 32-byte strings (sorts like the lower-case hex)."""
    if not hexes:
        return np.zeros(0, dtype="S32")
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype="S32").copy()


def sha_hex(keys: NDArray[np.bytes_]) -> list[str]:
    """Back to hex. Through uint8: numpy drops an `S32` scalar's trailing zero bytes."""
    raw = keys.view(np.uint8).reshape(-1, 32)
    return [row.tobytes().hex() for row in raw]


# Rows as `parse_rows` gives them: sha256s as 32-byte strings, PDQs as (n, 4) words.
Parsed = tuple[NDArray[np.bytes_], NDArray[np.uint64]]


def parse_rows(rows: Sequence[tuple[str, str]]) -> Parsed:
    """(sha256, pdq) hex pairs → (sha keys, pdq words). Malformed rows are logged and skipped."""
    # Every string 64 characters and the right number of values parsed: then no row is
    # malformed (fromhex rejects other characters, and skipping whitespace changes the count).
    if all(len(s) == 64 == len(p) for s, p in rows):
        try:
            shas, words = sha_keys([s for s, _ in rows]), pdq_words([p for _, p in rows])
            if len(shas) == len(words) == len(rows):
                return shas, words
        except ValueError:
            pass
    good = [bool(_HEX64.match(s) and _HEX64.match(p)) for s, p in rows]
    log.warning("pdq index: skipped %d malformed (sha256, pdq) rows", good.count(False))
    kept = list(compress(rows, good))
    return sha_keys([s for s, _ in kept]), pdq_words([p for _, p in kept])


def parse_records(raw: bytes) -> Parsed:
    """(sha256, pdq) pairs as 64 bytes each (the two hashes' bytes, back to back) → rows as
    `parse_rows` gives them."""
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 64)
    shas = np.ascontiguousarray(records[:, :32]).view("S32").reshape(-1)
    words = np.ascontiguousarray(records[:, 32:]).view(">u8").astype(np.uint64)
    return shas, words


def sha_order(shas: NDArray[np.bytes_]) -> NDArray[np.intp] | None:
    """The stable permutation that sorts `shas`, or None when they are in order already.

    Sorting the 32-byte strings themselves is slow (a third of a second per million); the
    first 8 bytes as an integer sort five times faster and give the same order whenever they
    differ between every two images, which for sha256 digests is all but certain. Should two
    agree (a duplicate, say), the strings are sorted after all.
    """
    if len(shas) < 2 or bool(np.all(shas[1:] >= shas[:-1])):
        return None
    keys = np.ascontiguousarray(shas).view(">u8")[::4].astype(np.uint64)
    order = np.argsort(keys)
    ordered = np.take(keys, order)
    if bool(np.any(ordered[1:] == ordered[:-1])):
        return np.argsort(shas, kind="stable")
    return order


def sorted_unique(shas: NDArray[np.bytes_], words: NDArray[np.uint64]) -> Parsed:
    """The rows in sha256 order, the first of several with one sha256 kept.

    (`np.take` rather than indexing with the order: several times faster on these arrays.)
    """
    order = sha_order(shas)
    if order is not None:
        shas, words = np.take(shas, order), np.take(words, order, axis=0)
    first = np.ones(len(shas), dtype=bool)
    first[1:] = shas[1:] != shas[:-1]
    if not first.all():
        shas, words = shas[first], words[first]
    return shas, words
