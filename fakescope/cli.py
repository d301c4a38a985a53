"""The `fakescope` command: analyse images, ask about them, evaluate, and run the service."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fakescope.errors import FakeScopeError, Terminated

if TYPE_CHECKING:
    from types import FrameType

    from fakescope.images import ImageLimits
    from fakescope.model import ForensicModel

QUANTIZATIONS = ("nf4", "int8", "none")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value


def _pixel_limit(text: str) -> int:
    from fakescope.images import MAX_PIXELS_CEILING

    value = _positive_int(text)
    if value > MAX_PIXELS_CEILING:
        raise argparse.ArgumentTypeError(f"{text} is over the highest limit, {MAX_PIXELS_CEILING}")
    return value


def _add_model_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--model",
        required=required,
        help="checkpoint directory or hub id (image-text-to-text); without it, provenance only",
    )
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        help="weights on the GPU: nf4 (default on CUDA), int8 or none (default on CPU)",
    )
    parser.add_argument("--device", help="cuda, cuda:1, cpu ... (default: CUDA if available)")


def _load(args: argparse.Namespace) -> ForensicModel | None:
    if not args.model:
        return None
    from fakescope.loading import load_model

    calibration = None
    if getattr(args, "calibration", None):
        from fakescope.calibration import Calibration

        calibration = Calibration.load(args.calibration)
    model = load_model(
        args.model, quantization=args.quantization, device=args.device, calibration=calibration
    )
    if model.info.untrained:
        print(
            f"note: {args.model} is an untrained random-weight checkpoint; "
            "its scores and text mean nothing",
            file=sys.stderr,
        )
    return model


def _error_object(path: str, exc: BaseException) -> dict[str, Any]:
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return {"path": path, "error": {"type": type(exc).__name__, "detail": detail}}


def _human_line(result: dict[str, Any]) -> str:
    from fakescope.evaluation.output_files import one_line

    path = one_line(result["path"])  # a name holding a line break stays on its image's line
    if "error" in result:
        return f"{path}: error: {result['error']['type']}: {result['error']['detail']}"
    score = "n/a" if result["p_fake"] is None else f"{result['p_fake']:.3f}"
    if result["p_fake"] is not None and ((result.get("model") or {}).get("calibration")):
        score += " calibrated"  # with --calibration: not the raw token-based p_fake
    line = f"{path}: {result['label']} (p_fake {score}, decided by {result['decided_by']})"
    if result.get("untrained"):
        line += " [untrained model: the score means nothing]"
    # Summaries quote the image's own metadata (a generator name, a C2PA claim) and the
    # explanation is generated: escape sequences in either must not drive the terminal.
    if result["evidence"]:
        line += "\n" + "\n".join(
            f"  - [{e['strength']}] {one_line(e['summary'])}" for e in result["evidence"]
        )
    if result["explanation"]:
        line += "\n  explanation: " + terminal_text(result["explanation"]).replace("\n", "\n  ")
    return line


def terminal_text(text: str) -> str:
    """Generated text as a terminal may show it: its line breaks kept, every other control
    character escaped (`one_line`), so that no escape sequence in it drives the terminal."""
    from fakescope.evaluation.output_files import one_line

    return "\n".join(one_line(part) for part in text.split("\n"))


def _cmd_analyze(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fakescope.analysis import analyze_image
    from fakescope.images import ImageLimits
    from fakescope.verdict import Thresholds

    thresholds = Thresholds(fake=args.fake_threshold, real=args.real_threshold)
    limits = ImageLimits(max_pixels=args.max_pixels)
    model = _load(args)
    failed = 0
    paths: list[str] = args.images
    show_progress = len(paths) > 1 and not args.quiet
    for path in tqdm(
        paths, desc="analysing", unit="image", disable=not show_progress, file=sys.stderr
    ):
        try:
            data = _read_input(path, limits)
            analysis = analyze_image(
                data, model=model, explain=args.explain, thresholds=thresholds, limits=limits
            )
            result: dict[str, Any] = {"path": path, **analysis.to_dict()}
        except (FakeScopeError, OSError) as exc:
            failed += 1
            result = _error_object(path, exc)
        if args.json:
            _write_json_line(result)
        else:
            _write_text_line(_human_line(result))
    return 1 if failed else 0


def _write_json_line(result: dict[str, Any]) -> None:
    """One JSON object as a line of UTF-8, whatever the locale says.

    A file name that is not UTF-8 arrives as lone surrogates (PEP 383); they are written as
    JSON escapes ("\\udcff"), which Python's json reads back into the same name.
    """
    line = json.dumps(result, ensure_ascii=False) + "\n"
    _write_bytes(line.encode("utf-8", "backslashreplace"))


def _write_text_line(line: str) -> None:
    """A line for people: a non-UTF-8 file name is written back as its own bytes, as ls does."""
    encoding = sys.stdout.encoding or "utf-8"
    try:
        data = (line + "\n").encode(encoding, "surrogateescape")
    except UnicodeEncodeError:
        data = (line + "\n").encode(encoding, "backslashreplace")
    _write_bytes(data, encoding)


def _write_bytes(data: bytes, encoding: str = "utf-8") -> None:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream (io.StringIO in a caller's redirect)
        sys.stdout.write(data.decode(encoding, "replace"))
        sys.stdout.flush()
        return
    buffer.write(data)
    buffer.flush()


def _read_input(path: str, limits: ImageLimits | None = None) -> bytes:
    """The bytes of an image argument, never more than the byte cap; `-` reads standard input."""
    from fakescope.images import ImageLimits, read_image_bytes

    limits = limits or ImageLimits()
    return read_image_bytes(sys.stdin.buffer if path == "-" else path, limits)


# The first line of `ask`'s plain answer when the checkpoint is untrained (`--json`: "untrained").
UNTRAINED_ANSWER_NOTICE = "[untrained model: random weights, this answer means nothing]"


def _question(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The prompt, and what was asked in the words of the server's answers (`kind`, ...)."""
    from fakescope import prompts

    # `is not None`: an empty --aspect or --question is a user error, not "no option given".
    if args.aspect is not None:
        aspect = prompts.canonical_aspect(args.aspect)
        return prompts.aspect_prompt(aspect), {"kind": "aspect", "aspect": aspect}
    if args.enhance:
        return prompts.ENHANCE_PROMPT, {"kind": "enhance"}
    if args.explain:
        return prompts.EXPLAIN_PROMPTS[args.explain], {"kind": "explain", "mode": args.explain}
    question = prompts.question_prompt(args.question)
    return question, {"kind": "question", "question": question}


