"""Hostile requests get a clear 4xx problem+json, never a 500, and leave no row behind."""

from __future__ import annotations

import zlib
from dataclasses import replace

import pytest
from local_http import serve_site
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
        ("application/vnd.api+json", b'{"url": 42}', 422),  # +json is JSON, as on the others
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
        "structured-json-url-not-string",
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


SHA = "ab" * 32


@pytest.mark.parametrize(
    "path,body,status",
    [
        ("/v1/lookup", b'{"sha256": ["\xff"]}', 400),
        ("/v1/ask", b'{"sha256": "\xc3\x28", "question": "x"}', 400),
        ("/v1/analyze", b'{"url": "http://\xff/"}', 400),
        ("/v1/lookup", b'{"sha256": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", 400),
        ("/v1/reports", b"[" * 30_000 + b"]" * 30_000, 400),
        ("/v1/analyze", b'{"url": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", 400),
        (
            "/v1/reports",
            b'{"sha256": "' + SHA.encode() + b'", "reason": "x", "suggested_label": ["fake"]}',
            422,
        ),
        (
            "/v1/reports",
            b'{"sha256": "' + SHA.encode() + b'", "reason": "x", '
            b'"suggested_label": {"label": "fake"}}',
            422,
        ),
        ("/v1/reports", b'{"sha256": "' + SHA.encode() + b'", "reason": "a\\u0000b"}', 422),
        (
            "/v1/reports",
            b'{"sha256": "' + SHA.encode() + b'", "reason": "x", "note": "\\u0000"}',
            422,
        ),
        ("/v1/ask", b'{"sha256": "' + SHA.encode() + b'", "question": "why\\u0000?"}', 422),
        ("/v1/lookup", b'{"sha256": ["' + SHA.encode() + b'\\n"]}', 422),
        ("/v1/lookup", b'{"pdq": ["' + SHA.encode() + b'\\n"]}', 422),
        ("/v1/ask", b'{"sha256": "' + SHA.encode() + b'\\n", "aspect": "texture"}', 422),
        ("/v1/analyze", b'{"url": "http://xn--/a.png"}', 422),
        ("/v1/reports", b'{"sha256": "' + SHA.encode() + b'", "reason": "cut \\ud83d"}', 400),
    ],
    ids=[
        "lookup-not-utf8",
        "ask-not-utf8",
        "analyze-not-utf8",
        "lookup-nested-20000-deep",
        "reports-nested-30000-deep",
        "analyze-nested-20000-deep",
        "reports-label-list",
        "reports-label-object",
        "reports-reason-nul",
        "reports-note-nul",
        "ask-question-nul",
        "lookup-sha256-trailing-newline",
        "lookup-pdq-trailing-newline",
        "ask-sha256-trailing-newline",
        "analyze-url-malformed-idna-label",
        "reports-reason-half-a-surrogate-pair",
    ],
)
async def test_hostile_json_bodies_are_the_right_4xx_and_write_nothing(
    settings: Settings, path: str, body: bytes, status: int
) -> None:
    # Each of these was a 500 (NUL characters on PostgreSQL only) or slipped past validation.
    async with running(create_app(settings)) as client:
        response = await client.post(
            path, content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == status, response.text
        problem(response)
    assert sum((await count_rows(settings.database_url)).values()) == 0


async def test_half_a_surrogate_pair_is_named_not_called_truncated(settings: Settings) -> None:
    # The extension cuts a reason at 2000 UTF-16 units, which can split an emoji.
    async with running(create_app(settings)) as client:
        response = await client.post(
            "/v1/reports",
            content=b'{"sha256": "' + SHA.encode() + b'", "reason": "cut \\ud83d"}',
            headers={"Content-Type": "application/json"},
        )
        detail = problem(response)["detail"]
        assert response.status_code == 400 and "surrogate" in detail, detail
        assert "truncated" not in detail


async def test_a_refused_explain_value_is_not_echoed_whole(settings: Settings) -> None:
    async with running(create_app(settings)) as client:
        response = await client.post(
            "/v1/analyze", json={"url": "https://example.com/a.png", "explain": "x" * 100_000}
        )
        assert response.status_code == 422
        assert len(problem(response)["detail"]) < 200


async def test_a_sha256_path_with_a_trailing_newline_is_a_422(settings: Settings) -> None:
    async with running(create_app(settings)) as client:
        response = await client.get(f"/v1/analyses/{SHA}%0A")
        assert response.status_code == 422
        problem(response)


async def test_nul_characters_in_report_text_are_refused_for_an_analysed_image(
    settings: Settings,
) -> None:
    async with running(create_app(settings)) as client:
        posted = await client.post("/v1/analyze", files={"file": ("a.png", _png())})
        sha = posted.json()["sha256"]
        before = await count_rows(settings.database_url)
        for extra in ({"reason": "my\x00photo"}, {"reason": "mine", "note": "\x00"}):
            response = await client.post("/v1/reports", json={"sha256": sha, **extra})
            assert response.status_code == 422, response.text
            assert "NUL" in problem(response)["detail"]
        ok = await client.post("/v1/reports", json={"sha256": sha, "reason": "my photo"})
        assert ok.status_code == 201
    after = await count_rows(settings.database_url)
    assert after["reports"] == before["reports"] + 1


def _multipart(*parts: tuple[bytes, bytes]) -> tuple[bytes, dict[str, str]]:
    body = b"".join(
        b"--BOUND\r\nContent-Disposition: form-data; " + disposition + b"\r\n\r\n" + data + b"\r\n"
        for disposition, data in parts
    )
    return body + b"--BOUND--\r\n", {"Content-Type": "multipart/form-data; boundary=BOUND"}


FILE_PART = b'name="file"; filename="a.png"'


@pytest.mark.parametrize(
    "parts,status,words",
    [
        (((b'name="file"', _png()),), 422, "file part"),
        (((b'name="file"; filename=""', _png()),), 422, "file part"),
        (
            (
                (b'name="explain"\r\nContent-Type: text/plain; charset=nope', b"1"),
                (FILE_PART, _png()),
            ),
            422,
            "charset",
        ),
        (((FILE_PART, _png()), (b'name="file"; filename="b.png"', _png()[::-1])), 422, "one image"),
        (
            ((b'name="explain"', b"true"), (b'name="explain"', b"false"), (FILE_PART, _png())),
            422,
            "explain",
        ),
        (((b'name="explain"; filename="e.txt"', b"true"), (FILE_PART, _png())), 422, "explain"),
        (
            (*((b'name="f%d"' % i, b"v") for i in range(1100)), (FILE_PART, _png())),
            413,
            "too many parts",
        ),
        (((b'name="' + b"x" * 70_000 + b'"', b"v"), (FILE_PART, _png())), 413, "part header"),
    ],
    ids=[
        "binary-field-without-filename",
        "empty-filename",
        "unknown-charset",
        "two-files",
        "explain-twice",
        "explain-as-a-file",
        "1100-parts",
        "huge-field-name",
    ],
)
async def test_ambiguous_or_hostile_multipart_is_a_clear_4xx_and_writes_nothing(
    settings: Settings, parts: tuple[tuple[bytes, bytes], ...], status: int, words: str
) -> None:
    body, headers = _multipart(*parts)
    async with running(create_app(settings)) as client:
        response = await client.post("/v1/analyze", content=body, headers=headers)
        assert response.status_code == status, response.text
        assert words in problem(response)["detail"]
    assert sum((await count_rows(settings.database_url)).values()) == 0


async def test_url_analysis_checks_explain_before_fetching_and_refuses_bad_redirects(
    settings: Settings,
) -> None:
    with serve_site(_png()) as site:
        async with running(create_app(replace(settings, allow_private_urls=True))) as client:
            maybe = await client.post(
                "/v1/analyze", json={"url": site.base + "/image", "explain": "maybe"}
            )
            assert maybe.status_code == 422
            assert "explain" in problem(maybe)["detail"]
            assert site.hosts_seen == []  # refused before anything was fetched
            for target in ("data:image/png;base64,iVBORw0KGgo=", "http://xn--/"):
                response = await client.post(
                    "/v1/analyze", json={"url": f"{site.base}/redirect?to={target}"}
                )
                assert response.status_code == 422, (target, response.text)
                assert "redirect refused" in problem(response)["detail"]
    assert sum((await count_rows(settings.database_url)).values()) == 0


async def test_the_explain_query_parameter_takes_the_same_words_as_the_form_field(
    settings: Settings,
) -> None:
    async with running(create_app(settings)) as client:
        for word in ("yes", "on", "1", "TRUE", "off", ""):
            response = await client.post(
                f"/v1/analyze?explain={word}", files={"file": ("a.png", _png())}
            )
            assert response.status_code == 200, (word, response.text)
        twice = await client.post(
            "/v1/analyze?explain=1&explain=0", files={"file": ("a.png", _png())}
        )
        assert twice.status_code == 422  # it was the last one, silently
        assert "explain must be given once" in problem(twice)["detail"]
        for word in ("maybe", "2"):
            response = await client.post(
                f"/v1/analyze?explain={word}", files={"file": ("a.png", _png())}
            )
            assert response.status_code == 422
            assert "explain must be true or false" in problem(response)["detail"]
