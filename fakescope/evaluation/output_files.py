"""Writing a run's output files whole or not at all, and names as people are shown them.

A reader (a person refreshing `report.md`, a script polling `metrics.json`) or a crash in the
middle of a write must never see half a file: each one is written beside its final name and
moved over it in one rename.

Names come from the file system and may not be UTF-8 (a folder or file named in Latin-1 reaches
Python as lone surrogates, PEP 383). What a run writes for people and other programs (the
report, `metrics.json`, the figures) is valid UTF-8 and shows such a byte as `\\xNN`
(`readable`); `predictions.csv` and `run.json`, which a resumed run matches names against, keep
the exact name (its own bytes; JSON `\\udcNN` escapes).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

# `replacing` writes `path` as `.STEM.<12 hex>.tmp.SUFFIX` beside it; `check_writable` probes with
# `.write-check.<12 hex>`. `remove_leftovers` goes by these shapes.
_PROBE = "write-check"
_HEX12 = "[0-9a-f]{12}"  # secrets.token_hex(6)


class FolderInUse(Exception):
    """Another process holds the folder (``held_alone``)."""


@contextmanager
def held_alone(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for the block, or raise FolderInUse at once.

    Two runs writing into one folder would remove each other's temporary files and mix their
    predictions. The lock is the kernel's (``flock`` on the folder itself, so no lock file is
    left behind): a run killed in any way lets go of it, and no stale lock is ever left to
    clear. Where the platform or the file system has no ``flock``, or the folder cannot be
    opened for reading, the block runs unguarded. On NFS, Linux takes a folder's ``flock``
    locally: it keeps out runs on this machine only.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except PermissionError:  # a folder one may write into but not list (mode 0333): unguarded
        yield
        return
    except OSError as exc:
        raise naming(exc, folder) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(str(folder)) from None
        except OSError as exc:  # a file system without locks (some network ones): unguarded
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise naming(exc, folder) from exc
        yield
    finally:
        os.close(fd)  # lets go of the lock


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A fresh path in `path`'s folder (same suffix, so that writers that go by it still
    work); renamed over `path` when the block ends cleanly, removed otherwise."""
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as exc:
        raise naming(exc, path) from exc
    finally:
        temporary.unlink(missing_ok=True)


def check_writable(folder: Path) -> None:
    """OSError (naming `folder`) unless a file can be created there: a read-only folder is
    found before a run loads its model (minutes on a GPU), not when it writes its first file."""
    probe = folder / f".{_PROBE}.{secrets.token_hex(6)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise naming(exc, folder) from exc
    os.unlink(probe)


def remove_leftovers(folder: Path, names: Iterable[str]) -> None:
    """Remove the temporary files of the outputs `names`, and write-check probes, that a
    process killed mid-write (SIGKILL, a power cut) left in `folder`. Files of any other name
    are left alone; one that cannot be removed is left for the writes to report."""
    shapes = [
        rf"\.{re.escape(Path(n).stem)}\.{_HEX12}\.tmp{re.escape(Path(n).suffix)}" for n in names
    ]
    leftover = re.compile("|".join([*shapes, rf"\.{_PROBE}\.{_HEX12}"]))
    with suppress(OSError):
        for entry in os.scandir(folder):
            if leftover.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with suppress(OSError):
                    os.unlink(entry.path)


def naming(exc: OSError, path: Path) -> OSError:
    """`exc` naming `path`, the output it failed to write: a failed write (a full disk) names
    no file, and a failed rename (a folder in the way) names the temporary one."""
    if exc.errno is None or exc.filename == str(path):
        return exc
    return OSError(exc.errno, exc.strerror, str(path))  # OSError picks the errno's subclass


def write_text(path: Path, text: str, errors: str = "strict") -> Path:
    with replacing(path) as temporary:
        # newline="": the text's own line ends
        temporary.write_text(text, encoding="utf-8", errors=errors, newline="")
    return path


# A lone surrogate outside U+DC80..U+DCFF is no byte of a name: only a JSON "\\udXXX" escape
# makes one (a manifest refuses it, see `datasets.name_text`; a hand-edited metrics.json may
# still hold one when runs are compared).
NOT_A_NAME_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def readable(text: str) -> str:
    """`text` as valid UTF-8: each byte of a name that is not UTF-8 shown as `\\xNN` (any other
    lone surrogate as `\\uXXXX`)."""
    text = NOT_A_NAME_BYTE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# What would end a shown name's line or drive a terminal: C0 and C1 controls, DEL, and the
# Unicode line and paragraph separators (`str.splitlines` breaks at all of them).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with each control character shown as its Python escape (`\\n`, `\\x1b`): a name
    holding a line break stays on its line, one holding an escape sequence cannot drive the
    terminal that shows it."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def readable_tree(value: Any) -> Any:
    """A JSON-ready value with every string in it (keys too) made `readable`."""
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, dict):
        return {readable_tree(k): readable_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [readable_tree(v) for v in value]
    return value


def write_json(path: Path, value: Any) -> Path:
    """Indented JSON in UTF-8, names `readable`."""
    return write_text(path, json.dumps(readable_tree(value), indent=2, ensure_ascii=False) + "\n")
