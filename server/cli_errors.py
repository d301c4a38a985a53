"""User errors of the server's commands (`serve`, `db`, `jobs`, `admin`) as one line.

A bad FAKESCOPE_* value, a database that does not exist, is unreachable, is not migrated, or
a database URL without an async driver end the command with a message and status 2, not a
traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def reporting_user_errors(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError

        from server.db.migrate import DatabaseNotMigratedError
        from server.settings import SettingsError

        try:
            return int(handler(args))
        except (SettingsError, DatabaseNotMigratedError) as exc:
            message = str(exc)
        except DBAPIError as exc:  # the driver's own words, without SQLAlchemy's wrapping
            message = f"the database refused: {exc.orig or exc}".splitlines()[0]
        except (ArgumentError, InvalidRequestError) as exc:  # e.g. sqlite:// without +aiosqlite
            message = (
                f"FAKESCOPE_DATABASE_URL is not usable: {exc} "
                "(use sqlite+aiosqlite:///PATH or postgresql+asyncpg://...)"
            )
        except OSError as exc:
            message = f"cannot reach the database: {exc}"
        print(f"fakescope: error: {message}", file=sys.stderr)
        return 2

    return run
