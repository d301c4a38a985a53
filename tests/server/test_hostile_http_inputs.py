"""Hostile HTTP the earlier hostile-input tests did not send: unreadable Host headers, paths
the file system refuses, cookies that cannot be sent back, admin JSON that does not decode
or is not sent as JSON, compressed bodies, text filters PostgreSQL cannot compare, ids that
int() reads but are not ASCII digits, hashes followed by a newline. A clear 4xx each (a
problem+json one where it is not the review page), never a 500.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.enums import RequestEncodingType
from server_helpers import behind_uvicorn, count_rows, problem, running, unique_png

from server.analyze.image_store import ImageFiles, is_sha256
from server.app import create_app
from server.lookup.pdq_rows import parse_rows
from server.settings import Settings

ADMIN = "bootstrap-admin-secret"
SHA = "ab" * 32
JSON = RequestEncodingType.JSON
# The shape of the tokens the sign-in form issues (secrets.token_urlsafe(32)).
LOGIN_CSRF_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


class RawResponse:
    def __init__(self, data: bytes) -> None:
        head, _, self.body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers if key == name), "")


@pytest.fixture
def sqlite_settings(sqlite_url: str, tmp_path: Path) -> Settings:
    """For tests whose subject does not depend on the database engine."""
    return Settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None, admin_token=ADMIN
    )


@pytest.fixture
async def port(sqlite_settings: Settings) -> AsyncIterator[int]:
    """The app behind uvicorn on a loopback port (SQLite: nothing here depends on the engine)."""
    async with behind_uvicorn(create_app(sqlite_settings)) as chosen:
        yield chosen


async def send_raw(port: int, target: bytes, *headers: bytes) -> RawResponse:
    """One GET exactly as written (httpx would fix or refuse these bytes before sending)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [b"GET " + target + b" HTTP/1.1", *headers, b"Connection: close", b"", b""]
    writer.write(b"\r\n".join(lines))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return RawResponse(data)


