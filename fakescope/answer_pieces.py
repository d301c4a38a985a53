"""Turning decoded token ids into text pieces, row by row, as they are generated.

A token is not a piece of text on its own: byte-level tokenizers split one UTF-8
character over several tokens, and SentencePiece marks word starts that only become
spaces in context. So each row's answer so far is decoded whole, and the new piece is
what that text adds to the text already sent (a half character waits for its rest, and
is flushed at the end if it never completes).
The answer's leading whitespace is dropped, as ``generate_batch`` strips its answers,
and a row ends at its first end-of-sequence id (later ids of that row are padding).

``AnswerPieces`` serves every answering path: the graph decoder's steps, the steps
``model.generate`` gives a streamer (``PieceStreamer``), one row or a batch of them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

OnText = Callable[[int, str], None]  # (row, piece): called on the decoding thread


class AnswerPieces:
    """Each row's ids and text so far; ``add`` takes one step and returns the new pieces
    (none when not ``streamed``)."""

    def __init__(
        self, tokenizer: Any, rows: int, eos_ids: Collection[int], *, streamed: bool = True
    ) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_ids)
        # Unstreamed, only ids are kept: decoding each row's text at every step costs
        # time quadratic in the answer's length, worth paying only for a reader.
        self.streamed = streamed
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.ended = [False] * rows
        self._sent = [""] * rows

    @property
    def all_ended(self) -> bool:
        return all(self.ended)

    def add(self, step: Sequence[int]) -> list[tuple[int, str]]:
        """One token per row: the ``(row, piece)`` pairs of text this step adds."""
        pieces: list[tuple[int, str]] = []
        for row, token in enumerate(step):
            if self.ended[row]:
                continue
            if token in self.eos_ids:
                self.ended[row] = True
                continue
            self.ids[row].append(int(token))
            if not self.streamed:
                continue
            text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True).lstrip()
            sent = self._sent[row]
            if text.endswith("\ufffd") or not text.startswith(sent) or text == sent:
                continue
            pieces.append((row, text[len(sent) :]))
            self._sent[row] = text
        return pieces

    def flush(self) -> list[tuple[int, str]]:
        """What each row's text still holds back at the end (a half character, left as
        the replacement character the final answer shows too): the pieces then add up
        to ``texts()``."""
        if not self.streamed:
            return []
        pieces: list[tuple[int, str]] = []
        for row, ids in enumerate(self.ids):
            text = self.tokenizer.decode(ids, skip_special_tokens=True).lstrip()
            sent = self._sent[row]
            if text != sent and text.startswith(sent):
                pieces.append((row, text[len(sent) :]))
                self._sent[row] = text
        return pieces

    def texts(self) -> list[str]:
        """Each row's whole answer, stripped (what ``generate_batch`` returns)."""
        decoded = self.tokenizer.batch_decode(self.ids, skip_special_tokens=True)
        return [text.strip() for text in decoded]


class PieceStreamer(BaseStreamer):
    """A ``model.generate`` streamer handing each row's new text to ``on_text``.

    ``generate`` first puts the prompt ids (ignored), then one id per row per step.
    """

    def __init__(self, pieces: AnswerPieces, on_text: OnText) -> None:
        self.pieces = pieces
        self.on_text = on_text
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        step = value.reshape(-1).tolist() if isinstance(value, torch.Tensor) else list(value)
        for row, piece in self.pieces.add(step):
            self.on_text(row, piece)

    def end(self) -> None:
        for row, piece in self.pieces.flush():
            self.on_text(row, piece)
