"""What the generated OpenAPI schema cannot infer: hand-parsed bodies and problem answers.

The public endpoints read their bodies by hand (`server.requests.json_object`,
`request.form()`) so that every refusal is a clear problem+json answer; Litestar therefore
sees no `data` parameter and documents neither the request body nor those errors. This
module describes them once:

- the response shapes (`Problem`, `Analysis`, ...) as msgspec structs, handed to Litestar as
  `ResponseSpec` data containers so that its schema registry turns them into
  `components/schemas` (components given to `OpenAPIConfig` lose their `schemas`: Litestar
  replaces that map with its registry's);
- the request bodies and the `Retry-After` / `X-Cache` headers, filled in by `Operation`
  subclasses (a handler's `operation_class`), which also drop Litestar's default 400
  validation response: the server answers validation errors with a 422 problem.

Nothing here runs on a request; it only shapes `/schema/openapi.json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass
from inspect import cleandoc
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
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
    SecurityScheme,
)
from litestar.params import Body

from fakescope.prompts import ASPECTS, MAX_QUESTION_CHARS
from server.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE

# Mirrors of the controllers' limits (importing them here would cycle; a test checks them).
MAX_LOOKUP_KEYS = 500  # server.lookup.controller.MAX_KEYS
MAX_REPORT_TEXT = 2000  # server.reports.controller.MAX_TEXT
HEX64 = "^[0-9a-fA-F]{64}$"
LOWER_HEX64 = "^[0-9a-f]{64}$"
BOOL_WORDS = "true or false (also the strings true/false, 1/0, yes/no, on/off, any case)"


def _meta(description: str, *, fmt: str | None = None, **kwargs: Any) -> msgspec.Meta:
    """msgspec field metadata; Litestar reads `extra` of `extra_json_schema` as schema keys."""
    extra = {"extra": {"format": fmt}} if fmt else None
    return msgspec.Meta(description=description, extra_json_schema=extra, **kwargs)


# -- response shapes ---------------------------------------------------------------------


class Problem(msgspec.Struct):
    """An RFC 9457 problem: every error answer (application/problem+json).

    `type` is a URN whose last part is a stable machine code (for example
    `urn:fakescope:problem:overloaded`). Some problems add members: `errors` (the field
    errors of a request Litestar validated), `latest_decision` (a decision conflict).
    """

    type: Annotated[
        str,
        _meta(
            "The problem's kind: `urn:fakescope:problem:<code>`",
            examples=[PROBLEM_TYPE_BASE + "unsupported-media-type"],
        ),
    ]
    title: Annotated[str, _meta("The HTTP status in words", examples=["Unsupported media type"])]
    status: Annotated[int, _meta("The HTTP status code", ge=400, le=599, examples=[415])]
    detail: Annotated[
        str,
        _meta(
            "What went wrong with this request, for people",
            examples=["expected application/json, got text/plain"],
        ),
    ]
    instance: Annotated[
        str | msgspec.UnsetType, _meta("The request path", examples=["/v1/lookup"])
    ] = msgspec.UNSET
    errors: Annotated[
        list[dict[str, Any]] | msgspec.UnsetType,
        _meta("Field errors of a request body or parameter that failed validation"),
    ] = msgspec.UNSET
    latest_decision: Annotated[
        dict[str, Any] | msgspec.UnsetType | None,
        _meta("The latest review decision, on a 409 decision-conflict (admin API)"),
    ] = msgspec.UNSET


class ModelFacts(msgspec.Struct):
    """The model that made an analysis or answer."""

    id: Annotated[str, _meta("Checkpoint path or hub id")]
    revision: Annotated[str | None, _meta("Hub revision, when known")]
    quantization: Annotated[str, _meta("nf4, int8 or none")]
    untrained: Annotated[bool, _meta("Random weights (test checkpoints): outputs mean nothing")]
    family: Annotated[str, _meta("The architecture family (config.model_type)")]


class EvidenceItem(msgspec.Struct):
    """One finding: provenance (C2PA, EXIF, ...) or the model's."""

    kind: Annotated[str, _meta("A stable machine name of the finding")]
    indicates: Literal["fake", "real", "neutral"]
    strength: Literal["decisive", "strong", "weak", "info"]
    summary: Annotated[str, _meta("One sentence for people")]
    source: Annotated[str, _meta("What produced the finding")]
    details: dict[str, Any]


