"""POST /v1/ask: JSON answer, or Server-Sent Events with `Accept: text/event-stream`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.response import Stream
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from server.analyze.service import SERVER_SHUTDOWN_CANCEL, answered_when_cancelled
from server.ask.questions import parse_question
from server.ask.service import AskService, shutting_down_event
from server.openapi_docs.operations import AskOperation
from server.openapi_docs.responses import BODY_PROBLEMS, Answer, responses, success
from server.requests import JSON_BODY_LIMIT, json_object

log = logging.getLogger("fakescope.server")
LAST_EVENT_SEND_S = 1.0  # a client that stopped reading does not hold the shutdown up


def ended_at_shutdown(app: ASGIApp) -> ASGIApp:
    """Route middleware: an event stream the server cancels at shutdown ends with an
    `error` event (503 `shutting-down`, with `retry_after`), properly.

    uvicorn cancels the requests still running when its graceful shutdown times out (10 s
    under `fakescope serve`); a stream already sending was cut mid-body (neither `done`
    nor `error`: the client read a broken chunked body) and logged a traceback. Only that
    cancellation is answered (told by its message, as `answered_when_cancelled` does):
    any other (a client that left, a timeout) propagates as before. Before the response
    starts, the handler's own `answered_when_cancelled` answers a 503 problem instead.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        streaming = ended = False

        async def watched(message: Message) -> None:
            nonlocal streaming, ended
            if message["type"] == "http.response.start":
                streaming = any(
                    name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in message.get("headers", ())
                )
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                ended = True

        try:
            await app(scope, receive, watched)
        except asyncio.CancelledError as exc:
            if not (streaming and exc.args and exc.args[0] == SERVER_SHUTDOWN_CANCEL):
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()  # answered: the request's task ends normally
            if ended:
                return
            log.info("a streamed answer was cut short by the server's shutdown")
            last = shutting_down_event().encode()
            # Events are sent whole (one body message each): this one follows a complete one.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LAST_EVENT_SEND_S):
                    await send({"type": "http.response.body", "body": last, "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    return middleware


def wants_event_stream(accept: str) -> bool:
    """Whether the Accept header names text/event-stream with a quality above zero."""
    for item in accept.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        if kind.lower() != "text/event-stream":
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


class AskController(Controller):
    path = "/v1"
    tags = ["questions"]

    @post(
        "/ask",
        status_code=200,
        request_max_body_size=JSON_BODY_LIMIT,
        middleware=[ended_at_shutdown],
        summary="Ask about an analysed image: one aspect, enhancement tips, or a free question",
        description=(
            'Body: {"sha256": ..., and exactly one of "aspect": "texture" (one of the 14 '
            'FakeQA aspects), "enhance": true, "question": "..."}. Answers are cached per '
            "image, model and prompt version (`X-Cache`). With `Accept: text/event-stream` the "
            "answer streams as SSE: `token` events with {text}, then one `done` event with "
            "the full answer object, or one `error` event (a problem object with `code`, and "
            "`retry_after` seconds for a 503; `shutting-down` when the server stops first)."
        ),
        operation_class=AskOperation,
        responses=responses(
            200,
            success(Answer, "The answer (`X-Cache: hit` when it was asked before), or its stream"),
            {
                **BODY_PROBLEMS,
                404: "The image has not been analysed",
                409: "No model is configured (`provenance-only`), or the image's bytes are no "
                "longer kept (`image-not-stored`: analyse it again)",
                422: 'Invalid request: not exactly one of "aspect", "question", "enhance"; an '
                "unknown aspect (`unknown-aspect`); an empty or too long question, or one "
                "holding NUL characters",
                503: "Busy: the queue is full (`overloaded`), the GPU ran out of memory "
                "(`gpu-out-of-memory`), the model is loading (`loading`) or failed "
                "(`model-failed`), no GPU worker runs (`no-workers`), the answer timed out "
                "(`timeout`), or the server is stopping (`shutting-down`)",
            },
        ),
    )
    async def ask(self, request: Request[Any, Any, Any]) -> Response[Any]:
        question = parse_question(await json_object(request))
        service: AskService = request.app.state.ask_service
        if wants_event_stream(request.headers.get("accept", "")):
            with answered_when_cancelled():
                events, hit = await service.start_stream(question)
            return Stream(
                events,
                media_type="text/event-stream",
                headers={"X-Cache": "hit" if hit else "miss", "Cache-Control": "no-cache"},
            )
        with answered_when_cancelled():
            payload, hit = await service.answer(question)
        return Response(payload, headers={"X-Cache": "hit" if hit else "miss"})
