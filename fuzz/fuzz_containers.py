"""The container walkers of containers.py on any bytes: TooComplex (a ValueError) is their
only documented error, and png_text's are ValueError and zlib.error."""

from __future__ import annotations

import contextlib
import zlib

from fuzz.harness import instrumented, main

with instrumented():
    from fakescope.containers import (
        TooComplex,
        check_gif_structure,
        count_gif_blocks,
        count_jpeg_scans,
        jpeg_blocks,
        png_blocks,
    )
    from fakescope.containers import png_text as read_text

ALLOWED: tuple[type[BaseException], ...] = (TooComplex,)


def target(data: bytes) -> None:
    # The walkers are called on whatever the format sniffing hands them: try each on all.
    for variant in (data, b"\x89PNG\r\n\x1a\n" + data, b"\xff\xd8" + data):
        try:
            for block in png_blocks(variant):
                if block.kind == "text":
                    with contextlib.suppress(ValueError, zlib.error):
                        read_text(block.key, block.body)
        except TooComplex:
            pass
        with contextlib.suppress(TooComplex):
            list(jpeg_blocks(variant))
        with contextlib.suppress(TooComplex):
            count_jpeg_scans(variant)
    for walk in (count_gif_blocks, check_gif_structure):
        with contextlib.suppress(TooComplex):
            walk(data)
    for kind in ("tEXt", "zTXt", "iTXt"):
        with contextlib.suppress(ValueError, zlib.error):
            read_text(kind, data)


if __name__ == "__main__":
    main(target, ALLOWED, "containers")
