"""decode_image, the server's and the CLI's decoder: an `ImageError` subclass or an image."""

from __future__ import annotations

from fuzz.harness import instrumented, main

with instrumented():
    from fakescope.errors import ImageError
    from fakescope.images import decode_image

ALLOWED: tuple[type[BaseException], ...] = (ImageError,)


def target(data: bytes) -> None:
    decode_image(data)


if __name__ == "__main__":
    main(target, ALLOWED, "decode")
