"""Image bytes the analysis service kept on disk (``Settings.image_store_dir``), for viewing.

Only formats every browser renders are shown; the media type comes from the format the
decoder recognised, never from the upload, and the page's CSP plus ``nosniff`` apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Litestar

from server.admin.context import settings_of
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


def stored_image(app: Litestar, item: dict[str, Any]) -> Path | None:
    """The file holding the item's bytes, when it exists and a browser can show it."""
    settings = settings_of(app)
    if settings is None or browser_media_type(item) is None:
        return None
    path = ImageStore(settings.image_store_dir)._path(item["sha256"])  # the store's own layout
    return path if path.is_file() else None
