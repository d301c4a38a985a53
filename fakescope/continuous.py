"""Continuous batching: answers join a running greedy decode between steps, and leave it.

A session holds a ``GraphDecoder`` (a fixed number of rows, one static KV cache), taken
from the model's ``DecoderPool`` and given back when it ends, for as long as any row
decodes. Between two steps it admits the requests waiting in its ``JoinInbox`` into
free rows (``GraphDecoder.admit``: prefilled alone, copied in just before the shared
write index), and a row leaves as soon as its answer ends (an end id, its token budget,
or nobody wanting it any more), freeing the row for the next request.

A request joins only where it fits: its prompt no longer than the write index (the
session starts with room before the first prompts), its answer within the cache. One
that never fits stays in the inbox for the next session. A session starts with as many
rows as its first requests need (a power of two); when a request fits but no row is
free, a decoder of twice the rows takes the session over (``GraphDecoder.adopt``), up to
the session's limit: a lone answer decodes at batch 1, not at the largest batch. Where
the device has no memory for the bigger decoder's cache, the session asks the model to
let go of the decoders it keeps for later (``release``) and tries once more; failing
that, it goes on with the rows it has and what did not join waits for the next session.
The first rows' decoder is retried the same way once, and its requests fail only after.

Each row decodes exactly what it would alone: greedy, its own prompt, positions and
end-id ban, the other rows masked.

Runs on the model's thread only, like everything else that touches the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from fakescope.answer_pieces import AnswerPieces
from fakescope.cuda_graphs import GraphDecoder
from fakescope.decoder_pool import DecoderPool
from fakescope.joining import AnswerRequest, JoinInbox

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Prepares model inputs (left-padded, on the model's device) for image/prompt pairs.
PrepareInputs = Callable[[Sequence[Any], Sequence[str]], dict[str, Any]]
JOIN_ROOM = 64  # masked slots before a session's first prompts, for longer joiners


@dataclass
class _Row:
    request: AnswerRequest
    pieces: AnswerPieces
    produced: int = 0


class ContinuousDecoding:
    """One decoding session: ``run`` returns once no row decodes and none can join."""

    def __init__(
        self,
        *,
        prepare: PrepareInputs,
        decoders: DecoderPool,
        tokenizer: Any,
        eos_ids: Collection[int],
        inbox: JoinInbox,
        release: Callable[[], None] | None = None,
    ) -> None:
        self._prepare = prepare
        self._decoders = decoders
        self._release = release
        self._max_rows = 1
        self._tokenizer = tokenizer
        self._eos = list(eos_ids)
        self.inbox = inbox
        self.decoder: GraphDecoder | None = None
        self.rows: dict[int, _Row] = {}
        self.joined = 0  # requests admitted from the inbox
        self._owed: list[AnswerRequest] = []  # taken on, not answered yet
        self._inputs: dict[int, dict[str, Any]] = {}  # by id(request): tokenized once

    def run(self, first: Sequence[AnswerRequest], *, rows: int) -> None:
        """Answer ``first`` (one batched prefill), and every request offered to the inbox
        that fits while they decode, in at most ``rows`` rows (or ``len(first)``).

        A failure fails every request taken on and not answered yet (``first``, those
        admitted); the inbox is closed on return, holding what was never admitted.
        """
        try:
            self._begin([r for r in first if not self._answered_at_once(r)], rows)
            while True:
                self._drop_unwanted()
                self._admit_waiting()
                if not self.rows:
                    return
                self._advance()
        except Exception as exc:
            logger.exception("a continuous decoding failed")
            failed, self._owed = self._owed, []
            self.rows.clear()
            for request in failed:
                request.fail(exc)
        finally:
            if self.decoder is not None:
                self._decoders.give_back(self.decoder)
                self.decoder = None
            self.inbox.close()

    def _begin(self, first: list[AnswerRequest], rows: int) -> None:
        if not first:
            return
        self._owed = list(first)
        inputs = self._prepare([r.image for r in first], [r.prompt for r in first])
        length = inputs["input_ids"].shape[1]
        longest = max(r.max_new_tokens for r in first)
        self._max_rows = max(rows, len(first))
        # Room for joiners: prompts up to JOIN_ROOM tokens longer than the first ones, and
        # as many steps as the longest first answer (after that the cache is full).
        rows = min(_power_of_two(len(first)), self._max_rows)
        cache = length + JOIN_ROOM + 2 * longest

        def start() -> None:
            # The prefill allocates the cache: nothing has reached a client before it.
            decoder = self._decoders.take(rows, cache)
            decoder.start(decoder.max_cache_len - 2 * longest)
            self.decoder = decoder
            try:
                self._admit(list(range(len(first))), first, inputs)
            except torch.cuda.OutOfMemoryError:
                self.decoder = None  # never given back: a retry must not meet its cache
                raise

        self._after_releasing_if_short(start, rows)

    def _answered_at_once(self, request: AnswerRequest) -> bool:
        if request.max_new_tokens > 0:
            return False
        request.finish("")
        return True

    def _admit(self, rows: list[int], requests: list[AnswerRequest], inputs: Any) -> None:
        assert self.decoder is not None
        banned = [self._eos if r.min_new_tokens > 0 else [] for r in requests]
        tokens = self.decoder.admit(rows, inputs, banned=banned)
        for row, request, token in zip(rows, requests, tokens, strict=True):
            streamed = request.on_text is not None
            pieces = AnswerPieces(self._tokenizer, 1, self._eos, streamed=streamed)
            self.rows[row] = _Row(request, pieces)
            self._take(row, token)

    def _admit_waiting(self) -> None:
        """Requests from the inbox into free rows, oldest first, each where it fits."""
        if self.decoder is None:
            return
        for request in self.inbox.waiting():
            decoder = self.decoder
            free = [row for row in range(decoder.batch_size) if row not in self.rows]
            if not free and decoder.batch_size >= self._max_rows:
                return
            if not request.wanted():
                continue  # left in the inbox: its owner drops it
            if self._answered_at_once(request):
                self.inbox.remove(request)
                continue
            if not decoder.fits(0, request.max_new_tokens):
                continue  # its answer would overflow the cache: the next session's
            inputs = self._inputs.get(id(request))
            if inputs is None:
                try:
                    inputs = self._prepare([request.image], [request.prompt])
                except Exception as exc:  # this request's own failure (its image, its prompt)
                    logger.exception("a request could not join a decoding")
                    self.inbox.remove(request)
                    request.fail(exc)
                    continue
                self._inputs[id(request)] = inputs
            if not decoder.fits(inputs["input_ids"].shape[1], request.max_new_tokens):
                continue  # a longer prompt than the write index: it may fit later
            if not free:
                free = self._grow()
                if not free:
                    return  # no memory for more rows: the rest wait for the next session
            self.inbox.remove(request)
            del self._inputs[id(request)]
            self._owed.append(request)
            self._admit([free[0]], [request], inputs)
            self.joined += 1

    def _grow(self) -> list[int]:
        """A decoder of twice the rows (at most the limit) takes over: its free rows.

        None where the device cannot hold it even after the model let go of the
        decoders it keeps; the session then stays at its size.
        """
        assert self.decoder is not None
        smaller = self.decoder
        rows = min(2 * smaller.batch_size, self._max_rows)

        def bigger() -> GraphDecoder:
            decoder = self._decoders.take(rows, smaller.max_cache_len)
            decoder.adopt(smaller)  # reads the smaller one only: it stays intact
            return decoder

        try:
            self.decoder = self._after_releasing_if_short(bigger, rows)
            self._decoders.give_back(smaller)
        except torch.cuda.OutOfMemoryError:
            logger.warning(
                "no device memory for a %d-row decoder: the session stays at %d rows",
                rows,
                smaller.batch_size,
            )
            self._max_rows = smaller.batch_size
            return []
        return list(range(smaller.batch_size, rows))

    def _after_releasing_if_short(self, allocate: Callable[[], T], rows: int) -> T:
        """``allocate()``; out of device memory, once more after the model let go of the
        decoders it keeps (``release``). A second failure is raised."""
        try:
            return allocate()
        except torch.cuda.OutOfMemoryError:
            if self._release is None:
                raise
        logger.warning("no device memory for a %d-row decoder: releasing kept ones", rows)
        self._release()
        return allocate()

    def _drop_unwanted(self) -> None:
        for row in [row for row, state in self.rows.items() if not state.request.wanted()]:
            self._leave(row)

    def _advance(self) -> None:
        """One step of every row; each live row takes its token."""
        assert self.decoder is not None
        allowed = [
            row
            for row, state in self.rows.items()
            if 0 < state.request.min_new_tokens == state.produced
        ]
        if allowed:
            self.decoder.allow(allowed)
        tokens = self.decoder.step()
        for row in list(self.rows):
            self._take(row, tokens[row])

    def _take(self, row: int, token: int) -> None:
        state = self.rows[row]
        state.produced += 1
        request = state.request
        wanted = request.wanted()
        for _, piece in state.pieces.add([token]):
            if request.on_text is not None and wanted:
                request.on_text(piece)
        if state.pieces.all_ended or state.produced >= request.max_new_tokens or not wanted:
            self._leave(row)

    def _leave(self, row: int) -> None:
        state = self.rows.pop(row)
        request = state.request
        self._owed.remove(request)
        if request.on_text is not None and request.wanted():
            for _, piece in state.pieces.flush():
                request.on_text(piece)
        request.finish(state.pieces.texts()[0])


def _power_of_two(count: int) -> int:
    """The smallest power of two not below ``count``: few decoder sizes, few graphs."""
    return 1 << max(0, count - 1).bit_length()
