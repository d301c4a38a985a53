"""Hostile requests get a clear 4xx problem+json, never a 500, and leave no row behind."""

from __future__ import annotations

import zlib
from dataclasses import replace

import pytest
from server_helpers import count_rows, load_hostile, problem, running

from server.app import create_app
from server.settings import Settings

hostile = load_hostile()
SMALL_LIMIT = 2 * 1024 * 1024


def _png() -> bytes:
    return hostile.encode(hostile.scene(), "PNG")


REFUSED_UPLOADS = {
    "zero_bytes": (b"", 400),
    "truncated_png": (_png()[:120], 400),
    "truncated_jpeg": (hostile.encode(hostile.scene(), "JPEG")[:200], 400),
    "header_claims_ten_billion_pixels": (hostile.png_header_only(100_000, 100_000), 413),
    "zlib_pixel_bomb": (hostile.png_zero_bomb(8_500), 413),
    "compressed_text_bomb": (
        hostile.png_with_chunks(
            _png(), hostile.ztxt_chunk("Comment", zlib.compress(b"A" * 50_000_000, 9))
        ),
        413,
    ),
    "html": (hostile.HTML, 415),
    "svg_with_script": (hostile.SVG, 415),
    "html_behind_png_magic": (hostile.PNG_SIGNATURE + hostile.HTML, 400),
    "html_before_png": (hostile.HTML + _png(), 415),
    "zip": (hostile.zip_bytes(), 415),
    "pdf": (b"%PDF-1.7\n" + b"0" * 100, 415),
    "ico_outside_allow_list": (hostile.encode(hostile.scene(32, 32), "ICO"), 415),
}


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return replace(settings, max_upload_bytes=SMALL_LIMIT)


@pytest.mark.parametrize("name", list(REFUSED_UPLOADS))
async def test_hostile_upload_is_a_4xx_problem_and_writes_nothing(
    limited: Settings, name: str
) -> None:
    data, status = REFUSED_UPLOADS[name]
    async with running(create_app(limited)) as client:
        response = await client.post("/v1/analyze", files={"file": ("x.png", data, "image/png")})
        assert response.status_code == status, response.text
        problem(response)
    assert sum((await count_rows(limited.database_url)).values()) == 0


@pytest.mark.parametrize(
    "name,data",
    [
        (
            "huge_text_chunk",
            hostile.png_with_chunks(_png(), hostile.text_chunk("parameters", "fox " * 250_000)),
        ),
        ("jpeg_zip_polyglot", hostile.encode(hostile.scene(), "JPEG") + hostile.zip_bytes()),
        ("png_html_polyglot", _png() + hostile.HTML),
    ],
)
async def test_hostile_but_decodable_images_are_analysed_with_bounded_output(
    limited: Settings, name: str, data: bytes
) -> None:
    # Documented behaviour of the core: these are images; trailing bytes count in the SHA-256.
    async with running(create_app(limited)) as client:
        response = await client.post("/v1/analyze", files={"file": ("x", data)})
        assert response.status_code == 200, response.text
        assert len(response.content) < 64 * 1024
    rows = await count_rows(limited.database_url)
    assert rows["analyses"] == 1 and rows["images"] == 1


async def test_body_over_the_upload_limit_is_a_413_problem(limited: Settings) -> None:
    async with running(create_app(limited)) as client:
        response = await client.post(
            "/v1/analyze", files={"file": ("big.png", b"\x89PNG" + b"\0" * (SMALL_LIMIT + 200_000))}
        )
        assert response.status_code == 413
        problem(response)
    assert sum((await count_rows(limited.database_url)).values()) == 0


async def test_file_over_the_limit_but_body_within_overhead_is_a_413(limited: Settings) -> None:
    async with running(create_app(limited)) as client:
        response = await client.post(
            "/v1/analyze", files={"file": ("big.png", _png() + b"\0" * SMALL_LIMIT)}
        )
        assert response.status_code == 413
        problem(response)


@pytest.mark.parametrize(
    "content_type,body,status",
    [
        ("text/plain", b"hello", 415),
        ("image/png", b"\x89PNG\r\n\x1a\n", 415),
        ("application/x-www-form-urlencoded", b"file=abc", 415),
        ("", b"", 415),
        ("multipart/form-data; boundary=xyz", b"this is not multipart", 400),
        ("multipart/form-data", b"--\r\n", 422),
        ("application/json", b'{"url": ', 400),
        ("application/json", b"[1, 2, 3]", 422),
        ("application/json", b'{"url": 42}', 422),
        ("application/json", b'{"nothing": true}', 422),
    ],
    ids=[
        "text",
        "raw-image",
        "form-urlencoded",
        "no-content-type",
        "garbage-multipart",
        "multipart-no-boundary",
        "truncated-json",
        "json-array",
        "url-not-string",
        "json-no-url",
    ],
)
async def test_malformed_analyze_requests_are_4xx_problems(
    settings: Settings, content_type: str, body: bytes, status: int
) -> None:
    async with running(create_app(settings)) as client:
        headers = {"Content-Type": content_type} if content_type else {}
        response = await client.post("/v1/analyze", content=body, headers=headers)
        assert response.status_code == status, response.text
        problem(response)
    assert sum((await count_rows(settings.database_url)).values()) == 0


async def test_multipart_without_a_file_field_is_a_422(settings: Settings) -> None:
    async with running(create_app(settings)) as client:
        response = await client.post(
            "/v1/analyze", data={"image": "nope"}, files={"other": ("a", b"x")}
        )
        assert response.status_code == 422
        assert '"file"' in problem(response)["detail"]


@pytest.mark.parametrize("explain", ["maybe", "2"])
async def test_invalid_explain_flag_is_a_4xx(settings: Settings, explain: str) -> None:
    async with running(create_app(settings)) as client:
        response = await client.post(
            "/v1/analyze", files={"file": ("a.png", _png())}, data={"explain": explain}
        )
        assert response.status_code == 422
        problem(response)


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/lookup", b"{not json"),
        ("/v1/ask", b"{not json"),
        ("/v1/reports", b"{not json"),
        ("/v1/ask", b'{"sha256": "' + b"a" * 64 + b'"}'),
        ("/v1/ask", b'{"sha256": "' + b"a" * 64 + b'", "aspect": "vibes"}'),
        ("/v1/reports", b'{"sha256": "' + b"a" * 64 + b'"}'),
        ("/v1/reports", b'{"sha256": "zz", "reason": "x"}'),
    ],
)
async def test_malformed_json_endpoints_are_4xx_problems(
    settings: Settings, path: str, body: bytes
) -> None:
    async with running(create_app(settings)) as client:
        response = await client.post(
            path, content=body, headers={"Content-Type": "application/json"}
        )
        assert 400 <= response.status_code < 500, response.text
        problem(response)
    assert sum((await count_rows(settings.database_url)).values()) == 0


async def test_ten_thousand_key_lookup_is_refused_and_writes_nothing(settings: Settings) -> None:
    async with running(create_app(settings)) as client:
        keys = [f"{i:064x}" for i in range(10_000)]
        response = await client.post("/v1/lookup", json={"sha256": keys[:5000], "pdq": keys[5000:]})
        assert response.status_code == 422
        problem(response)
    assert sum((await count_rows(settings.database_url)).values()) == 0


async def test_lookup_body_over_its_limit_is_a_413(settings: Settings) -> None:
    async with running(create_app(settings)) as client:
        response = await client.post("/v1/lookup", json={"sha256": ["a" * 64] * 20_000})
        assert response.status_code == 413
        problem(response)
