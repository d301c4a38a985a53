"""What every harness shares: the verdict on one input, and the atheris main loop.

A harness names its target (a function of bytes) and the exceptions its module documents;
anything else the target raises is a finding, and so is a returned value that a caller could
not serialise. libFuzzer's own flags bound time (`-timeout`) and memory (`-rss_limit_mb`).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

Target = Callable[[bytes], object]
FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
# Per-input limits: an input slower than this, or a process above this, is a finding.
DEFAULT_FLAGS = ["-timeout=2", "-rss_limit_mb=2048", "-max_len=262144"]


def check_one(target: Target, allowed: tuple[type[BaseException], ...], data: bytes) -> None:
    """Run `target` on `data`; documented errors pass, any other exception propagates."""
    with contextlib.suppress(*allowed):
        target(data)


def seed_files(name: str) -> Iterator[Path]:
    """The seed files of one harness: fuzz/corpus/<name>/ once `make_seeds.py` has run."""
    folder = FUZZ_DIR / "corpus" / name
    if folder.is_dir():
        yield from sorted(p for p in folder.iterdir() if p.is_file())


def main(target: Target, allowed: tuple[type[BaseException], ...], name: str) -> None:
    """`python -m fuzz.fuzz_<name> [libFuzzer flags] [corpus dirs]`; by default new inputs go
    to fuzz/work/<name>/corpus/ and the seeds come from fuzz/corpus/<name>/."""
    import atheris  # only the fuzzing run needs it: the tests import the harnesses without

    # Pillow warns on every broken tag; the warnings are not findings, and slow the run.
    warnings.simplefilter("ignore")

    def one_input(data: bytes) -> None:
        check_one(target, allowed, data)

    work = FUZZ_DIR / "work" / name
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    given = [f"-artifact_prefix={work}/", *sys.argv[1:]]
    dictionary = FUZZ_DIR / f"{name}.dict"
    if dictionary.is_file():
        given.insert(0, f"-dict={dictionary}")
    args = [sys.argv[0], *_flags(given)]
    if not [a for a in args[1:] if not a.startswith("-")]:
        args += [str(work / "corpus"), str(FUZZ_DIR / "corpus" / name)]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def _flags(given: Iterable[str]) -> list[str]:
    given = list(given)
    named = {flag.split("=")[0] for flag in given if flag.startswith("-")}
    return [f for f in DEFAULT_FLAGS if f.split("=")[0] not in named] + given


def instrumented() -> Any:
    """Coverage for the project and Pillow's Python parsers, when a harness runs as the
    program (`python -m fuzz.fuzz_<name>`); a plain import (the tests) is left as it is."""
    if not Path(sys.argv[0]).name.startswith("fuzz_"):
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=["fakescope", "PIL"])
