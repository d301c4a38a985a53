"""Hostile local inputs to `fakescope analyze` and `fakescope ask`: paths that are no plain file
(a named pipe nobody writes to), images built to cost minutes (a progressive JPEG of thousands
of scans, a TIFF of thousands of pages) and checkpoints cut short. Each is a one-line error,
given at once; commands that could hang run in a subprocess with a timeout, so a hang fails."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import hostile_images as hostile
import numpy as np
import pytest
from cli_runs import run_main
from PIL import Image

from fakescope.containers import MAX_GIF_FRAMES, MAX_GIF_PARTS, MAX_JPEG_SCANS
from fakescope.errors import UndecodableImageError
from fakescope.exif_block import MAX_TIFF_PAGES, check_tiff_pages, check_tiff_structure
from fakescope.images import decode_image, sha256_hex

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


def run_cli(*args: str, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakescope.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,  # a read that waits for ever fails the test instead of blocking it
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        pass_fds=pass_fds,
    )


def json_line(text: str) -> dict[str, object]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "scene.png"
    path.write_bytes(hostile.encode(hostile.scene(), "PNG"))
    return path


@needs_fifo
def test_a_named_pipe_no_program_writes_to_is_an_error_at_once_and_the_rest_is_analysed(
    tmp_path: Path, png: Path
) -> None:
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    result = run_cli("analyze", "--json", "--quiet", str(pipe), str(png))
    assert result.returncode == 1, result.stderr
    refused, analysed = (json_line(line) for line in result.stdout.splitlines())
    assert refused["path"] == str(pipe)
    assert refused["error"]["type"] == "EmptyImageError"
    assert "named pipe" in refused["error"]["detail"]
    assert "give -" in refused["error"]["detail"]  # says how to read a pipe: standard input
    assert analysed["sha256"] == sha256_hex(png.read_bytes())


@needs_fifo
def test_ask_about_a_named_pipe_no_program_writes_to_is_a_one_line_error(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    result = run_cli("ask", str(pipe), "--model", str(tiny_model_dir), "--aspect", "texture")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"fakescope ask: error: {pipe}: a named pipe that no program writes to; start its "
        "writer first, or give - and redirect the pipe to standard input"
    ]


def test_a_pipe_with_its_writer_is_read_as_a_shells_process_substitution_gives_it(
    png: Path,
) -> None:
    # `fakescope analyze <(curl ...)` passes /dev/fd/N, the read end of a pipe with a writer.
    data = png.read_bytes()
    assert len(data) < 65_536  # fits the pipe's buffer: written whole before the command runs
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
        os.close(write_end)
        result = run_cli("analyze", "--json", f"/dev/fd/{read_end}", pass_fds=(read_end,))
    finally:
        os.close(read_end)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json_line(result.stdout)["sha256"] == sha256_hex(data)


def test_a_folder_given_as_an_image_is_named_as_one(tmp_path: Path) -> None:
    result = run_cli("analyze", "--json", str(tmp_path))
    assert json_line(result.stdout)["error"] == {
        "type": "IsADirectoryError",
        "detail": "Is a directory",
    }


# -- images that cost minutes in a few hundred kilobytes -------------------------------------


def _jpeg_with_repeated_scans(copies: int, side: int = 256) -> bytes:
    """A progressive JPEG whose last scan is repeated `copies` times before the end."""
    data = hostile.encode(Image.new("L", (side, side), 0), "JPEG", progressive=True)
    last_scan = data.rindex(b"\xff\xda")
    return data[:-2] + data[last_scan:-2] * copies + b"\xff\xd9"


def test_a_progressive_jpeg_of_thousands_of_scans_is_refused_before_decoding() -> None:
    # Each scan is a pass over the whole image: 2,000 of them in 156 KB took 19 s at 16 Mpx.
    with pytest.raises(UndecodableImageError, match=f"more than {MAX_JPEG_SCANS} JPEG scans"):
        decode_image(_jpeg_with_repeated_scans(MAX_JPEG_SCANS))


def test_progressive_jpegs_as_encoders_write_them_still_decode() -> None:
    progressive = hostile.encode(hostile.scene(), "JPEG", progressive=True)
    assert decode_image(progressive).width == 96
    # What follows the end of the picture (a motion photo's video, an MPO's next picture) is
    # not counted, however many scan markers its bytes happen to hold.
    trailer = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" * (2 * MAX_JPEG_SCANS)
    assert decode_image(progressive + trailer).width == 96


def _tiff_pages(pages: int, *, loop: bool = False, big: bool = False) -> bytes:
    """One-pixel grey pages chained one after another (the last back to the first: `loop`)."""
    entries = [(256, 3, 1), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1)]
    entries += [(273, 4, 8 if not big else 16), (277, 3, 1), (278, 3, 1), (279, 4, 1)]
    if big:
        head, count, entry, offset = b"II+\x00" + struct.pack("<HHQ", 8, 0, 17), "<Q", "<HHQQ", "<Q"
    else:
        head, count, entry, offset = b"II*\x00" + struct.pack("<I", 9), "<H", "<HHII", "<I"
    head += b"\x00"  # the one pixel all pages share
    size = struct.calcsize(count) + struct.calcsize(entry) * len(entries) + struct.calcsize(offset)
    out = bytearray(head)
    for page in range(pages):
        following = len(head) + (page + 1) * size if page < pages - 1 else 0
        if loop and page == pages - 1:
            following = len(head)
        out += struct.pack(count, len(entries))
        out += b"".join(struct.pack(entry, tag, kind, 1, value) for tag, kind, value in entries)
        out += struct.pack(offset, following)
    return bytes(out)


@pytest.mark.parametrize("big", [False, True], ids=["tiff", "bigtiff"])
def test_a_tiff_of_more_pages_than_the_cap_is_refused_before_pillow_counts_them(
    big: bool,
) -> None:
    # Pillow counts pages in a time that grows with their square: 200,000 took minutes.
    with pytest.raises(UndecodableImageError, match=f"more than {MAX_TIFF_PAGES} TIFF pages"):
        decode_image(_tiff_pages(MAX_TIFF_PAGES + 1, big=big))


@pytest.mark.parametrize(
    ("check", "header"),
    [
        (check_tiff_pages, b"II*\x00\x08\x00\x00"),
        (check_tiff_pages, b"II+\x00\x08\x00\x00\x00"),
        (check_tiff_structure, b"II*\x00\x08\x00\x00"),
        (check_tiff_structure, b"MM\x00*"),
    ],
)
def test_a_tiff_header_cut_short_is_a_value_error(
    check: Callable[[bytes], None], header: bytes
) -> None:
    # Found by fuzz/fuzz_exif.py: struct.error, which callers catching ValueError let through.
    with pytest.raises(ValueError, match="cut short"):
        check(header)


def test_tiffs_of_a_few_pages_decode_even_when_their_chain_loops() -> None:
    assert decode_image(_tiff_pages(3)).n_frames == 3
    assert decode_image(_tiff_pages(3, loop=True)).n_frames == 3


def _gif_of_frames(frames: int) -> bytes:
    """A GIF of `frames` one-pixel frames, 15 bytes each."""
    gif = hostile.encode(Image.new("P", (1, 1)), "GIF")
    first = gif.index(b"\x2c")  # the first image descriptor, after the header and its table
    frame = b"\x2c" + struct.pack("<4H", 0, 0, 1, 1) + b"\x00" + b"\x02\x02\x4c\x01\x00"
    return gif[:first] + frame * frames + b"\x3b"


@pytest.mark.parametrize(
    ("data", "refused"),
    [
        (_gif_of_frames(MAX_GIF_FRAMES + 1), "frames"),
        (hostile.gif_with(b"\x21\xfe\x01c\x00" * (MAX_GIF_PARTS // 2 + 1)), "blocks"),
        (hostile.gif_with(b"\x21\xfe" + b"\x01c" * MAX_GIF_PARTS + b"\x00"), "blocks"),
        (hostile.gif_with(b"\x01" * (MAX_GIF_PARTS + 1)), "stray bytes"),
    ],
    ids=["one-pixel-frames", "empty-comments", "one-byte-sub-blocks", "stray-bytes"],
)
def test_a_gif_of_more_parts_than_the_cap_is_refused_before_pillow_walks_them(
    data: bytes, refused: str
) -> None:
    # Pillow walks every frame, extension, sub-block and stray byte in Python to open a GIF and
    # count its frames: 25 MB of them took 15 to 35 seconds (found reviewing the fuzzed parsers).
    with pytest.raises(UndecodableImageError, match=f"GIF structure refused: .*{refused}"):
        decode_image(data)


def _stray_bytes_behind_an_empty_sub_block(head: bytes) -> bytes:
    """An extension `head` ending in an empty sub-block, then an extension whose 255-byte
    sub-blocks Pillow walks as stray bytes: it takes the empty sub-block for no terminator,
    reads the next byte (0x21) as a sub-block's length and the zero inside the first
    255-byte sub-block as the terminator."""
    first = bytearray(b"\xff" + b"\x01" * 255)
    first[32] = 0  # 34 bytes after the 0x21 that Pillow reads as a length
    blocks = bytes(first) + (b"\xff" + b"\x01" * 255) * (MAX_GIF_PARTS // 256 + 1)
    return hostile.gif_with(head + b"\x21\x01" + blocks + b"\x00")


@pytest.mark.parametrize(
    "head",
    [b"\x21\xf9\x00", b"\x21\xff\x0bNETSCAPE2.0\x00"],
    ids=["empty-graphic-control", "netscape-without-loop-count"],
)
def test_stray_bytes_hidden_from_the_walk_in_sub_blocks_are_refused_too(head: bytes) -> None:
    # Pillow reads on past an extension's empty first sub-block (and a NETSCAPE2.0 block's
    # empty second one), the walk stopped there: ~200,000 stray bytes for Pillow were a few
    # hundred sub-blocks for the walk, 25 MB of them seconds of Pillow's time, uncapped.
    with pytest.raises(UndecodableImageError, match=r"GIF structure refused: .*stray bytes"):
        decode_image(_stray_bytes_behind_an_empty_sub_block(head))


def test_a_looping_animated_gif_still_decodes() -> None:
    frames = [Image.new("RGB", (8, 8), color) for color in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], loop=0, duration=50)
    assert b"NETSCAPE2.0" in buf.getvalue()
    assert decode_image(buf.getvalue()).n_frames == 3


def test_gifs_of_many_frames_and_big_gifs_still_decode() -> None:
    assert decode_image(_gif_of_frames(MAX_GIF_FRAMES)).n_frames == MAX_GIF_FRAMES
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (800, 800, 3), dtype="uint8")).convert("P")
    assert decode_image(hostile.encode(noise, "GIF")).width == 800


def test_analyze_names_an_image_refused_for_its_structure_in_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bomb = tmp_path / "scans.jpg"
    bomb.write_bytes(_jpeg_with_repeated_scans(MAX_JPEG_SCANS))
    status, out, _err = run_main(capsys, "analyze", "--json", "--quiet", str(bomb))
    assert status == 1
    assert json_line(out)["error"]["type"] == "UndecodableImageError"


# -- names that would break a line ----------------------------------------------------------


def test_plain_analyze_prints_a_name_with_a_line_break_or_escape_on_its_own_line_escaped(
    tmp_path: Path,
) -> None:
    names = ["two\nlines.png", "red\x1b[31m.png", "next\u2028line.png"]
    for name in names:
        (tmp_path / name).write_bytes(hostile.encode(hostile.scene(), "PNG"))
    missing = tmp_path / "gone\r\n.png"
    paths = [str(tmp_path / name) for name in names] + [str(missing)]
    result = run_cli("analyze", "--quiet", *paths)
    assert result.returncode == 1, result.stderr
    image_lines = [line for line in result.stdout.split("\n") if not line.startswith("  ")]
    assert [line.partition(": ")[0] for line in image_lines[:-1]] == [
        f"{tmp_path}/two\\nlines.png",
        f"{tmp_path}/red\\x1b[31m.png",
        f"{tmp_path}/next\\u2028line.png",
        f"{tmp_path}/gone\\r\\n.png",
    ]
    assert image_lines[-1] == ""  # the output ends with its last line's break
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert f"{tmp_path}/gone\\r\\n.png: error: " in image_lines[3]


def test_json_analyze_keeps_a_name_with_a_line_break_exact(tmp_path: Path, png: Path) -> None:
    named = png.rename(tmp_path / "two\nlines.png")
    result = run_cli("analyze", "--json", "--quiet", str(named))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert json_line(line)["path"] == str(named)  # JSON escapes it; a script gets the name back


def test_ask_names_an_unreadable_image_with_a_line_break_on_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model_dir: Path
) -> None:
    missing = tmp_path / "gone\n.png"
    status, _out, err = run_main(
        capsys, "ask", str(missing), "--model", str(tiny_model_dir), "--aspect", "texture"
    )
    assert status == 1
    assert err.splitlines() == [f"fakescope ask: error: {tmp_path}/gone\\n.png: {os.strerror(2)}"]


# -- checkpoints cut short ------------------------------------------------------------------


@pytest.fixture
def checkpoint_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "checkpoint"))


@pytest.mark.parametrize("keep", [0, 1000, -100], ids=["empty", "cut-header", "cut-tensors"])
def test_a_weights_file_cut_short_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], checkpoint_copy: Path, png: Path, keep: int
) -> None:
    weights = checkpoint_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:keep])
    status, out, err = run_main(capsys, "analyze", str(png), "--model", str(checkpoint_copy))
    assert status == 2
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"fakescope: error: cannot load the weights of {checkpoint_copy}: ")
    assert "Traceback" not in err
    assert "HF_HUB_OFFLINE" not in err  # a local folder: the hub has nothing to do with it


def test_a_chat_template_that_does_not_parse_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], checkpoint_copy: Path, png: Path
) -> None:
    (checkpoint_copy / "chat_template.jinja").write_text("{% for %}", encoding="utf-8")
    status, _out, err = run_main(capsys, "analyze", str(png), "--model", str(checkpoint_copy))
    assert status == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"fakescope: error: the chat template of {checkpoint_copy} does not ")


def test_a_model_path_that_is_a_file_says_so_and_what_a_checkpoint_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, png: Path
) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 64)
    status, out, err = run_main(capsys, "analyze", str(png), "--model", str(weights))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        f"fakescope: error: {weights} is a file, not a checkpoint: a checkpoint is a folder "
        "holding config.json and the weights"
    ]


def test_a_model_path_that_is_a_checkpoint_file_names_the_folder_to_give(
    capsys: pytest.CaptureFixture[str], checkpoint_copy: Path, png: Path
) -> None:
    weights = checkpoint_copy / "model.safetensors"
    status, _out, err = run_main(capsys, "analyze", str(png), "--model", str(weights))
    assert status == 2
    assert err.splitlines()[-1].endswith(
        f"is a file, not a checkpoint: a checkpoint is a folder holding config.json and the "
        f"weights; give the folder it is in, {checkpoint_copy}"
    )


def test_hostile_builders_make_what_they_say() -> None:
    # The repeated scans and pages are there (else the refusals above would prove nothing).
    assert _jpeg_with_repeated_scans(5).count(b"\xff\xda") > 5
    assert Image.open(io.BytesIO(_tiff_pages(4))).n_frames == 4


def test_plain_analyze_shows_metadata_escape_sequences_escaped_in_evidence(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The summary quotes the generator name the file claims: a PNG tEXt value holding
    # "clear the screen" and "set the window title" sequences reached the terminal as they were.
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "Midjourney\x1b[2J\x1b]0;pwned\x07 v6")
    path = tmp_path / "claims.png"
    hostile.scene().save(path, pnginfo=info)
    status, out, _err = run_main(capsys, "analyze", "--quiet", str(path))
    assert status == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "Midjourney\\x1b[2J\\x1b]0;pwned\\x07 v6" in out


def test_plain_analyze_keeps_an_explanations_paragraphs_and_escapes_the_rest() -> None:
    from fakescope.cli import _human_line

    result = {
        "path": "a.png",
        "label": "fake",
        "p_fake": 0.9,
        "decided_by": "model",
        "evidence": [],
        "explanation": "Smooth skin.\nThe hands\x1b[8m are wrong.",
    }
    assert _human_line(result).splitlines()[1:] == [
        "  explanation: Smooth skin.",
        "  The hands\\x1b[8m are wrong.",
    ]


def test_ask_streams_an_answer_with_its_line_breaks_and_escape_sequences_escaped(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    png: Path,
    tiny_model_dir: Path,
) -> None:
    from fakescope import tasks

    def answer_stream(*_args: object, **_kwargs: object) -> Iterator[str]:
        yield from ["The lighting\x1b]0;pwned", "\x07 is flat.\nThe", " shadows\x1b[2J agree."]

    monkeypatch.setattr(tasks, "answer_stream", answer_stream)
    status, out, _err = run_main(
        capsys, "ask", str(png), "--model", str(tiny_model_dir), "--aspect", "texture"
    )
    assert status == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "The lighting\\x1b]0;pwned\\x07 is flat.\nThe shadows\\x1b[2J agree.\n" in out
