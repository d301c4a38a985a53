"""Image bytes the analysis service kept (files or database rows), for viewing.

Only formats every browser renders are shown; the media type comes from the format the
decoder recognised, never from the upload, and the page's CSP plus ``nosniff`` apply.
"""

from __future__ import annotations

from typing import Any, cast

from litestar import Litestar

from server.analyze.image_store import ImageStore

BROWSER_MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "AVIF": "image/avif",
}


def browser_media_type(item: dict[str, Any]) -> str | None:
    image = item.get("image") or {}
    return BROWSER_MEDIA_TYPES.get(str(image.get("format", "")).upper())


def image_store(app: Litestar) -> ImageStore | None:
    """The app's image store (files or database rows, as the analysis service keeps them)."""
    return cast("ImageStore | None", app.state.get("image_store"))


async def has_stored_image(app: Litestar, item: dict[str, Any]) -> bool:
    """Whether the item's bytes are kept and a browser can show them."""
    store = image_store(app)
    if store is None or browser_media_type(item) is None:
        return False
    return await store.contains(item["sha256"])


async def stored_image(app: Litestar, item: dict[str, Any]) -> bytes | None:
    """The item's bytes, when they are kept and a browser can show them."""
    store = image_store(app)
    if store is None or browser_media_type(item) is None:
        return None
    return await store.load(item["sha256"])
