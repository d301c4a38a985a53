"""What a server hands a continuous decoding: answer requests, and an inbox for late ones.

A decoding session (``fakescope.continuous``) runs on the model's own thread. Requests
that arrive while it decodes are offered to its ``JoinInbox`` from any thread; between
two steps the session admits those that fit into free rows. Whatever it never admitted
is still in the inbox once the session has closed it: the server runs those later.

No torch here: the server imports this module before (and without) loading a model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _ignore(_: Any) -> None:
    pass


def _always() -> bool:
    return True


@dataclass(eq=False)
class AnswerRequest:
    """One answer to decode greedily. The callbacks run on the model thread.

    ``on_text(piece)`` gets the answer's text as it is decoded (streamed answers only);
    ``wanted()`` is asked after each step, and a row nobody wants leaves at once;
    exactly one of ``finish(answer)`` and ``fail(error)`` is called once the row leaves,
    unless the request was never admitted (it then stays in the inbox).
    """

    image: Any
    prompt: str
    max_new_tokens: int
    min_new_tokens: int = 0
    on_text: Callable[[str], None] | None = None
    wanted: Callable[[], bool] = _always
    finish: Callable[[str], None] = _ignore
    fail: Callable[[BaseException], None] = _ignore


@dataclass(eq=False)
class JoinInbox:
    """Requests waiting to join a session: offered from any thread, admitted on the
    model thread, and what is left when it closes goes back to its owner."""

    _waiting: list[AnswerRequest] = field(default_factory=list)
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def offer(self, request: AnswerRequest) -> bool:
        """Add a request; False (not added) once the session has closed the inbox."""
        with self._lock:
            if self._closed:
                return False
            self._waiting.append(request)
            return True

    def waiting(self) -> list[AnswerRequest]:
        """The requests not admitted yet, oldest first."""
        with self._lock:
            return list(self._waiting)

    def remove(self, request: AnswerRequest) -> None:
        """The session took ``request`` (admitted it, or answered it at once)."""
        with self._lock:
            self._waiting.remove(request)

    def close(self) -> None:
        """Refuse further offers; ``waiting()`` then holds what was never admitted."""
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)
