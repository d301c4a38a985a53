"""Small helpers shared by the provenance readers: bounded text and the metadata_error finding."""

from __future__ import annotations

from typing import Any

from fakescope.evidence import Evidence, Indication, Strength

SUMMARY_CHARS = 200
DETAIL_CHARS = 500
DETAIL_ITEMS = 20


def clip(text: str, limit: int = DETAIL_CHARS) -> str:
    """Text cut to `limit` characters, marked when cut (metadata can be megabytes)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def clip_list(items: list[Any], limit: int = DETAIL_ITEMS) -> list[Any]:
    return items[:limit]


def metadata_error(source: str, problem: str, **details: Any) -> Evidence:
    """A metadata block that could not be read: context for a reviewer, never a verdict."""
    return Evidence(
        kind="metadata_error",
        indicates=Indication.NEUTRAL,
        strength=Strength.INFO,
        summary=clip(f"Unreadable metadata in {source}: {problem}", SUMMARY_CHARS),
        source=source,
        details={key: clip(str(value)) for key, value in details.items()},
    )


def decode_text(raw: bytes | str) -> str:
    """Metadata strings arrive as bytes in odd encodings: decode without ever failing."""
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # decodes any byte string
    return text.replace("\x00", "").strip()
