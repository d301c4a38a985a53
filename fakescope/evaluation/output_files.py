"""Writing a run's output files whole or not at all.

A reader (a person refreshing `report.md`, a script polling `metrics.json`) or a crash in the
middle of a write must never see half a file: each one is written beside its final name and
moved over it in one rename.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A fresh path in `path`'s folder (same suffix, so that writers that go by it still
    work); renamed over `path` when the block ends cleanly, removed otherwise."""
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str, errors: str = "strict") -> Path:
    with replacing(path) as temporary:
        # newline="": the text's own line ends
        temporary.write_text(text, encoding="utf-8", errors=errors, newline="")
    return path
