"""The graph decoders a model keeps between answers, each lent to one decoding at a time.

A ``GraphDecoder`` holds a static KV cache (and, on CUDA, a captured graph) for one batch
size; building one costs an allocation and a capture, so the model keeps a few for later.
But a decoder is also the state of the decoding that uses it: its cache, write index and
next tokens. Two decodings sharing one would overwrite each other's cache, and nothing
stops them from meeting: two ``stream()`` generators of one model read in turns, or an
answer started while an abandoned one is still held. So a decoding *takes* its decoder out
of the pool and gives it back when it ends; whoever asks meanwhile gets a new one.

A decoder that is never given back (its decoding failed halfway through allocating) is simply
not kept. An abandoned decoding's generator gives its decoder back when it is collected (its
``finally``), from whichever thread collects it: the pool's dict operations allow that. A
decoder lent out before ``clear()`` (the device ran short of memory) is not kept when it comes
back: the memory a release frees must stay free.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from fakescope.cuda_graphs import GraphDecoder

logger = logging.getLogger(__name__)

CACHE_STEP = 256  # new decoders' KV caches are a multiple of this many tokens
MAX_KEPT = 4  # batch sizes with a kept decoder (each holds a KV cache)


class DecoderPool:
    """Decoders of ``model`` kept by batch size, oldest first, lent out whole."""

    def __init__(self, model: Any, *, max_kept: int = MAX_KEPT) -> None:
        self._model = model
        self._max_kept = max_kept
        self._kept: dict[int, GraphDecoder] = {}
        self._epoch = 0  # clear() counts; decoders lent out in an earlier epoch are not kept
        # The epoch each decoder lent out was lent in (weakly: one never given back just goes).
        self._lent_in: weakref.WeakKeyDictionary[GraphDecoder, int] = weakref.WeakKeyDictionary()

    def take(self, rows: int, tokens: int) -> GraphDecoder:
        """A decoder of ``rows`` rows with a cache of at least ``tokens``, for the caller
        alone until it is given back: a kept one where it fits, else a new one."""
        decoder = self._kept.pop(rows, None)  # one dict operation: safe between threads
        if decoder is None or decoder.max_cache_len < tokens:
            # A new cache is allocated: room is made first (the short one above is dropped
            # too), so the device never holds more than max_kept kept caches plus those lent.
            self._evict(self._max_kept - 1)
            cache_len = -(-tokens // CACHE_STEP) * CACHE_STEP
            decoder = GraphDecoder(self._model, batch_size=rows, max_cache_len=cache_len)
        self._lent_in[decoder] = self._epoch
        return decoder

    def give_back(self, decoder: GraphDecoder) -> None:
        """Keep ``decoder`` for later: of two of one batch size the longer cache stays;
        beyond ``max_kept`` batch sizes the oldest goes."""
        if self._lent_in.pop(decoder, self._epoch) != self._epoch:
            return  # lent before a clear(): let its memory go
        rows = decoder.batch_size
        other = self._kept.pop(rows, None)
        if other is not None and other.max_cache_len > decoder.max_cache_len:
            decoder = other
        self._kept[rows] = decoder
        self._evict(self._max_kept)

    def _evict(self, keep: int) -> None:
        """Drop the oldest kept decoders until at most ``keep`` are left."""
        while len(self._kept) > max(keep, 0):
            oldest = next(iter(list(self._kept)), None)
            if oldest is None:
                break
            self._kept.pop(oldest, None)

    def kept(self) -> list[GraphDecoder]:
        """The decoders kept now (not those lent out), oldest first."""
        return list(self._kept.values())

    def clear(self) -> int:
        """Let go of the kept decoders, and of those lent out now once they come back (their
        decodings keep them until then): how many were kept."""
        dropped = len(self._kept)
        self._epoch += 1
        self._kept.clear()
        return dropped

    def __len__(self) -> int:
        return len(self._kept)
