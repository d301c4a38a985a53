"""RFC 9457 problem+json responses for every error the API returns."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, cast

from litestar import Request, Response
from litestar.config.cors import CORSConfig
from litestar.constants import DEFAULT_ALLOWED_CORS_HEADERS
from litestar.datastructures import Headers
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from fakescope.errors import (
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    UndecodableImageError,
    UnsupportedFormatError,
)
from server.db.database import is_transient

PROBLEM_MEDIA_TYPE = "application/problem+json"
# A URN names each kind of problem without pointing at a web page that does not exist.
PROBLEM_TYPE_BASE = "urn:fakescope:problem:"
RETRY_AFTER_DATABASE_S = 2
RETRY_AFTER_UNAVAILABLE_S = 5
log = logging.getLogger("fakescope.server")

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class ProblemError(HTTPException):
    """An error the API reports on purpose, with a stable `code` (the problem type's last part)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.code = code or TITLES.get(status, "error").lower().replace(" ", "-")
        self.extra_fields = extra or {}


def service_unavailable(detail: str, retry_after_s: int, code: str = "overloaded") -> ProblemError:
    return ProblemError(503, detail, code=code, headers={"Retry-After": str(retry_after_s)})


def image_problem(exc: ImageError) -> ProblemError:
    """Map the core's image errors to HTTP: too large 413, unsupported 415, the rest 400."""
    if isinstance(exc, ImageTooLargeError):
        return ProblemError(413, str(exc) or "image too large", code="image-too-large")
    if isinstance(exc, UnsupportedFormatError):
        return ProblemError(415, str(exc) or "unsupported image format", code="unsupported-image")
    if isinstance(exc, EmptyImageError):
        return ProblemError(400, str(exc) or "empty image", code="empty-image")
    if isinstance(exc, UndecodableImageError):
        return ProblemError(400, str(exc) or "image cannot be decoded", code="undecodable-image")
    return ProblemError(400, str(exc) or "not a usable image", code="bad-image")


def problem_body(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    title = TITLES.get(status, "Error")
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (code or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail or title,
    }
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    body = problem_body(status, detail, code=code, instance=instance, extra=extra)
    return Response(
        content=body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _validation_detail(exc: ValidationException) -> tuple[str, dict[str, Any]]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    if errors:
        parts = [
            f"{e.get('key') or e.get('source') or 'body'}: {e.get('message')}"
            for e in errors
            if isinstance(e, dict)
        ]
        return "; ".join(parts) or exc.detail, {"errors": errors}
    return exc.detail or "invalid request", {}


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status == 503 and not any(name.lower() == "retry-after" for name in headers):
        # Every 503 says when to come back (the API's contract), also those raised without.
        headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE_S)
    if isinstance(exc, ProblemError):
        return problem_response(
            status,
            exc.detail,
            code=exc.code,
            headers=headers,
            instance=request.url.path,
            extra=exc.extra_fields,
        )
    if isinstance(exc, ValidationException):
        detail, extra = _validation_detail(exc)
        # Litestar reports unparseable bodies as 400 validation errors; the request is invalid.
        return problem_response(
            422, detail, headers=headers, instance=request.url.path, extra=extra
        )
    detail = exc.detail
    if status == 429:
        detail = _rate_limited(headers, detail)
    elif detail == _DEFAULT_DETAILS.get(status):
        detail = _plain_detail(request, status)
    return problem_response(status, detail, headers=headers, instance=request.url.path)


# Litestar's own refusals carry the status phrase as their detail, which says nothing more
# than the title; these say what was refused and why.
_DEFAULT_DETAILS = {404: "Not Found", 405: "Method Not Allowed", 413: "Request Entity Too Large"}


def _plain_detail(request: Request[Any, Any, Any], status: int) -> str:
    where = f"{request.method} {request.url.path}"
    if status == 404:
        return f"no endpoint answers {where} (the API is described at /schema)"
    if status == 405:
        return f"{where}: this path does not take {request.method}"
    limit = None
    with contextlib.suppress(Exception):  # raised before routing: no handler to ask
        limit = request.route_handler.resolve_request_max_body_size()
    if limit:
        return f"the request body is over this endpoint's limit of {limit} bytes"
    return "the request body is too large"


def _rate_limited(headers: dict[str, str], detail: str) -> str:
    """Litestar's in-memory rate limit says when the window resets only in RateLimit-Reset:
    add the standard Retry-After (the shared limiter sets it already) and say it in words."""
    names = {name.lower(): name for name in headers}
    reset = headers.get(names.get("ratelimit-reset", ""), "")
    if "retry-after" not in names and reset.isdigit():
        headers["Retry-After"] = reset
    retry = headers.get(names.get("retry-after", "Retry-After"), reset)
    if detail and detail.lower() != "too many requests":
        return detail
    return "rate limit exceeded for this client" + (f"; retry in {retry} s" if retry else "")


def handle_image_error(request: Request[Any, Any, Any], exc: ImageError) -> Response[Any]:
    return handle_http_exception(request, image_problem(exc))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal error; it has been logged",
        code="internal-error",
        instance=request.url.path,
    )


def handle_database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    """A dropped or refused database connection is a passing outage (503), not a bug (500).

    Everything the request wrote was in a transaction that did not commit, so the client may
    simply try again.
    """
    if not is_transient(exc):
        return handle_unexpected(request, exc)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        503,
        "the database could not be reached; try again shortly",
        code="database-unavailable",
        headers={"Retry-After": str(RETRY_AFTER_DATABASE_S)},
        instance=request.url.path,
    )


