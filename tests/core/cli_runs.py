"""Running the `fakescope` command in-process, as a test sees it: status, stdout, stderr."""

from __future__ import annotations

import pytest


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from fakescope.cli import main

    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err
