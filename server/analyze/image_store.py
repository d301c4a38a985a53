"""Where analysed image bytes are kept, so that /v1/ask can show the model the same image
later and reviewers can see a flagged image.

Two stores behind one async interface (:class:`ImageStore`): files under the data
directory (one machine, the default for ``FAKESCOPE_ROLE=all``) and rows in the database
(:mod:`server.analyze.image_rows`; the default once API processes and GPU workers run on
several machines, where no one disk sees every image).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

# \Z, not $: "$" also matches before a final newline, a character no file name here has.
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_ABANDONED_TMP_S = 3600.0  # a half-written file this old belongs to a crashed writer


def is_sha256(text: str) -> bool:
    return _SHA256.match(text) is not None


class ImageStore(Protocol):
    """Image bytes by SHA-256, kept for a retention period (see server/analyze/retention.py)."""

    async def save(self, sha256: str, data: bytes) -> None:
        """Keep the bytes; if they are kept already, restart their retention clock."""

    async def load(self, sha256: str) -> bytes | None:
        """The bytes, or None when they are not kept (never analysed here, or purged)."""

    async def contains(self, sha256: str) -> bool:
        """Whether the bytes are kept, without reading them."""

    async def purge(self, older_than_s: float, *, keep: Collection[str] = ()) -> int:
        """Delete bytes saved more than ``older_than_s`` ago, except ``keep``; how many."""


class FileImageStore:
    """:class:`ImageStore` on files under one directory; the disk work runs in a thread."""

    def __init__(self, root: Path) -> None:
        self.files = ImageFiles(root)

    async def save(self, sha256: str, data: bytes) -> None:
        await asyncio.to_thread(self.files.save, sha256, data)

    async def load(self, sha256: str) -> bytes | None:
        return await asyncio.to_thread(self.files.load, sha256)

    async def contains(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.files.contains, sha256)

    async def purge(self, older_than_s: float, *, keep: Collection[str] = ()) -> int:
        return await asyncio.to_thread(self.files.purge, older_than_s, keep=keep)


class ImageFiles:
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

    def contains(self, sha256: str) -> bool:
        try:
            return self._path(sha256).is_file()
        except ValueError:
            return False

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
