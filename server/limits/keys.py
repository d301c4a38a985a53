"""Keys that fit their column: any text a request brings becomes a storable key."""

from __future__ import annotations

import hashlib

DIGEST_MARK = "#sha256:"


def fit_key(text: str, max_length: int) -> str:
    """``text`` itself when the column can hold it, else a digest that stands for it.

    Too long, holding a NUL (PostgreSQL text cannot) or not encodable as UTF-8: the key
    becomes ``#sha256:<hex>`` (72 characters), so no request can make a limit's write fail.
    Keys that already look like a digest are digested too, so two keys never share a row.
    """
    storable = len(text) <= max_length and "\x00" not in text and not text.startswith(DIGEST_MARK)
    if storable:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            storable = False
    if storable:
        return text
    return DIGEST_MARK + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
