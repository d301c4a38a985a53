"""`fakescope eval`: the evaluation commands, added to the main parser by `add_commands`.

Only argparse at import time: torch, scikit-learn and matplotlib load when a command runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from fakescope.errors import Terminated
from fakescope.evaluation.output_files import readable

USAGE = (
    "fakescope eval DATASET... --model M [--out DIR] [--calibration FILE] [--fresh] [options]\n"
    "       fakescope eval compare RUN_A RUN_B\n"
    "       fakescope eval calibrate RUN_DIR --out FILE [--dataset NAME]..."
)
DATASETS_HELP = (
    "PATH or NAME=PATH of: a folder tree with 0_real/1_fake or real/fake folders (WildRF); "
    "a SynthWildX folder or list.csv; a FakeBench root or FakeClass.json; a multiple-choice "
    "JSON/JSONL; a CSV/JSON/JSONL manifest (path,label[,generator]); a MANIFEST.tsv"
)


def add_commands(subparsers: Any) -> None:
    """Add `eval` to the `fakescope` command's subparsers."""
    parser = subparsers.add_parser(
        "eval",
        help="benchmark a checkpoint: metrics, report, plots, per-image predictions",
        usage=USAGE,
        description="Evaluate a checkpoint on datasets, compare two evaluation runs, or fit "
        "a calibration of p_fake on a run.",
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET", help=DATASETS_HELP)
    parser.add_argument("--model", help="checkpoint directory or hub id (required unless compare)")
    parser.add_argument("--quantization", choices=("nf4", "int8", "none"))
    parser.add_argument("--device", help="cuda, cuda:1, cpu ... (default: CUDA if available)")
    parser.add_argument(
        "--calibration",
        type=Path,
        metavar="FILE",
        help="calibrate p_fake with this file (`fakescope eval calibrate`) before measuring",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("eval-out"), help="output folder (resumes)"
    )
    parser.add_argument(
        "--protocol",
        choices=("quantitative", "closed", "both"),
        default="quantitative",
        help="quantitative: p_fake; closed: verdict from a generated answer",
    )
    parser.add_argument(
        "--no-provenance",
        dest="provenance",
        action="store_false",
        help="measure the model alone (metadata never decides)",
    )
    parser.add_argument(
        "--robustness", action="store_true", help="JPEG/downscale/crop/screenshot sweeps"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, help="at most N images per dataset (balanced, seeded)")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="resamples for 95%% intervals (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip-missing", action="store_true", help="leave out listed images that are absent"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="remove the previous run's outputs from --out first, instead of resuming it",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_command)


def compare_parser() -> argparse.ArgumentParser:
    """`fakescope eval compare`'s own parser: its help, and its errors, name its two folders.

    `fakescope` hands it the words after `eval compare` (argparse cannot give `eval` both
    DATASET... positionals and a `compare` subcommand).
    """
    parser = argparse.ArgumentParser(
        prog="fakescope eval compare",
        description="Print two evaluation runs side by side, subset by subset: AP, AUC, "
        "accuracy, TPR and TNR in each and B - A, after the settings (datasets, --limit, "
        "provenance, prompt version...) that differ between them.",
    )
    parser.add_argument("run_a", metavar="RUN_A", type=Path, help="the first run's --out folder")
    parser.add_argument("run_b", metavar="RUN_B", type=Path, help="the second run's --out folder")
    parser.set_defaults(command="eval", handler=_compare_command)
    return parser


def calibrate_parser() -> argparse.ArgumentParser:
    """`fakescope eval calibrate`'s own parser (handed the words after `eval calibrate`)."""
    parser = argparse.ArgumentParser(
        prog="fakescope eval calibrate",
        description="Fit Platt scaling of p_fake (sigmoid(a * margin + b)) on a finished "
        "run's quantitative predictions (the model's own p_fake of its clean images), write it "
        "to --out, and print ECE and Brier score before and after. Measured on the images it "
        "was fitted on, these flatter it: fit on one dataset, evaluate on another.",
    )
    parser.add_argument("run", metavar="RUN_DIR", type=Path, help="a finished run's --out folder")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="the calibration file to write"
    )
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME",
        help="fit on this dataset of the run only (repeatable; default: all of them)",
    )
    parser.set_defaults(command="eval", handler=_calibrate_command)
    return parser


