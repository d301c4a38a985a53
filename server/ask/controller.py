"""POST /v1/ask: JSON answer, or Server-Sent Events with `Accept: text/event-stream`."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.response import Stream

from server.analyze.service import answered_when_cancelled
from server.ask.questions import parse_question
from server.ask.service import AskService
from server.openapi_docs.operations import AskOperation
from server.openapi_docs.responses import BODY_PROBLEMS, Answer, responses, success
from server.requests import JSON_BODY_LIMIT, json_object


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
        summary="Ask about an analysed image: one aspect, enhancement tips, or a free question",
        description=(
            'Body: {"sha256": ..., and exactly one of "aspect": "texture" (one of the 14 '
            'FakeQA aspects), "enhance": true, "question": "..."}. Answers are cached per '
            "image, model and prompt version (`X-Cache`). With `Accept: text/event-stream` the "
            "answer streams as SSE: `token` events with {text}, then one `done` event with "
            "the full answer object."
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
