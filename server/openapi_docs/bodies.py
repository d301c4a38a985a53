"""The request bodies the public routes parse by hand, which Litestar therefore cannot see."""

from __future__ import annotations

from typing import Any

from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, RequestBody, Schema

from fakescope.prompts import ASPECTS, MAX_QUESTION_CHARS

# Mirrors of the controllers' limits (importing them here would cycle; a test checks them).
MAX_LOOKUP_KEYS = 500  # server.lookup.controller.MAX_KEYS
MAX_REPORT_TEXT = 2000  # server.reports.controller.MAX_TEXT
HEX64 = "^[0-9a-fA-F]{64}$"
BOOL_WORDS = "true or false (also the strings true/false, 1/0, yes/no, on/off, any case)"
# server.requests.TRUE_WORDS and FALSE_WORDS as patterns (any case, surrounding blanks).
_TRUE_WORDS = "[Tt][Rr][Uu][Ee]|[Yy][Ee][Ss]|[Oo][Nn]|1"
_FALSE_WORDS = "[Ff][Aa][Ll][Ss][Ee]|[Nn][Oo]|[Oo][Ff][Ff]|0|"
TRUE_WORD = rf"^\s*({_TRUE_WORDS})\s*$"
BOOL_WORD = rf"^\s*({_TRUE_WORDS}|{_FALSE_WORDS})\s*$"
# Text the server stores: PostgreSQL cannot hold NUL in a text column, so it is a 422.
NO_NUL = r"^[^\x00]*$"


def _string(description: str, **kwargs: Any) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, **kwargs)


def _flag(description: str) -> Schema:
    return Schema(
        one_of=[
            Schema(type=OpenAPIType.BOOLEAN),
            Schema(type=OpenAPIType.STRING, pattern=BOOL_WORD),
        ],
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
                        pattern=BOOL_WORD,
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
                "A free question about the image (no NUL characters)",
                min_length=1,
                max_length=MAX_QUESTION_CHARS,
                pattern=NO_NUL,
            ),
            "enhance": _flag("Ask for suggestions: what gives the image away and what to check"),
        },
        one_of=[
            Schema(required=["aspect"]),
            Schema(required=["question"]),
            Schema(
                required=["enhance"],
                properties={
                    "enhance": Schema(
                        one_of=[
                            Schema(const=True),
                            Schema(type=OpenAPIType.STRING, pattern=TRUE_WORD),
                        ]
                    )
                },
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
                "What is wrong with the verdict (not blank, no NUL characters)",
                min_length=1,
                max_length=MAX_REPORT_TEXT,
                pattern=NO_NUL,
            ),
            "suggested_label": Schema(
                type=[OpenAPIType.STRING, OpenAPIType.NULL],
                enum=["fake", "real", "uncertain", None],
                description="The label the reporter thinks is right",
            ),
            "note": Schema(
                type=[OpenAPIType.STRING, OpenAPIType.NULL],
                max_length=MAX_REPORT_TEXT,
                pattern=NO_NUL,
                description="Anything else (no contact details are kept; no NUL characters)",
            ),
        },
        examples=[
            {"sha256": "ab" * 32, "reason": "this is my own photo", "suggested_label": "real"}
        ],
    ),
    "The report",
)
