"""What the app factory includes for review: the admin API, the /admin page, its static files.

``server/app.py`` passes :func:`admin_routers` to ``Litestar(route_handlers=...)``.
It also needs, as it already provides:
- ``template_config``: a Jinja engine on ``server/templates`` (we use ``admin/*.html.jinja``);
- ``app.state.db`` (``server.db.database.Database``) and ``app.state.settings``;
- an ``HTTPException`` handler rendering ``server.problems.ProblemError`` as problem+json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.file_system import BaseLocalFileSystem
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler
from litestar.types.file_types import FileInfo

from server.admin.access_api import AdminOnlyController
from server.admin.api import ReviewController
from server.admin.page import ReviewPageController
from server.admin.page_shell import STATIC_PREFIX
from server.admin.page_sign_in import SignInController

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "admin"


class StaticFiles(BaseLocalFileSystem):
    """The page's files on disk; a path the file system refuses to look up is a file that
    is not there (404), not a server error.

    Litestar answers a missing file with 404, but any other refusal of the lookup with 500:
    a NUL byte in the path (ValueError), a name over 255 bytes, a file taken for a directory
    (`admin.js/x`). None of them can name one of these files.
    """

    async def info(self, path: Any, **kwargs: Any) -> FileInfo:
        try:
            return await super().info(path, **kwargs)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(str(path)) from exc


def admin_routers() -> list[ControllerRouterHandler]:
    """The /v1/admin API controllers, the /admin page and its static files."""
    return [
        ReviewController,
        AdminOnlyController,
        ReviewPageController,
        SignInController,
        create_static_files_router(
            path=STATIC_PREFIX,
            directories=[STATIC_DIR],
            name="admin-static",
            file_system=StaticFiles(),
        ),
    ]
