"""Small helpers shared by controllers: reading JSON bodies and validating keys, and the
app's request class, which reads every body the same way."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.exceptions import InternalServerException, SerializationException

from server.problems import ProblemError

SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
# A high surrogate escape not followed by its low half.
LONE_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])")
# How much of a refused value a problem's detail repeats.
ECHO_CHARS = 40
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})
# The body limit of the small JSON requests (a question, a report): room for long text, no more.
JSON_BODY_LIMIT = 64 * 1024
# The body deadline when the app has no settings (FAKESCOPE_REQUEST_TIMEOUT_S's default).
BODY_TIMEOUT_S = 120.0
# What Litestar's Request.stream() raises (as a 500) when the client leaves mid-body.
LITESTAR_DISCONNECT_DETAIL = "client disconnected prematurely"


def media_type(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    """application/json or a structured +json type (RFC 6839)."""
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def malformed_json(exc: BaseException | None, raw: bytes) -> ProblemError:
    """The 400 `malformed-json` problem for a body msgspec could not decode, saying why."""
    if not raw:
        detail = "the body is empty"
    elif isinstance(exc, UnicodeDecodeError):
        detail = "not UTF-8"
    elif isinstance(exc, RecursionError):
        detail = "nested too deeply"
    else:
        detail = str(exc)
        if detail.startswith("Input data was truncated") and LONE_HIGH_SURROGATE.search(raw):
            # msgspec's words for a string ending in half a surrogate pair, e.g. text cut
            # in the middle of an emoji ("\ud83d"): the body is complete, the text is not.
            detail = "a \\u escape is half a UTF-16 surrogate pair (text cut inside a character?)"
    return ProblemError(400, f"malformed JSON: {detail}", code="malformed-json")


class ApiRequest(Request[Any, Any, Any]):
    """The app's request class (``Litestar(request_class=...)``).

    Bodies the handlers declare (``JSONBody[...]``, the admin API) decode as the public
    endpoints' bodies do (``json_object``): a body that is not sent as JSON is a 415 (Litestar
    read any content type as JSON); what msgspec cannot read (not UTF-8, nested too deeply,
    malformed) is a 400 ``malformed-json`` problem; Litestar's own decoding let the first
    two through as 500s. A body sent with a content coding is refused (415) before
    it is read: nothing here undoes one, and read as it came it was called malformed JSON
    or a multipart body without its file. A client that leaves before its body is complete
    made a bad request (400), not a server error: Litestar counted it as a 500. A body that
    is not complete within FAKESCOPE_REQUEST_TIMEOUT_S of its first read (a stalled or
    trickling client) is a 408 ``body-timeout``: uvicorn waits for a body without end.
    """

    async def json(self) -> Any:
        require_json(self)
        try:
            return await super().json()
        except (SerializationException, UnicodeDecodeError, RecursionError) as exc:
            raise malformed_json(exc.__cause__ or exc, await self.body()) from exc

    async def stream(self) -> AsyncGenerator[bytes, None]:
        coding = self.headers.get("content-encoding", "").strip().lower()
        if coding not in ("", "identity"):
            raise ProblemError(
                415,
                f"Content-Encoding {coding[:ECHO_CHARS]} is not accepted; "
                "send the body uncompressed",
                code="unsupported-content-encoding",
            )
        settings = self.app.state.get("settings")
        timeout_s = getattr(settings, "request_timeout_s", BODY_TIMEOUT_S)
        deadline = asyncio.get_running_loop().time() + timeout_s
        chunks = super().stream()
        try:
            while True:
                # Only the wait for the client is bounded, never the consumer's work between
                # chunks (a timeout spanning a yield would cancel whatever awaits there).
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    raise ProblemError(
                        408,
                        f"the request body did not arrive within {timeout_s:g} s",
                        code="body-timeout",
                        headers={"Connection": "close"},
                    ) from exc
                yield chunk
        except InternalServerException as exc:
            if exc.detail != LITESTAR_DISCONNECT_DETAIL:
                raise
            raise ProblemError(
                400,
                "the client closed the connection before the request body was complete",
                code="incomplete-body",
            ) from exc
        finally:
            await chunks.aclose()


async def check_declared_json_body(request: Request[Any, Any, Any]) -> None:
    """The app's ``before_request`` hook: an empty body for a handler that declares a JSON
    body (``JSONBody[...]``, the admin API) is refused as ``json_object`` refuses it on the
    public endpoints: 415 when not sent as JSON, else 400 ``malformed-json``.

    Litestar does not read an empty body as JSON at all: it passed it to the handler as a
    missing ``data``, a 422 naming ``data``. A body that is not empty is left to
    ``ApiRequest.json()`` (the body is read once: Litestar keeps it for the handler).
    """
    field = request.route_handler.parsed_data_field
    if field is None:
        return
    # No Body(media_type=...) at all: Litestar reads the body as JSON.
    if getattr(field.kwarg_definition, "media_type", RequestEncodingType.JSON) != (
        RequestEncodingType.JSON
    ):
        return
    if await request.body():
        return
    require_json(request)
    raise malformed_json(None, b"")


def require_json(request: Request[Any, Any, Any]) -> None:
    """415 unless the body is sent as JSON (its Content-Type)."""
    kind = media_type(request)
    if not is_json(kind):
        shown = kind[:ECHO_CHARS] or "no content type"
        raise ProblemError(415, f"expected application/json, got {shown}")


async def json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The request body as a JSON object; 415 when it is not JSON, 400 when it is malformed."""
    require_json(request)
    raw = await request.body()
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise malformed_json(exc, raw) from exc
    if not isinstance(body, dict):
        raise ProblemError(422, "the JSON body must be an object")
    return body


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    shown = repr(value)
    if len(shown) > ECHO_CHARS:
        shown = shown[:ECHO_CHARS] + "..."
    raise ProblemError(422, f"{name} must be true or false, got {shown}")


def sha256_key(value: Any, name: str = "sha256") -> str:
    if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
        raise ProblemError(422, f"{name} must be 64 hexadecimal characters")
    return value.lower()


def optional_text(body: dict[str, Any], name: str, max_chars: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProblemError(422, f"{name} must be a string")
    reject_nul(value, name)
    if len(value) > max_chars:
        raise ProblemError(422, f"{name} is longer than {max_chars} characters")
    return value.strip() or None


def reject_nul(value: str, name: str) -> None:
    """422 for text holding NUL characters (PostgreSQL cannot store them in text columns)."""
    if "\x00" in value:
        raise ProblemError(422, f"{name} must not contain NUL characters")