def _cmd_ask(args: argparse.Namespace) -> int:
    from fakescope import tasks
    from fakescope.images import decode_image
    from fakescope.prompts import PROMPT_VERSION

    try:
        prompt, asked = _question(args)
    except ValueError as exc:
        print(f"fakescope ask: error: {exc}", file=sys.stderr)
        return 2
    try:
        decoded = decode_image(_read_input(args.image))
    except (FakeScopeError, OSError) as exc:
        from fakescope.evaluation.output_files import one_line

        error = _error_object(args.image, exc)["error"]
        print(f"fakescope ask: error: {one_line(args.image)}: {error['detail']}", file=sys.stderr)
        return 1
    model = _load(args)
    assert model is not None
    pieces = tasks.answer_stream(model, decoded.rgb, prompt, max_new_tokens=args.max_new_tokens)
    if args.json:
        answer = {
            "path": args.image,
            "sha256": decoded.sha256,
            **asked,
            "answer": "".join(pieces),
            "model": model.info.to_dict(),
            "untrained": model.info.untrained,
            "prompt_version": PROMPT_VERSION,
        }
        _write_json_line(answer)
        return 0
    if model.info.untrained:
        sys.stdout.write(UNTRAINED_ANSWER_NOTICE + "\n")
    for piece in pieces:
        sys.stdout.write(terminal_text(piece))
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _cmd_tiny_model(args: argparse.Namespace) -> int:
    from fakescope.tiny import build_tiny_checkpoint

    path = build_tiny_checkpoint(Path(args.directory), seed=args.seed)
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fakescope", description="Transparent forensics for AI-generated images."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser("analyze", help="verdict, score and evidence for images")
    analyze.add_argument("images", nargs="+", metavar="IMAGE", help="image files; - reads stdin")
    _add_model_options(analyze, required=False)
    analyze.add_argument(
        "--calibration",
        metavar="FILE",
        help="calibrate p_fake with this file, fitted for this model (`fakescope eval calibrate`)",
    )
    analyze.add_argument("--explain", action="store_true", help="also generate an explanation")
    analyze.add_argument("--json", action="store_true", help="JSON Lines, one object per image")
    analyze.add_argument("--fake-threshold", type=_probability, default=0.6)
    analyze.add_argument("--real-threshold", type=_probability, default=0.4)
    analyze.add_argument(
        "--max-pixels", type=_pixel_limit, default=64_000_000, help="refuse larger images"
    )
    analyze.add_argument("--quiet", action="store_true", help="no progress bar")
    analyze.set_defaults(handler=_cmd_analyze)

    ask = commands.add_parser("ask", help="ask the model one question about an image")
    ask.add_argument("image", metavar="IMAGE", help="an image file; - reads stdin")
    _add_model_options(ask, required=True)
    question = ask.add_mutually_exclusive_group(required=True)
    question.add_argument("--aspect", help="one of the 14 forgery aspects, e.g. texture")
    question.add_argument("--question", help="a free question")
    question.add_argument("--enhance", action="store_true", help="suggest enhancements")
    question.add_argument(
        "--explain", choices=("inference", "fault_finding"), help="explain the verdict"
    )
    ask.add_argument("--max-new-tokens", type=_positive_int, default=256)
    ask.add_argument(
        "--json", action="store_true", help="one JSON object: the answer, the model, untrained"
    )
    ask.set_defaults(handler=_cmd_ask)

    tiny = commands.add_parser("tiny-model", help="write a tiny random-weight checkpoint")
    tiny.add_argument("directory", metavar="DIR")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(handler=_cmd_tiny_model)

    from fakescope.evaluation.cli import add_commands as add_eval_commands

    add_eval_commands(commands)
    try:
        from server.cli import add_commands as add_server_commands
    except ImportError:  # the library installed without its service
        pass
    else:
        add_server_commands(commands)
    return parser


