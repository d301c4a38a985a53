"""Operations completed with what Litestar cannot see: bodies, headers, problem answers.

A handler names one of these as its `operation_class` (see the package docstring).
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import ClassVar

from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityRequirement,
)

from server.openapi_docs.bodies import ANALYZE_BODY, ASK_BODY, HEX64, LOOKUP_BODY, REPORT_BODY
from server.problems import PROBLEM_MEDIA_TYPE

RETRY_AFTER = OpenAPIHeader(
    description="Seconds to wait before trying again (on 429 always; on 503 when the "
    "condition is temporary: queue full, model loading, no GPU worker, timeout)",
    schema=Schema(type=OpenAPIType.INTEGER, minimum=0),
)
X_CACHE = OpenAPIHeader(
    description="`hit` when the answer came from the cache, `miss` when it was computed now",
    schema=Schema(type=OpenAPIType.STRING, enum=["hit", "miss"]),
)
EVENT_STREAM = OpenAPIMediaType(
    schema=Schema(
        type=OpenAPIType.STRING,
        description="Server-Sent Events, when the request says `Accept: text/event-stream`: "
        '`token` events with data {"text": ...} (pieces of the answer), then one `done` event '
        "whose data is the answer object (as the JSON response). A generation failing after "
        "the stream began sends an `error` event instead of `done`: the problem object "
        '({"type", "title", "status", "detail"}) with its "code", and "retry_after" (seconds) '
        "for a 503, among them `shutting-down` when the server stops before the answer ends.",
    ),
)


@dataclass
class DocumentedOperation(Operation):
    """An operation completed with what Litestar cannot see (see the package docstring)."""

    body: ClassVar[RequestBody | None] = None
    cached: ClassVar[bool] = False  # success answers carry X-Cache
    streams: ClassVar[bool] = False  # the success answer may be an event stream
    # Public routes take a token only when the server requires client tokens.
    auth: ClassVar[list[SecurityRequirement]] = [{}, {"bearer": []}]

    def __post_init__(self) -> None:
        if self.request_body is None and self.body is not None:
            self.request_body = deepcopy(self.body)
        if self.security is None:
            self.security = deepcopy(self.auth)
        for parameter in self.parameters or []:
            if (
                isinstance(parameter, Parameter)
                and parameter.name == "sha256"
                and isinstance(parameter.schema, Schema)
                and parameter.schema.pattern is None
            ):
                # Checked by hand (a 422 problem), so not declared to Litestar's validation.
                parameter.schema.pattern = HEX64
                parameter.description = parameter.description or "SHA-256, 64 hex digits"
        documented = dict(self.responses or {})
        for code, response in list(documented.items()):
            if isinstance(response, Reference):
                continue
            content = response.content or {}
            for media in content.values():
                # `_described` makes Litestar wrap the component's $ref in an allOf; unwrap it.
                wrapper = media.schema
                if isinstance(wrapper, Schema) and wrapper.type is None and not wrapper.properties:
                    parts = list(wrapper.all_of or ())
                    if len(parts) == 1 and isinstance(parts[0], Reference):
                        media.schema = parts[0]
            if code.startswith(("4", "5")) and PROBLEM_MEDIA_TYPE not in content:
                # Litestar's own ValidationException shape; validation errors are 422 problems.
                del documented[code]
            elif code in ("429", "503"):
                response.headers = {**(response.headers or {}), "Retry-After": RETRY_AFTER}
            elif code.startswith("2"):
                if self.cached:
                    response.headers = {**(response.headers or {}), "X-Cache": X_CACHE}
                if self.streams:
                    response.content = {**content, "text/event-stream": EVENT_STREAM}
        problem = OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))
        documented["default"] = OpenAPIResponse(
            description="Any other error, as a problem", content={PROBLEM_MEDIA_TYPE: problem}
        )
        self.responses = documented


class AnalyzeOperation(DocumentedOperation):
    body = ANALYZE_BODY
    cached = True


class CachedOperation(DocumentedOperation):
    cached = True


class LookupOperation(DocumentedOperation):
    body = LOOKUP_BODY
    cached = True


class AskOperation(DocumentedOperation):
    body = ASK_BODY
    cached = True
    streams = True


class ReportOperation(DocumentedOperation):
    body = REPORT_BODY


class AdminOperation(DocumentedOperation):
    """The review API: Litestar documents its `data` bodies; a token is always needed."""

    auth = [{"bearer": []}]
