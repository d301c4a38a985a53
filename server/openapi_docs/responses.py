"""The answers routes document: msgspec response shapes and the problems each route may give.

Litestar's schema registry turns the shapes into `components/schemas`; `success`,
`responses` and `problem_responses` build a handler's `responses` from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from inspect import cleandoc
from typing import Annotated, Any, Literal

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body

from server.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE

LOWER_HEX64 = "^[0-9a-f]{64}$"


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


class CalibrationFacts(msgspec.Struct):
    """The Platt scaling applied to p_fake: p_fake = sigmoid(a * margin + b)."""

    a: Annotated[float, _meta("Slope on the TPE margin (sum of fake- minus real-token logits)")]
    b: Annotated[float, _meta("Intercept")]
    digest: Annotated[str, _meta("12 hex digits naming a and b (the cache key's +cal- suffix)")]
    method: Literal["platt"]


class ModelFacts(msgspec.Struct):
    """The model that made an analysis or answer."""

    id: Annotated[str, _meta("Checkpoint path or hub id")]
    revision: Annotated[str | None, _meta("Hub revision, when known")]
    quantization: Annotated[str, _meta("nf4, int8 or none")]
    untrained: Annotated[bool, _meta("Random weights (test checkpoints): outputs mean nothing")]
    family: Annotated[str, _meta("The architecture family (config.model_type)")]
    calibration: Annotated[
        CalibrationFacts | None,
        _meta(
            "The calibration p_fake went through (FAKESCOPE_CALIBRATION); null: the raw "
            "token-based estimate. Absent from analyses stored before this field existed"
        ),
    ] = None


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


# -- a handler's responses ------------------------------------------------------------


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
BODY_TIMEOUT = (
    "The body did not arrive within `FAKESCOPE_REQUEST_TIMEOUT_S` of its first byte "
    "(`body-timeout`; the connection is closed)"
)
BODY_PROBLEMS: dict[int, str] = {
    400: "Malformed JSON (`malformed-json`)",
    408: BODY_TIMEOUT,
    413: "The body is too large",
    415: "The body is not application/json, or comes compressed (`unsupported-content-encoding`)",
}


# Any route that reads or writes the database may answer this (server/problems.py).
DATABASE_UNAVAILABLE = (
    "the database is unreachable (`database-unavailable`), or every pooled connection of "
    "this process stayed in use for `FAKESCOPE_DB_POOL_TIMEOUT_S` (`database-busy`)"
)


def problem_responses(
    problems: Mapping[int, str], common: Mapping[int, str] = CLIENT_PROBLEMS
) -> dict[int, ResponseSpec]:
    """Each problem a handler answers, by status, with what it means there; every route
    also documents the 503 of an unreachable database, after its own 503s if it has any."""
    documented = {**common, **problems}
    own = documented.get(503)
    documented[503] = (
        f"{own}; or {DATABASE_UNAVAILABLE}" if own else DATABASE_UNAVAILABLE.capitalize()
    )
    return {code: _problem_spec(documented[code]) for code in sorted(documented)}


def responses(
    status: int,
    ok: ResponseSpec,
    problems: Mapping[int, str],
    common: Mapping[int, str] = CLIENT_PROBLEMS,
) -> dict[int, ResponseSpec]:
    """A handler's `responses`: its success shape, then its problems."""
    return {status: ok} | problem_responses(problems, common)
