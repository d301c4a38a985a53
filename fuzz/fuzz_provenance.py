"""read_provenance on any bytes: documented never to raise (an unreadable block becomes a
`metadata_error` finding), and every finding must serialise as strict JSON in UTF-8 (the
server's answers, the database, the CLI's JSON Lines)."""

from __future__ import annotations

import json

from fuzz.harness import instrumented, main

with instrumented():
    from fakescope.provenance import read_provenance

ALLOWED: tuple[type[BaseException], ...] = ()


def target(data: bytes) -> None:
    for finding in read_provenance(data):
        json.dumps(finding.to_dict(), ensure_ascii=False, allow_nan=False).encode("utf-8")


if __name__ == "__main__":
    main(target, ALLOWED, "provenance")
