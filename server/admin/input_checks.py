"""What the review API and page accept from a caller: a sha256, a reason or audit action
name, a row id, free text without control characters.

The page, the API and the ``fakescope admin`` command refuse the same things, so they check
them here.
"""

from __future__ import annotations

import re

from server.problems import ProblemError

# \Z, not $: "$" also matches before a final newline, and "user_report\n" matches nothing.
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
REASON_RE = re.compile(r"^[a-z0-9_]{1,64}\Z")
# An audit log action: dotted snake_case names ("token.create", "review.decide").
ACTION_RE = re.compile(r"^[a-z0-9_.]{1,64}\Z")
# The largest id the id columns hold: they are INTEGER, 32 bits on PostgreSQL, whose driver
# refused a larger id in a comparison (a 500 for `before_id` or a path id of 2**31 and up).
MAX_ROW_ID = 2**31 - 1
# A row id as written in a path or a form: ASCII digits only. int() also takes "+1", " 1",
# "1_000" and other scripts' digits ("\u0661"), and reads them all as some other id.
ROW_ID_RE = re.compile(r"[0-9]{1,19}")
# NUL cannot be stored in PostgreSQL text; other C0 controls (but tab, newline, CR) are noise.
CONTROL_CHARS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def checked_text(name: str, value: str | None, max_chars: int) -> str | None:
    """A free-text field as given, or a 422 naming the problem (too long, control characters)."""
    if value is None:
        return None
    if len(value) > max_chars:
        raise ProblemError(422, f"{name} is longer than {max_chars} characters")
    if CONTROL_CHARS_RE.search(value):
        raise ProblemError(
            422, f"{name} must not contain control characters (other than tab and newline)"
        )
    return value


def checked_sha256(value: str) -> str:
    sha = value.strip().lower()
    if not SHA256_RE.match(sha):
        raise ProblemError(422, "sha256 must be 64 hexadecimal characters", code="invalid-sha256")
    return sha


def row_id(text: str) -> int | None:
    """The row id `text` writes in ASCII digits (0 included), or None: not such an id, or
    one no row can have (over MAX_ROW_ID)."""
    if not ROW_ID_RE.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_ROW_ID else None