async def leave_mid_body(port: int, target: bytes, content_type: bytes) -> None:
    """Announce 100 kB, send a few bytes, close the connection."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: 100000\r\n\r\n"
    writer.write(head % (target, content_type) + b'{"sha256"')
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors


@pytest.mark.parametrize("host", [b"x:abc", b"x:99999", b"[::1]:65536", b"x:1:2"])
async def test_a_host_header_with_an_unreadable_port_is_a_400_problem_on_every_route(
    port: int, host: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # Litestar's Host check lets these through; building request.url then raised, in the
    # problem handler itself: a bare text/plain 500 and "Exception in ASGI application".
    for target, extra in [
        (b"/nope", b"X-Nothing: 1"),
        (b"/v1/analyses/" + SHA.encode(), b"X-Nothing: 1"),
        (b"/admin", b"X-Nothing: 1"),
        (b"/v1/admin/queue", b"Authorization: Bearer " + ADMIN.encode()),
    ]:
        response = await send_raw(port, target, b"Host: " + host, extra)
        assert response.status == 400, (target, response.body)
        assert response.header("content-type").startswith("application/problem+json")
        assert b"Host header" in response.body
    fine = await send_raw(port, b"/v1/analyses/" + SHA.encode(), b"Host: example.com:8080")
    assert fine.status == 404
    no_errors_logged(caplog)


@pytest.mark.parametrize(
    "target,content_type",
    [
        (b"/v1/lookup", b"application/json"),
        (b"/v1/analyze", b"application/json"),
        (b"/v1/analyze", b"multipart/form-data; boundary=B"),
    ],
    ids=["lookup", "analyze-url", "analyze-upload"],
)
async def test_a_client_that_leaves_mid_body_is_counted_as_a_400_not_a_500(
    port: int, target: bytes, content_type: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    await leave_mid_body(port, target, content_type)
    route = f'route="{target.decode()}"'
    counted = re.compile(
        rf'fakescope_http_requests_total\{{method="POST",{route},status="(\d+)"\}}'
    )

    async def statuses() -> list[str]:
        metrics = await send_raw(port, b"/metrics", b"Host: x")
        return counted.findall(metrics.body.decode())

    await until_async(statuses)
    assert await statuses() == ["400"]
    no_errors_logged(caplog)


async def until_async(check: Any, within_s: float = 30.0) -> None:
    """Wait until the coroutine function `check` returns something true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "target",
    [b"/admin/static/%00", b"/admin/static/" + b"x" * 300, b"/admin/static/admin.js/x"],
    ids=["nul-byte", "name-too-long", "file-as-directory"],
)
async def test_static_paths_the_file_system_refuses_are_404_problems(
    port: int, target: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    response = await send_raw(port, target, b"Host: x")
    assert response.status == 404, response.body
    assert response.header("content-type").startswith("application/problem+json")
    assert (await send_raw(port, b"/admin/static/admin.js", b"Host: x")).status == 200
    no_errors_logged(caplog)


@pytest.mark.parametrize(
    "cookie",
    [b"%FF", b"%E2%80%AE", b"%C3%A9", b"%ED%A0%80", b"a%22b%5Cc", b"x" * 3000],
    ids=["invalid-utf8", "rtl-override", "e-acute", "lone-surrogate", "quote", "3000-chars"],
)
async def test_a_sign_in_csrf_cookie_the_server_did_not_issue_is_replaced_not_echoed(
    port: int, cookie: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # The form reused the cookie's value and set it again: beyond latin-1 that Set-Cookie
    # could not be encoded (a 500 on GET /admin).
    response = await send_raw(
        port, b"/admin", b"Host: x", b"Cookie: fakescope_login_csrf=" + cookie
    )
    assert response.status == 200, response.body
    issued = re.match(r"fakescope_login_csrf=([^;]*);", response.header("set-cookie"))
    assert issued and LOGIN_CSRF_SHAPE.fullmatch(issued.group(1)), response.headers
    assert f'value="{issued.group(1)}"'.encode() in response.body
    no_errors_logged(caplog)


async def test_a_sign_in_csrf_cookie_the_server_issued_is_kept(port: int) -> None:
    first = await send_raw(port, b"/admin", b"Host: x")
    issued = re.match(r"fakescope_login_csrf=([^;]*);", first.header("set-cookie"))
    assert issued
    token = issued.group(1).encode()
    again = await send_raw(port, b"/admin", b"Host: x", b"Cookie: fakescope_login_csrf=" + token)
    assert b'value="' + token + b'"' in again.body


ADMIN_JSON_BODIES = {
    "nested-10000-deep": b"[" * 10_000 + b"]" * 10_000,
    "member-nested-10000-deep": b'{"role": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "string-not-utf8": b'{"role": "client", "name": "\xff"}',
    "string-cut-inside-utf8": b'{"role": "client", "name": "\xc3"}',
    "utf8-encoded-surrogate": b'{"role": "client", "name": "\xed\xa0\x80"}',
    "truncated": b'{"role": "client"',
    "half-a-surrogate-pair": b'{"role": "client", "name": "cut \\ud83d"}',
}


@pytest.mark.parametrize("name", list(ADMIN_JSON_BODIES))
@pytest.mark.parametrize("route", ["/v1/admin/tokens", f"/v1/admin/items/{SHA}/decision"])
async def test_admin_json_that_does_not_decode_is_a_400_malformed_json_and_writes_nothing(
    settings: Settings, route: str, name: str
) -> None:
    async with running(create_app(_with_admin(settings))) as client:
        response = await client.post(
            route,
            content=ADMIN_JSON_BODIES[name],
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text
        body = problem(response)
        assert body["type"].endswith(":malformed-json") and body["detail"].startswith(
            "malformed JSON"
        )
    assert sum((await count_rows(settings.database_url)).values()) == 0


@pytest.mark.parametrize(
    "action", ["\x00", "review.decide\x00", "x" * 65, "Token.Create", "token create", "é"]
)
async def test_an_audit_action_filter_no_action_could_have_is_a_422(
    settings: Settings, action: str
) -> None:
    # PostgreSQL refused the NUL in the comparison: a 500 there, an empty page on SQLite.
    async with running(create_app(_with_admin(settings))) as client:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        response = await client.get("/v1/admin/audit", params={"action": action}, headers=headers)
        assert response.status_code == 422, response.text
        assert problem(response)["type"].endswith(":invalid-filter")
        created = await client.post("/v1/admin/tokens", json={"role": "client"}, headers=headers)
        assert created.status_code == 201
        kept = await client.get(
            "/v1/admin/audit", params={"action": "token.create"}, headers=headers
        )
        assert [e["action"] for e in kept.json()["entries"]] == ["token.create"]


@pytest.mark.parametrize("reason", ["user_report\n", "user_report\x00"])
async def test_a_queue_reason_filter_that_is_not_a_reason_name_is_a_422(
    settings: Settings, reason: str
) -> None:
    # A trailing newline passed the check ("$" matches before it) and matched no item: an
    # empty queue instead of an error.
    async with running(create_app(_with_admin(settings))) as client:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        response = await client.get("/v1/admin/queue", params={"reason": reason}, headers=headers)
        assert response.status_code == 422, response.text
        assert problem(response)["type"].endswith(":invalid-filter")


@pytest.mark.parametrize("seen", ["\u00b2", "\u0661", "\uff11", "1\u00b2"])
async def test_a_page_decision_whose_seen_id_holds_non_ascii_digits_is_recorded_unchecked(
    settings: Settings, seen: str
) -> None:
    # str.isdigit() took "²" for a digit and int() then raised: a 500, nothing recorded.
    async with running(create_app(_with_admin(settings))) as client:
        sha = await _analysed(client)
        csrf = await _signed_in_csrf(client, sha)
        form = {"label": "fake", "csrf_token": csrf, "seen_decision": seen}
        response = await client.post(f"/admin/items/{sha}/decision", data=form)
        assert response.status_code == 303, response.text
        item = await client.get(
            f"/v1/admin/items/{sha}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert [d["label"] for d in item.json()["decisions"]] == ["fake"]


@pytest.mark.parametrize(
    "route,content_type,body",
    [
        ("/v1/lookup", "application/json", b'{"sha256": []}'),
        ("/v1/reports", "application/json", b'{"sha256": "' + SHA.encode() + b'", "reason": "x"}'),
        ("/v1/analyze", "application/json", b'{"url": "https://example.com/a.png"}'),
        (
            "/v1/analyze",
            "multipart/form-data; boundary=B",
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
            + unique_png()
            + b"\r\n--B--\r\n",
        ),
        ("/v1/admin/tokens", "application/json", b'{"role": "client"}'),
    ],
    ids=["lookup", "reports", "analyze-url", "analyze-upload", "admin-tokens"],
)
@pytest.mark.parametrize("coding", ["gzip", "br"])
async def test_a_compressed_request_body_is_a_415_naming_the_content_encoding(
    settings: Settings, route: str, content_type: str, body: bytes, coding: str
) -> None:
    # It was read as it came: "malformed JSON: invalid character", or no "file" part.
    sent = gzip.compress(body) if coding == "gzip" else body
    async with running(create_app(_with_admin(settings))) as client:
        headers = {
            "Content-Type": content_type,
            "Content-Encoding": coding,
            "Authorization": f"Bearer {ADMIN}",
        }
        response = await client.post(route, content=sent, headers=headers)
        assert response.status_code == 415, response.text
        assert f"Content-Encoding {coding}" in problem(response)["detail"]
        identity = await client.post(
            "/v1/lookup",
            content=b"{}",
            headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
        )
        assert identity.status_code == 200
    assert sum((await count_rows(settings.database_url)).values()) == 0


async def test_a_request_target_that_is_not_utf8_is_a_400_problem(settings: Settings) -> None:
    # uvicorn's h11 parser passes raw 8-bit query bytes on; request.url could not decode them.
    app = create_app(settings)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async with running(app):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/nope",
            "raw_path": b"/nope",
            "query_string": b"q=\xff",
            "root_path": "",
            "headers": [(b"host", b"x")],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 400
    assert b"application/problem+json" in dict(sent[0]["headers"])[b"content-type"]


# Each of these int() read as token or session 1 ("0_1", "\u0661": the Arabic-Indic one).
NOT_ASCII_DIGIT_IDS = ["+1", "%201", "1%20", "0_1", "%D9%A1", "%EF%BC%91"]


@pytest.mark.parametrize("shown", NOT_ASCII_DIGIT_IDS)
async def test_a_path_id_that_is_not_ascii_digits_is_a_404_and_revokes_or_ends_nothing(
    settings: Settings, shown: str
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with running(create_app(_with_admin(settings))) as client:
        created = await client.post("/v1/admin/tokens", json={"role": "client"}, headers=headers)
        assert created.json()["id"] == 1
        await _sign_in(client)
        open_sessions = (await client.get("/v1/admin/sessions", headers=headers)).json()
        assert [s["id"] for s in open_sessions["sessions"]] == [1]
        for path in (f"/v1/admin/tokens/{shown}", f"/v1/admin/sessions/{shown}"):
            response = await client.delete(path, headers=headers)
            assert response.status_code == 404, (path, response.text)
            assert problem(response)["type"].endswith(":not-found")
        # Query ids and counts were strict already (msgspec): the same ones are a 422.
        audit = await client.get(f"/v1/admin/audit?before_id={shown}", headers=headers)
        assert audit.status_code == 422, audit.text
        tokens = (await client.get("/v1/admin/tokens", headers=headers)).json()["tokens"]
        assert [t["revoked_at"] for t in tokens if t["id"] == 1] == [None]
        still_open = (await client.get("/v1/admin/sessions", headers=headers)).json()
        assert still_open == open_sessions
        assert (await client.delete("/v1/admin/tokens/01", headers=headers)).status_code == 200


@pytest.mark.parametrize("number", [2**31, 2**34, 2**63 - 2])
async def test_an_id_past_what_an_id_column_holds_is_a_404_or_422_not_a_500(
    settings: Settings, number: int
) -> None:
    # The id columns are 32-bit INTEGER on PostgreSQL, and asyncpg refused a larger id in the
    # comparison: `DELETE /v1/admin/sessions/17179869184` and `GET /v1/admin/audit?before_id=
    # 9223372036854775806` were 500s there (found by scripts/fuzz_api.sh).
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with running(create_app(_with_admin(settings))) as client:
        created = await client.post("/v1/admin/tokens", json={"role": "client"}, headers=headers)
        assert created.status_code == 201, created.text
        for path in (f"/v1/admin/tokens/{number}", f"/v1/admin/sessions/{number}"):
            response = await client.delete(path, headers=headers)
            assert response.status_code == 404, (path, response.text)
            assert problem(response)["type"].endswith(":not-found")
        audit = await client.get(f"/v1/admin/audit?before_id={number}", headers=headers)
        assert audit.status_code == 422, audit.text
        problem(audit)
        decision = await client.post(
            f"/v1/admin/items/{SHA}/decision",
            json={"label": "fake", "expected_decision_id": number},
            headers=headers,
        )
        assert decision.status_code == 422, decision.text
        tokens = (await client.get("/v1/admin/tokens", headers=headers)).json()["tokens"]
        assert [t["revoked_at"] for t in tokens] == [None]


@pytest.mark.parametrize("given", ["\u0661", "\u00b2"])
def test_the_admin_command_takes_a_token_id_in_ascii_digits_only(
    sqlite_settings: Settings, given: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # str.isdigit() took them for ids: int() read "\u0661" as 1 (and revoked token 1), and
    # raised on "\u00b2".
    from fakescope.cli import main

    monkeypatch.setenv("FAKESCOPE_DATABASE_URL", sqlite_settings.database_url)
    monkeypatch.setenv("FAKESCOPE_DATA_DIR", str(sqlite_settings.data_dir))
    assert main(["admin", "create-token", "--role", "client"]) == 0
    assert main(["admin", "revoke-token", given]) == 1
    capsys.readouterr()
    assert main(["admin", "list-tokens", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["id"], t["revoked_at"]) for t in listed] == [(1, None)]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("route", ["/v1/admin/tokens", f"/v1/admin/items/{SHA}/decision"])
async def test_an_admin_json_body_not_sent_as_json_is_a_415_as_on_the_public_routes(
    sqlite_settings: Settings, route: str, content_type: str | None
) -> None:
    # Litestar decoded any body as JSON: a text/plain token request created a token.
    body = b'{"role": "client", "label": "fake"}'
    headers = {"Authorization": f"Bearer {ADMIN}"}
    if content_type:
        headers["Content-Type"] = content_type
    async with running(create_app(sqlite_settings)) as client:
        response = await client.post(route, content=body, headers=headers)
        assert response.status_code == 415, response.text
        assert problem(response)["detail"].startswith("expected application/json, got ")
        public = await client.post("/v1/reports", content=body, headers=headers)
        assert public.status_code == 415
    assert sum((await count_rows(sqlite_settings.database_url)).values()) == 0


def json_body_routes(app: Any) -> list[str]:
    """The POST paths of `app` whose handler declares a JSON body (`data`, JSONBody)."""
    return sorted(
        route.path.replace(":str}", "}")
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if "POST" in handler.http_methods
        and handler.parsed_data_field is not None
        and getattr(handler.parsed_data_field.kwarg_definition, "media_type", JSON) == JSON
    )


@pytest.mark.parametrize(
    "content_type,status,code",
    [
        (None, 415, "unsupported-media-type"),
        ("text/plain", 415, "unsupported-media-type"),
        ("application/json", 400, "malformed-json"),
        ("application/merge-patch+json", 400, "malformed-json"),
    ],
)
async def test_an_empty_admin_json_body_is_refused_as_on_the_public_routes(
    sqlite_settings: Settings, content_type: str | None, status: int, code: str
) -> None:
    # Litestar never read an empty body as JSON: every admin JSON route said 422 "data: 'data'"
    # whatever the content type, where the public routes say 415 or 400 `malformed-json`.
    app = create_app(sqlite_settings)
    routes = json_body_routes(app)
    assert routes == ["/v1/admin/items/{sha256}/decision", "/v1/admin/tokens"]
    headers = {"Authorization": f"Bearer {ADMIN}"}
    if content_type:
        headers["Content-Type"] = content_type
    async with running(app) as client:
        public = problem(await client.post("/v1/reports", content=b"", headers=headers))
        assert (public["status"], public["type"]) == (status, "urn:fakescope:problem:" + code)
        for route in routes:
            response = await client.post(route.replace("{sha256}", SHA), headers=headers)
            assert response.status_code == status, (route, response.text)
            body = problem(response)
            assert body["type"] == public["type"] and body["detail"] == public["detail"], route
            if status == 400:
                assert body["detail"] == "malformed JSON: the body is empty"
            # Authentication still comes first.
            signed_out = await client.post(route.replace("{sha256}", SHA))
            assert signed_out.status_code == 401, (route, signed_out.text)
    assert sum((await count_rows(sqlite_settings.database_url)).values()) == 0


async def test_the_admin_json_routes_document_the_415_of_a_body_not_sent_as_json(
    sqlite_settings: Settings,
) -> None:
    async with running(create_app(sqlite_settings)) as client:
        paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for path in ("/v1/admin/tokens", "/v1/admin/items/{sha256}/decision"):
        described = paths[path]["post"]["responses"]["415"]["description"]
        assert "not application/json" in described, (path, described)


@pytest.mark.parametrize(
    "target,status",
    [("zz", 404), (SHA, 404), (SHA + "%0A", 404), ("signed-out", 401)],
    ids=["not-a-sha256", "unknown-sha256", "sha256-and-newline", "signed-out"],
)
async def test_a_review_page_image_it_cannot_show_is_a_problem(
    sqlite_settings: Settings, target: str, status: int
) -> None:
    # An empty body labelled application/json.
    async with running(create_app(sqlite_settings)) as client:
        if target == "signed-out":
            target = await _analysed(client)
        else:
            await _sign_in(client)
        response = await client.get(f"/admin/items/{target}/image")
        assert response.status_code == status, response.text
        problem(response)


async def test_a_review_page_item_path_with_a_trailing_newline_is_refused_as_not_a_sha256(
    sqlite_settings: Settings,
) -> None:
    # "$" matched before the newline: the page said "unknown item" for that path instead.
    async with running(create_app(sqlite_settings)) as client:
        sha = await _analysed(client)
        await _sign_in(client)
        for path in (f"/admin/items/{sha}%0A", "/admin/items/zz"):
            response = await client.get(path)
            assert response.status_code == 303, (path, response.text)
            assert response.headers["location"] == "/admin"
        assert (await client.get(f"/admin/items/{sha}")).status_code == 200


def test_a_hash_with_a_trailing_newline_is_no_hash_to_the_image_store_or_pdq_index(
    tmp_path: Path,
) -> None:
    # "$" matched before it: a file named with the newline, a row kept as that hash.
    assert is_sha256(SHA) and not is_sha256(SHA + "\n")
    with pytest.raises(ValueError):
        ImageFiles(tmp_path).save(SHA + "\n", b"x")
    kept, _ = parse_rows([(SHA, "cd" * 32), ("12" * 32 + "\n", "cd" * 32)])
    assert kept.tolist() == [bytes.fromhex(SHA)]


@pytest.mark.parametrize("target", [b"/schema/nope", b"/schema/swagger", b"/schema/redoc"])
async def test_an_unknown_schema_path_is_a_404_problem(port: int, target: bytes) -> None:
    # Litestar's /schema router answered these with its own HTML 404 page.
    response = await send_raw(port, target, b"Host: x")
    assert response.status == 404, response.body
    assert response.header("content-type").startswith("application/problem+json")
    assert (await send_raw(port, b"/schema/openapi.json", b"Host: x")).status == 200
    assert (await send_raw(port, b"/schema", b"Host: x")).status == 200


def _with_admin(settings: Settings) -> Settings:
    from dataclasses import replace

    return replace(settings, admin_token=ADMIN)


async def _analysed(client: Any) -> str:
    posted = await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})
    assert posted.status_code == 200, posted.text
    sha: str = posted.json()["sha256"]
    return sha


async def _sign_in(client: Any) -> None:
    """Sign the client in to the review page with the admin token."""
    form = await client.get("/admin")
    login_csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert login_csrf, form.text
    signed = await client.post(
        "/admin/login", data={"token": ADMIN, "csrf_token": login_csrf.group(1)}
    )
    assert signed.status_code == 303, signed.text


async def _signed_in_csrf(client: Any, sha: str) -> str:
    """Sign the client in to the review page; the CSRF token of the item's form."""
    await _sign_in(client)
    page = await client.get(f"/admin/items/{sha}")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text
    return csrf.group(1)


@pytest.mark.parametrize(
    "route,content_type,signed_in",
    [
        ("/v1/admin/tokens", "application/json", False),
        (f"/v1/admin/items/{SHA}/decision", "application/json", False),
        ("/admin/login", "application/x-www-form-urlencoded", False),
        ("/admin/logout", "application/x-www-form-urlencoded", True),
        (f"/admin/items/{SHA}/decision", "application/x-www-form-urlencoded", True),
    ],
    ids=["tokens", "api-decision", "sign-in", "sign-out", "page-decision"],
)
async def test_an_admin_body_past_64_kib_is_a_413_problem_not_read_up_to_the_upload_limit(
    settings: Settings, route: str, content_type: str, signed_in: bool
) -> None:
    # These bodies are small JSON or forms, but took the app-wide limit, an image upload's
    # (25 MB): the sign-in form, which needs no session, read 25 MB from anyone.
    async with running(create_app(_with_admin(settings))) as client:
        if signed_in:
            await _sign_in(client)
        filler = b"x" * (64 * 1024 + 1)
        body = b'{"note": "' + filler + b'"}' if "json" in content_type else b"note=" + filler
        response = await client.post(
            route,
            content=body,
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": content_type},
        )
        assert response.status_code == 413, response.text
        problem(response)
    assert (await count_rows(settings.database_url)).get("api_tokens", 0) == 0