def handle_pool_timeout(request: Request[Any, Any, Any], exc: PoolTimeoutError) -> Response[Any]:
    """Every pooled connection stayed in use for FAKESCOPE_DB_POOL_TIMEOUT_S: this process has
    more database work in flight than its pool holds. Nothing was written; a 503 the client
    may retry, not a 500 (the process is busy, not broken)."""
    log.warning(
        "database busy on %s %s: no free connection in the pool: %s",
        request.method,
        request.url.path,
        exc,
    )
    return problem_response(
        503,
        "every database connection of this server process stayed in use; try again shortly",
        code="database-busy",
        headers={"Retry-After": str(RETRY_AFTER_DATABASE_S)},
        instance=request.url.path,
    )


def cors_refusals(config: CORSConfig, headers: Headers) -> dict[str, str]:
    """What of a preflight the CORS policy refuses, each with a sentence: `origin`,
    `method`, `headers` (the parts Litestar's CORS middleware checks)."""
    refused: dict[str, str] = {}
    origin = headers.get("origin", "")
    if not config.is_origin_allowed(origin):
        refused["origin"] = f"the origin {origin[:200]!r} is not one of FAKESCOPE_CORS_ORIGINS"
    method = headers.get("access-control-request-method")
    if method and not config.is_allow_all_methods and method not in config.allow_methods:
        allowed = ", ".join(sorted(config.allow_methods))
        refused["method"] = f"the method {method[:50]!r} is not allowed (allowed: {allowed})"
    requested = headers.get("access-control-request-headers", "")
    if not config.is_allow_all_headers:
        allowed_headers = set(config.allow_headers) | {
            name.lower() for name in DEFAULT_ALLOWED_CORS_HEADERS
        }
        unknown = [
            name.strip()
            for name in requested.split(",")
            if name.strip() and name.strip().lower() not in allowed_headers
        ]
        if unknown:
            refused["headers"] = (
                f"the request headers {', '.join(unknown)[:300]} are not allowed "
                f"(allowed: {', '.join(sorted(allowed_headers))})"
            )
    return refused


class CorsRefusalProblems:
    """Litestar's CORS middleware, wrapped: a preflight it refuses is answered as a problem.

    The middleware answers every OPTIONS request that has an Origin itself: 204 with the
    CORS headers, or a bare 400 text/plain ("Disallowed CORS Origin") when the policy
    refuses it. Litestar still decides; this only rewrites that 400 as problem+json
    (`cors-preflight-refused`) whose detail names what was refused. The status stays 400:
    a browser fails any preflight that is not 2xx alike, and a 403 would suggest that a
    token could help, while no credential makes a refused origin allowed.
    """

    def __init__(self, app: ASGIApp, config: CORSConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or cast("HTTPScope", scope)["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers = Headers.from_scope(scope)
        if "origin" not in headers:
            await self.app(scope, receive, send)
            return
        refusal: list[dict[str, Any]] = []  # Litestar's 400, held back

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400:
                refusal.append(dict(message))
            elif not refusal:
                await send(message)
            elif message["type"] == "http.response.body":
                refusal.append(dict(message))
                if not message.get("more_body", False):
                    await self._send_problem(scope, headers, refusal, send)

        await self.app(scope, receive, answer)

    async def _send_problem(
        self, scope: Scope, headers: Headers, refusal: list[dict[str, Any]], send: Send
    ) -> None:
        refused = cors_refusals(self.config, headers)
        said = b"".join(message.get("body", b"") for message in refusal[1:]).decode(
            errors="replace"
        )
        detail = "CORS preflight refused: " + (
            "; ".join(refused.values()) or f"{said} (the server's CORS policy)"
        )
        body = problem_body(
            400,
            detail,
            code="cors-preflight-refused",
            instance=scope["path"],
            extra={"refused": list(refused)},
        )
        kept = [
            (name, value)
            for name, value in refusal[0].get("headers", [])
            if name.lower() not in (b"content-type", b"content-length")
        ]
        await send_problem(send, body, kept)


async def send_problem(
    send: Send, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with problem `body` straight over ASGI, for wrappers that answer before (or
    instead of) the app; `headers` go first (content type and length are this function's)."""
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": body["status"],
            "headers": [
                *(headers or []),
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(content)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content, "more_body": False})


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    HTTPException: handle_http_exception,
    ImageError: handle_image_error,
    DBAPIError: handle_database_error,
    PoolTimeoutError: handle_pool_timeout,
    Exception: handle_unexpected,
}