class ImageFacts(msgspec.Struct):
    """Facts about the decoded image."""

    format: Annotated[str, _meta("Decoded format, e.g. PNG, JPEG, WEBP, HEIF")]
    width: int
    height: int
    bytes: Annotated[int, _meta("Size of the image file")]
    pdq: Annotated[str, _meta("PDQ perceptual hash, 64 hex digits", pattern=LOWER_HEX64)]
    pdq_quality: Annotated[int, _meta("PDQ quality, 0-100")]
    n_frames: Annotated[int, _meta("Frames (animations, multi-image files)")]


class ReviewFacts(msgspec.Struct):
    """The latest human review decision; it overrides the label."""

    label: Literal["fake", "real"]
    note: str | None
    decided_at: Annotated[str, _meta("ISO 8601, UTC", fmt="date-time")]
    reviewer: Annotated[str | None, _meta("The reviewer token's name")]


class Analysis(msgspec.Struct):
    """The verdict on one image, with its evidence and how it was reached."""

    sha256: Annotated[str, _meta("SHA-256 of the image bytes", pattern=LOWER_HEX64)]
    label: Literal["fake", "real", "uncertain"]
    p_fake: Annotated[float | None, _meta("The model's probability of fake; null without one")]
    decided_by: Literal["provenance", "model", "review"]
    mode: Annotated[
        Literal["model", "provenance-only"],
        _meta("provenance-only when the server runs without a model"),
    ]
    evidence: list[EvidenceItem]
    explanation: Annotated[str | None, _meta("The model's explanation, when asked for")]
    model: ModelFacts | None
    untrained: Annotated[bool, _meta("The model's weights are random: the verdict means nothing")]
    image: ImageFacts
    prompt_version: str
    flags: list[str]
    created_at: Annotated[str, _meta("ISO 8601, UTC", fmt="date-time")]
    timings_ms: dict[str, float]
    review: ReviewFacts | None


class NearMatch(msgspec.Struct):
    """A known image whose PDQ hash is near an asked one: a hint, not a verdict."""

    pdq: Annotated[str, _meta("The PDQ hash asked for")]
    sha256: Annotated[str, _meta("The known image", pattern=LOWER_HEX64)]
    distance: Annotated[int, _meta("Hamming distance in bits (0-256)")]


class LookupResult(msgspec.Struct):
    """Cached analyses by SHA-256 (unknown ones are absent) and PDQ near-matches."""

    results: dict[str, Analysis]
    near: list[NearMatch]


class Answer(msgspec.Struct):
    """The model's answer about an analysed image."""

    sha256: str
    kind: Literal["aspect", "question", "enhance"]
    aspect: Annotated[str | None, _meta("The aspect's canonical name, for kind aspect")]
    question: Annotated[str | None, _meta("The normalised question, for kind question")]
    answer: str
    model: ModelFacts | None
    untrained: bool
    prompt_version: str
    created_at: Annotated[str, _meta("ISO 8601, UTC", fmt="date-time")]


class ReportCreated(msgspec.Struct):
    """The stored report; the image's review item is open."""

    id: int
    sha256: str
    review_status: Literal["open"]
    created_at: Annotated[str, _meta("ISO 8601, UTC", fmt="date-time")]


def _described(shape: type[msgspec.Struct]) -> Any:
    """The struct, annotated so that its component schema carries its docstring."""
    return Annotated[shape, Body(description=cleandoc(shape.__doc__ or ""))]


