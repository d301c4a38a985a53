"""Telling "the device ran out of memory" apart from other failures of a model call.

A batch that does not fit is not a broken request: the same images fit in smaller batches
(the server splits and retries them, `server/inference/batch_caps.py`). Only torch raises it, so
torch is not imported here: where it was never imported, no model ran.
"""

from __future__ import annotations

import sys


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is torch's out-of-memory error (CUDA's, or another device's)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    error = getattr(torch, "OutOfMemoryError", None)
    return error is not None and isinstance(exc, error)
