"""Who may use the review, under /v1/admin: API tokens and review page sessions; admins only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIType
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.auth import admin_guard, current_principal
from server.admin.context import database, provide_admin_session
from server.admin.input_checks import checked_text, row_id
from server.admin.page_session import session_lifetime
from server.admin.roles import Role
from server.admin.session_store import end_session_by_id, live_sessions
from server.admin.token_store import (
    MAX_NAME_CHARS,
    TokenNotFoundError,
    create_token,
    list_tokens,
    revoke_token,
    token_to_dict,
)
from server.openapi_docs.operations import AdminOperation
from server.openapi_docs.responses import ADMIN_PROBLEMS, BODY_PROBLEMS, problem_responses
from server.problems import ProblemError
from server.requests import ECHO_CHARS, JSON_BODY_LIMIT

# A path's row id is read as text and checked by row_id(): Litestar's {id:int} reads it with
# int(), which also takes "+1", " 1", "1_000" and "\u0661" (and so revoked some other token).
# Documented as the integer it is.
ROW_ID_PARAMETER = PathParameter(
    description="The row id, in ASCII digits", schema_extra={"type": OpenAPIType.INTEGER}
)


def _path_row_id(text: str, missing: str) -> int:
    """The id a path names; a 404 (`missing` and the text) when no row can have it."""
    number = row_id(text)
    if not number:
        raise ProblemError(404, f"{missing} {text[:ECHO_CHARS]!r}", code="not-found")
    return number


@dataclass
class TokenRequest:
    role: Literal["admin", "reviewer", "client"]
    name: str | None = None


class AdminOnlyController(Controller):
    """Token and review page session management: admins only."""

    path = "/v1/admin"
    guards = [admin_guard]
    dependencies = {"admin_db": Provide(provide_admin_session)}
    tags = ["admin"]

    @get(
        "/sessions",
        summary="Review page sessions still open (never their secrets)",
        operation_class=AdminOperation,
        responses=problem_responses({}, ADMIN_PROBLEMS),
    )
    async def sessions(
        self, request: Request[Any, Any, Any], admin_db: NamedDependency[AsyncSession]
    ) -> dict[str, Any]:
        return {"sessions": await live_sessions(admin_db, session_lifetime(request))}

    @delete(
        "/sessions/{session_id:str}",
        status_code=200,
        summary="Sign one review page session out (e.g. a lost laptop); audited",
        operation_class=AdminOperation,
        responses=problem_responses(
            {404: "No open session with this id (`not-found`)"}, ADMIN_PROBLEMS
        ),
    )
    async def end_session(
        self, request: Request[Any, Any, Any], session_id: Annotated[str, ROW_ID_PARAMETER]
    ) -> dict[str, Any]:
        actor = current_principal(request).actor
        number = _path_row_id(session_id, "no open session with id")
        async with database(request.app).write() as session:
            ended = await end_session_by_id(session, number, actor=actor)
        if not ended:
            raise ProblemError(404, f"no open session with id {number}", code="not-found")
        return {"id": number, "ended": True}

    @get(
        "/tokens",
        summary="API tokens (never their secrets)",
        operation_class=AdminOperation,
        responses=problem_responses({}, ADMIN_PROBLEMS),
    )
    async def tokens(self, admin_db: NamedDependency[AsyncSession]) -> dict[str, Any]:
        return {"tokens": [token_to_dict(row) for row in await list_tokens(admin_db)]}

    @post(
        "/tokens",
        status_code=201,
        summary="Create a token; its secret is returned once",
        operation_class=AdminOperation,
        request_max_body_size=JSON_BODY_LIMIT,
        responses=problem_responses(
            {
                400: "Malformed JSON (`malformed-json`)",
                408: BODY_PROBLEMS[408],
                413: BODY_PROBLEMS[413],
                415: BODY_PROBLEMS[415],
                422: "An invalid body (`errors` lists the fields) or name",
            },
            ADMIN_PROBLEMS,
        ),
    )
    async def create(
        self, request: Request[Any, Any, Any], data: JSONBody[TokenRequest]
    ) -> dict[str, Any]:
        name = checked_text("name", data.name, MAX_NAME_CHARS)
        actor = current_principal(request).actor
        async with database(request.app).write() as session:
            created = await create_token(session, role=Role(data.role), name=name, actor=actor)
        return {
            "id": created.id,
            "name": created.name,
            "role": created.role.value,
            "prefix": created.prefix,
            "token": created.secret,
        }

    @delete(
        "/tokens/{token_id:str}",
        status_code=200,
        summary="Revoke a token",
        operation_class=AdminOperation,
        responses=problem_responses({404: "No token with this id (`not-found`)"}, ADMIN_PROBLEMS),
    )
    async def revoke(
        self, request: Request[Any, Any, Any], token_id: Annotated[str, ROW_ID_PARAMETER]
    ) -> dict[str, Any]:
        actor = current_principal(request).actor
        number = _path_row_id(token_id, "no token with id")
        try:
            async with database(request.app).write() as session:
                row = await revoke_token(session, number, actor=actor)
                return token_to_dict(row)
        except TokenNotFoundError as exc:
            raise ProblemError(404, str(exc), code="not-found") from exc