def success(shape: type[msgspec.Struct], description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=_described(shape), description=description, generate_examples=False
    )


def _problem_spec(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=_described(Problem),
        description=description,
        media_type=PROBLEM_MEDIA_TYPE,
        generate_examples=False,
    )


# What every public route may answer besides its own problems.
CLIENT_PROBLEMS: dict[int, str] = {
    401: "No or an unknown API token, when the server requires client tokens "
    "(`Authorization: Bearer <token>`)",
    429: "Rate limited; `Retry-After` says when to try again",
}
ADMIN_PROBLEMS: dict[int, str] = {
    401: "No, a wrong or a revoked token (`Authorization: Bearer <token>`)",
    403: "The token's role may not use this route",
    429: "Rate limited, or too many failed logins from this address; see `Retry-After`",
}
BODY_PROBLEMS: dict[int, str] = {
    400: "Malformed JSON (`malformed-json`)",
    413: "The body is too large",
    415: "The body is not application/json",
}


def problem_responses(
    problems: Mapping[int, str], common: Mapping[int, str] = CLIENT_PROBLEMS
) -> dict[int, ResponseSpec]:
    """Each problem a handler answers, by status, with what it means there."""
    documented = {**common, **problems}
    return {code: _problem_spec(documented[code]) for code in sorted(documented)}


def responses(
    status: int,
    ok: ResponseSpec,
    problems: Mapping[int, str],
    common: Mapping[int, str] = CLIENT_PROBLEMS,
) -> dict[int, ResponseSpec]:
    """A handler's `responses`: its success shape, then its problems."""
    return {status: ok} | problem_responses(problems, common)


# -- headers -------------------------------------------------------------------------------

RETRY_AFTER = OpenAPIHeader(
    description="Seconds to wait before trying again (on 429 always; on 503 when the "
    "condition is temporary: queue full, model loading, no GPU worker, timeout)",
    schema=Schema(type=OpenAPIType.INTEGER, minimum=0),
)
X_CACHE = OpenAPIHeader(
    description="`hit` when the answer came from the cache, `miss` when it was computed now",
    schema=Schema(type=OpenAPIType.STRING, enum=["hit", "miss"]),
)
COMPONENTS = Components(
    security_schemes={
        "bearer": SecurityScheme(
            type="http",
            scheme="bearer",
            description="An API token: a reviewer or admin token for /v1/admin, any token for "
            "the public routes when the server requires client tokens",
        )
    },
)


# -- request bodies ------------------------------------------------------------------------


def _string(description: str, **kwargs: Any) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, **kwargs)


def _flag(description: str) -> Schema:
    return Schema(
        one_of=[Schema(type=OpenAPIType.BOOLEAN), Schema(type=OpenAPIType.STRING)],
        description=f"{description}: {BOOL_WORDS}; default false",
    )


def _json_body(schema: Schema, description: str) -> RequestBody:
    return RequestBody(
        required=True,
        description=description,
        content={"application/json": OpenAPIMediaType(schema=schema)},
    )


SHA256_MEMBER = _string("SHA-256 of the image bytes, 64 hex digits", pattern=HEX64)
EXPLAIN_FLAG = _flag("Also generate the model's explanation (the `explain` query wins)")

ANALYZE_BODY = RequestBody(
    required=True,
    description="The image as a multipart upload, or a URL the server fetches "
    "(public http/https addresses only, size and time capped). Any other content type is "
    "a 415 problem.",
    content={
        "multipart/form-data": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                required=["file"],
                properties={
                    "file": Schema(
                        type=OpenAPIType.STRING,
                        format=OpenAPIFormat.BINARY,
                        content_media_type="application/octet-stream",
                        description="The image, exactly one file part (JPEG, PNG, WebP, GIF, "
                        "HEIF/AVIF, ...); at most the server's upload limit (25 MiB default)",
                    ),
                    "explain": Schema(
                        type=OpenAPIType.STRING,
                        description=f"Also generate the model's explanation: {BOOL_WORDS}; "
                        "one text field at most",
                    ),
                },
            )
        ),
        "application/json": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                required=["url"],
                properties={
                    "url": _string(
                        "The image's http or https URL",
                        format=OpenAPIFormat.URI,
                        examples=["https://..."],
                    ),
                    "explain": EXPLAIN_FLAG,
                },
            )
        ),
    },
)

