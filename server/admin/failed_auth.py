"""Per-client limit on failed authentication attempts (sliding window, in process memory).

Each process counts on its own; with several API processes the effective limit is
multiplied by their number, which still makes guessing a 256-bit secret hopeless.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_MAX_FAILURES = 10
DEFAULT_WINDOW_S = 60.0
_MAX_TRACKED_CLIENTS = 10_000  # bound memory under a spray of addresses


@dataclass
class FailedAuthLimiter:
    """Counts failures per client; one over the limit is refused until the window passes."""

    max_failures: int = DEFAULT_MAX_FAILURES
    window_s: float = DEFAULT_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not blocked."""
        window = self._recent(client)
        if window is None or len(window) < self.max_failures:
            return None
        oldest_relevant = window[-self.max_failures]
        return max(1, math.ceil(oldest_relevant + self.window_s - self.clock()))

    def record_failure(self, client: str) -> None:
        """Remember one failed attempt by ``client``."""
        if client not in self._failures and len(self._failures) >= _MAX_TRACKED_CLIENTS:
            self._evict_stale()
        self._failures.setdefault(client, deque()).append(self.clock())

    def _recent(self, client: str) -> deque[float] | None:
        window = self._failures.get(client)
        if window is None:
            return None
        cutoff = self.clock() - self.window_s
        while window and window[0] <= cutoff:
            window.popleft()
        if not window:
            del self._failures[client]
            return None
        return window

    def _evict_stale(self) -> None:
        for client in list(self._failures):
            self._recent(client)
        if len(self._failures) >= _MAX_TRACKED_CLIENTS:
            # Everyone is still inside the window: forget the client that failed longest ago.
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]
