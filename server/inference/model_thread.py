"""The one thread that owns the model, and the lock that keeps its tokenizer single-threaded.

The model is not re-entrant, so everything that touches it runs on one worker thread. A
fast tokenizer must not be used by two threads at once (fakescope/model.py): the one
preprocessing thread holds `tokenizer_lock` while it prepares a batch, and the model thread
holds it for everything except the forward pass of prepared inputs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


def model_executor() -> ThreadPoolExecutor:
    """The single thread that owns the model (load it there too)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="fakescope-model")


def preprocess_executor() -> ThreadPoolExecutor:
    """The single preprocessing thread (one only: the tokenizer is not thread-safe)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="fakescope-preprocess")


class ModelThread:
    def __init__(self, executor: ThreadPoolExecutor | None = None) -> None:
        self.executor = executor or model_executor()
        self.tokenizer_lock = threading.Lock()

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on the model thread, holding the tokenizer lock."""
        work = partial(self.exclusive, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    def exclusive(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` holding the tokenizer lock, on the calling thread."""
        with self.tokenizer_lock:
            return fn(*args, **kwargs)