_KEY_LIST = {
    "sha256": ("SHA-256 hashes of images (exact results)", HEX64),
    "pdq": ("PDQ hashes (near-duplicate hints within the server's distance)", HEX64),
}
LOOKUP_BODY = _json_body(
    Schema(
        type=OpenAPIType.OBJECT,
        description=f"At most {MAX_LOOKUP_KEYS} keys in total (sha256 and pdq together); "
        "more is a 422 `too-many-keys` problem",
        properties={
            name: Schema(
                type=[OpenAPIType.ARRAY, OpenAPIType.NULL],
                items=_string("64 hex digits", pattern=pattern),
                max_items=MAX_LOOKUP_KEYS,
                description=description,
            )
            for name, (description, pattern) in _KEY_LIST.items()
        },
        examples=[{"sha256": ["ab" * 32], "pdq": []}],
    ),
    "The keys to look up; the model never runs",
)

ASK_BODY = _json_body(
    Schema(
        type=OpenAPIType.OBJECT,
        required=["sha256"],
        description='The image and exactly one of "aspect", "question" or "enhance": true. '
        "The image must have been analysed (404 otherwise).",
        properties={
            "sha256": SHA256_MEMBER,
            "aspect": Schema(
                type=OpenAPIType.STRING,
                enum=list(ASPECTS),
                description="One of the 14 FakeQA forgery aspects (other spellings such as "
                '"light & shadow" or "Light and Shadow" are accepted too)',
            ),
            "question": _string(
                "A free question about the image", min_length=1, max_length=MAX_QUESTION_CHARS
            ),
            "enhance": _flag("Ask for suggestions: what gives the image away and what to check"),
        },
        one_of=[
            Schema(required=["aspect"]),
            Schema(required=["question"]),
            Schema(
                required=["enhance"],
                properties={"enhance": Schema(schema_not=Schema(enum=[False, None]))},
            ),
        ],
        examples=[{"sha256": "ab" * 32, "aspect": "texture"}],
    ),
    "What to ask. Send `Accept: text/event-stream` to have the answer streamed.",
)

REPORT_BODY = _json_body(
    Schema(
        type=OpenAPIType.OBJECT,
        required=["sha256", "reason"],
        properties={
            "sha256": SHA256_MEMBER,
            "reason": _string(
                "What is wrong with the verdict (no NUL characters)",
                min_length=1,
                max_length=MAX_REPORT_TEXT,
            ),
            "suggested_label": Schema(
                type=[OpenAPIType.STRING, OpenAPIType.NULL],
                enum=["fake", "real", "uncertain", None],
                description="The label the reporter thinks is right",
            ),
            "note": Schema(
                type=[OpenAPIType.STRING, OpenAPIType.NULL],
                max_length=MAX_REPORT_TEXT,
                description="Anything else (no contact details are kept)",
            ),
        },
        examples=[
            {"sha256": "ab" * 32, "reason": "this is my own photo", "suggested_label": "real"}
        ],
    ),
    "The report",
)

EVENT_STREAM = OpenAPIMediaType(
    schema=_string(
        "Server-Sent Events, when the request says `Accept: text/event-stream`: `token` "
        'events with data {"text": ...} (pieces of the answer), then one `done` event whose '
        "data is the answer object (as the JSON response). A generation failing after the "
        'stream began sends an `error` event with {"status", "detail"} instead of `done`.',
    ),
)


# -- operations ------------------------------------------------------------------------------


@dataclass
class DocumentedOperation(Operation):
    """An operation completed with what Litestar cannot see (see the module docstring)."""

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
