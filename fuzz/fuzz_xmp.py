"""parse_xmp on any bytes: ValueError is its one documented error (read_xmp turns it into a
finding); entity expansion, deep nesting and huge text must stay cheap."""

from __future__ import annotations

from fuzz.harness import instrumented, main

with instrumented():
    from fakescope.provenance.xmp import parse_xmp, read_xmp, source_type_findings

ALLOWED: tuple[type[BaseException], ...] = (ValueError,)


def target(data: bytes) -> None:
    properties, _ = read_xmp(data)
    source_type_findings(properties)
    parse_xmp(data)


if __name__ == "__main__":
    main(target, ALLOWED, "xmp")
