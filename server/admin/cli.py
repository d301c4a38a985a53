"""`fakescope admin ...`: create, revoke and list API tokens.

``add_commands(subparsers)`` adds the ``admin`` group to the top-level ``fakescope``
sub-parsers (``server/cli.py`` calls it). Database and web imports happen inside the
handlers so that ``fakescope --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

from server.cli_errors import reporting_user_errors

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

ROLES = ("admin", "reviewer", "client")


def _cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli ({user})"


async def _with_session(work: Any) -> Any:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from server.db.engine import create_engine
    from server.db.migrate import ensure_migrated
    from server.settings import Settings

    engine = create_engine(Settings.from_env().database_url)
    try:
        await ensure_migrated(engine)
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            return await work(session)
    finally:
        await engine.dispose()


def _run(work: Any) -> Any:
    from server.db.migrate import DatabaseNotMigratedError

    try:
        return asyncio.run(_with_session(work))
    except DatabaseNotMigratedError as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _name_problem(name: str | None) -> str | None:
    """Why the API would refuse this token name (422), or None."""
    from server.admin.input_checks import CONTROL_CHARS_RE
    from server.admin.token_store import MAX_NAME_CHARS

    if name is None:
        return None
    if len(name) > MAX_NAME_CHARS:
        return f"--name is longer than {MAX_NAME_CHARS} characters"
    if CONTROL_CHARS_RE.search(name):
        return "--name must not contain control characters (other than tab and newline)"
    return None


def _cmd_create(args: argparse.Namespace) -> int:
    from server.admin.roles import Role
    from server.admin.token_store import create_token

    problem = _name_problem(args.name)
    if problem is not None:
        print(f"fakescope: error: {problem}", file=sys.stderr)
        return 2

    async def work(session: AsyncSession) -> str:
        created = await create_token(
            session, role=Role(args.role), name=args.name, actor=_cli_actor()
        )
        await session.commit()
        print(
            f"created {created.role.value} token #{created.id} '{created.name}' "
            f"({created.prefix}...); it is shown once, store it now",
            file=sys.stderr,
        )
        return created.secret

    secret: str = _run(work)
    print(secret)  # alone on stdout, so `TOKEN=$(fakescope admin create-token ...)` works
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from server.admin.input_checks import row_id
    from server.admin.token_store import TokenNotFoundError, revoke_token
    from server.db.models import ApiToken

    async def work(session: AsyncSession) -> int:
        # An id in ASCII digits, as the API takes it ("\u0661".isdigit(), and int() reads 1).
        token_id = row_id(args.token)
        if token_id is None:
            ids = (
                await session.scalars(select(ApiToken.id).where(ApiToken.prefix == args.token))
            ).all()
            if len(ids) != 1:
                print(
                    f"fakescope: error: no single token with prefix {args.token!r}", file=sys.stderr
                )
                return 1
            token_id = ids[0]
        try:
            row = await revoke_token(session, token_id, actor=_cli_actor())
        except TokenNotFoundError as exc:
            print(f"fakescope: error: {exc}", file=sys.stderr)
            return 1
        await session.commit()
        print(f"revoked token #{row.id} '{row.name}' ({row.role}, {row.prefix}...)")
        return 0

    result: int = _run(work)
    return result


def _cmd_list(args: argparse.Namespace) -> int:
    from server.admin.token_store import list_tokens, token_to_dict

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        rows = await list_tokens(session, include_revoked=args.all)
        return [token_to_dict(row) for row in rows]

    tokens: list[dict[str, Any]] = _run(work)
    if args.json:
        for token in tokens:
            print(json.dumps(token))
        return 0
    print(f"{'id':>4}  {'role':<8}  {'prefix':<12}  {'status':<8}  {'last used':<20}  name")
    for t in tokens:
        status = "revoked" if t["revoked_at"] else "active"
        last = (t["last_used_at"] or "never")[:19]
        print(
            f"{t['id']:>4}  {t['role']:<8}  {t['prefix']:<12}  {status:<8}  {last:<20}  {t['name']}"
        )
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``admin create-token | revoke-token | list-tokens`` to the ``fakescope`` command."""
    admin = subparsers.add_parser("admin", help="API tokens for reviewers, admins and clients")
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")

    create = commands.add_parser(
        "create-token", help="create a token and print it (alone) on stdout"
    )
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", help="who or what holds it (shown in listings and the audit log)")
    create.set_defaults(handler=reporting_user_errors(_cmd_create))

    revoke = commands.add_parser("revoke-token", aliases=["revoke"], help="revoke a token")
    revoke.add_argument("token", metavar="ID_OR_PREFIX", help="token id or its prefix (fs_...)")
    revoke.set_defaults(handler=reporting_user_errors(_cmd_revoke))

    listing = commands.add_parser("list-tokens", aliases=["list"], help="list tokens")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=reporting_user_errors(_cmd_list))