def _calibrate_command(args: argparse.Namespace) -> int:
    from fakescope.errors import CalibrationError
    from fakescope.evaluation.calibrate import calibrate_run, summary

    calibration = calibrate_run(args.run, args.dataset)
    try:
        calibration.save(args.out)
    except OSError as exc:  # a folder that does not exist, --out naming a folder, no permission
        raise CalibrationError(
            f"{args.out}: cannot write the calibration file ({exc.strerror or exc}); give "
            "--out a file name in a folder that exists"
        ) from exc
    print(summary(calibration, args.out))
    return 0


def run_command(args: argparse.Namespace) -> int:
    if args.datasets[0] == "compare":  # options before it: `fakescope eval --quiet compare A B`
        return _compare(args.datasets[1:])
    if args.datasets[0] == "calibrate":  # `fakescope eval --quiet calibrate RUN`
        print(
            "fakescope eval: error: give calibrate's options after it: "
            "fakescope eval calibrate RUN_DIR --out FILE",
            file=sys.stderr,
        )
        return 2
    if not args.model:
        print("fakescope eval: error: --model is required", file=sys.stderr)
        return 2
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1) or args.bootstrap < 0:
        print(
            "fakescope eval: error: --batch-size and --limit must be >= 1, --bootstrap >= 0",
            file=sys.stderr,
        )
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(
            f"fakescope eval: error: --out {args.out} is a file; it names the output folder",
            file=sys.stderr,
        )
        return 2
    if args.out.is_symlink() and not args.out.exists():  # mkdir would say "File exists"
        print(
            f"fakescope eval: error: --out {args.out} is a symbolic link to "
            f"{os.readlink(args.out)}, which is not there (or links back to itself)",
            file=sys.stderr,
        )
        return 2
    from fakescope.evaluation.evaluate import EvalConfig, evaluate
    from fakescope.evaluation.report import REPORT_FILE

    config = EvalConfig(
        datasets=list(args.datasets),
        model=args.model,
        out=args.out,
        calibration=args.calibration,
        quantization=args.quantization,
        device=args.device,
        protocol=args.protocol,
        provenance=args.provenance,
        robustness=args.robustness,
        batch_size=args.batch_size,
        limit=args.limit,
        bootstrap=args.bootstrap,
        seed=args.seed,
        skip_missing=args.skip_missing,
        progress=not args.quiet,
        fresh=args.fresh,
    )
    try:
        evaluate(config)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)  # SIGTERM, see fakescope.cli
        print(
            f"fakescope eval: {'terminated' if terminated else 'interrupted'}; finished batches "
            f"are kept in {args.out}, run the same command again"
            f"{' without --fresh' if args.fresh else ''} to resume",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM if terminated else 130
    _print_path(args.out / REPORT_FILE)
    return 0


def _print_path(path: Path) -> None:
    """Print a path that a script may open: `report=$(fakescope eval ...)`.

    A folder named in no valid UTF-8 (b'run_\\xff') reaches Python as lone surrogates (PEP 383),
    which a UTF-8 stdout refuses. Such a path is written as its own bytes, as `ls` and `find`
    print names, and as Python's stdout does under a POSIX locale (surrogateescape): the printed
    line names the file exactly, where `\\xNN` would name another that does not exist.
    """
    text = str(path)
    if readable(text) == text or not hasattr(sys.stdout, "buffer"):
        print(readable(text))  # no buffer: a text-only stream (a redirected stdout) gets `\\xNN`
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(os.fsencode(path) + b"\n")
    sys.stdout.buffer.flush()


def _compare_command(args: argparse.Namespace) -> int:
    return _compare([args.run_a, args.run_b])


def _compare(runs: list[str] | list[Path]) -> int:
    if len(runs) != 2:
        print("fakescope eval compare: error: give exactly two run folders", file=sys.stderr)
        return 2
    from fakescope.evaluation.compare import compare_runs

    print(compare_runs(Path(runs[0]), Path(runs[1])))  # for people: names shown as `\\xNN`
    return 0
