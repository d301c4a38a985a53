"""Analysed image bytes on disk, so that /v1/ask can show the model the same image later."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ABANDONED_TMP_S = 3600.0  # a half-written file this old belongs to a crashed writer


class ImageStore:
    """Files named by SHA-256 under one directory (two-level fan-out)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def save(self, sha256: str, data: bytes) -> None:
        """Store the bytes; if they are stored already, restart their retention clock."""
        path = self._path(sha256)
        if path.exists():
            with contextlib.suppress(FileNotFoundError):  # purged meanwhile: written below
                os.utime(path)
                return
        for attempt in (1, 2):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                break
            except FileNotFoundError:  # a purge removed the empty folder just now
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)  # atomic: a reader sees all of the file or none of it
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, sha256: str) -> bytes | None:
        try:
            return self._path(sha256).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def purge(self, older_than_s: float, *, keep: Collection[str] = ()) -> int:
        """Delete images stored more than ``older_than_s`` seconds ago, except ``keep``.

        Age is the file's modification time: when the bytes last came in (``save``
        touches an existing file rather than rewriting it). Also removes abandoned
        temporary files and fan-out folders left empty. Returns how many were deleted.
        """
        now = time.time()
        cutoff = now - older_than_s
        deleted = 0
        if not self.root.is_dir():
            return 0
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                try:
                    stored = path.stat().st_mtime
                except FileNotFoundError:  # deleted meanwhile
                    continue
                if path.name.startswith(".tmp-"):
                    if stored < now - _ABANDONED_TMP_S:
                        path.unlink(missing_ok=True)
                    continue
                if _SHA256.match(path.name) and stored < cutoff and path.name not in keep:
                    path.unlink(missing_ok=True)
                    deleted += 1
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        return deleted
