"""`fakescope serve`, `fakescope db upgrade|current` and the delegated `fakescope admin`.

Nothing heavy is imported at module level: the `fakescope` command builds its parser on
every run, including runs that never touch the server.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from server.cli_errors import reporting_user_errors


def add_commands(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP server (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help=(
            "server processes; each loads its own model, so keep 1 with a GPU model "
            "(FAKESCOPE_ROLE=api processes load none)"
        ),
    )
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=reporting_user_errors(_cmd_serve))

    db = subparsers.add_parser("db", help="database migrations (Alembic)")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply migrations (creates the database)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=reporting_user_errors(_cmd_db_upgrade))
    current = actions.add_parser("current", help="print the database's revision and the newest")
    current.set_defaults(handler=reporting_user_errors(_cmd_db_current))

    from server.jobs.cli import add_commands as add_jobs_commands

    add_jobs_commands(subparsers)

    try:
        from server.admin.cli import add_commands as add_admin_commands
    except ImportError:
        return
    add_admin_commands(subparsers)


def _database_url() -> str:
    from server.settings import Settings

    return Settings.from_env().database_url


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from server.db.migrate import head_revision, upgrade

    url = _database_url()
    upgrade(url, args.revision)
    revision = head_revision() if args.revision == "head" else args.revision
    print(f"database {_redacted(url)} is at revision {revision}", file=sys.stderr)
    return 0


def _cmd_db_current(_args: argparse.Namespace) -> int:
    import asyncio

    from server.db.engine import create_engine
    from server.db.migrate import current_revision, head_revision

    async def read() -> str | None:
        engine = create_engine(_database_url())
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    current = asyncio.run(read())
    head = head_revision()
    print(f"current: {current or '(none)'}\nnewest:  {head}")
    return 0 if current == head else 1


def check_migrated(url: str) -> str | None:
    """None when the database is ready, else the message to show."""
    import asyncio

    from server.db.engine import create_engine
    from server.db.migrate import DatabaseNotMigratedError, ensure_migrated

    async def check() -> None:
        engine = create_engine(url)
        try:
            await ensure_migrated(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(check())
    except DatabaseNotMigratedError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot reach the database {_redacted(url)}: {exc}"
    return None


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.settings import Settings

    settings = Settings.from_env()
    problem = check_migrated(settings.database_url)
    if problem is not None:
        print(f"fakescope serve: {problem}", file=sys.stderr)
        return 2
    if args.workers > 1 and settings.model and settings.role != "api":
        print(
            f"fakescope serve: {args.workers} workers each load the model {settings.model}",
            file=sys.stderr,
        )
    uvicorn.run(
        "server.asgi:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
        limit_concurrency=settings.max_connections,
        http=_http_protocol(),
        h11_max_incomplete_event_size=settings.max_header_bytes,  # when h11 parses
    )
    return 0


def _http_protocol() -> str:
    """uvicorn's `http=`: an import string, so that `--workers` processes import it too.

    httptools (uvicorn's default parser when installed, a dependency of FakeScope) gets the
    header size cap and deadline and the send deadline of server/http_protocol.py; without
    it (removed from the environment), h11 parses, only its size cap applies, and serve
    says so.
    """
    import importlib.util

    if importlib.util.find_spec("httptools") is None:
        print(
            "fakescope serve: httptools is not installed: h11 parses requests, without the "
            "header and send deadlines (FAKESCOPE_HEADER_TIMEOUT_S, FAKESCOPE_SEND_TIMEOUT_S)",
            file=sys.stderr,
        )
        return "h11"
    from server.http_protocol import IMPORT_STRING

    return IMPORT_STRING