# The commands whose SIGTERM unwinds as Ctrl-C does; the service's commands (serve, db, jobs,
# admin) keep their own handling of it.
_UNWIND_ON_SIGTERM = frozenset({"analyze", "ask", "eval", "tiny-model"})


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:2] == ["eval", "compare"]:
        from fakescope.evaluation.cli import compare_parser

        parser = compare_parser()
        args = parser.parse_args(words[2:])
    elif words[:2] == ["eval", "calibrate"]:
        from fakescope.evaluation.cli import calibrate_parser

        parser = calibrate_parser()
        args = parser.parse_args(words[2:])
    else:
        parser = build_parser()
        args = parser.parse_args(words)
    if args.command == "analyze" and args.real_threshold > args.fake_threshold:
        parser.error("--real-threshold must not be above --fake-threshold")
    if args.command == "analyze" and args.calibration and not args.model:
        parser.error("--calibration needs --model (it calibrates the model's p_fake)")
    with _sigterm_raises_terminated(args.command in _UNWIND_ON_SIGTERM):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except FakeScopeError as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`fakescope analyze ... | head`): stop quietly, as cat does.
        _silence_stdout()
        return 141
    except OSError as exc:
        # A path the user gave cannot be read or written (--out is a file, a missing folder...).
        print(f"fakescope: error: {_os_error_text(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print("fakescope: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("fakescope: interrupted", file=sys.stderr)
        return 130


@contextmanager
def _sigterm_raises_terminated(enabled: bool) -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated in the main thread instead of ending the
    process on the spot: `finally` blocks run, and no temporary file is left behind."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _raise_terminated(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated


def _os_error_text(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    if exc.filename is not None:
        text = f"{exc.filename}: {text}"
    return text


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
