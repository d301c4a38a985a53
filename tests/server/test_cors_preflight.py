"""CORS preflights over real HTTP: Litestar's CORS policy decides, and a preflight it
refuses is answered as problem+json naming what was refused, like every other error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from server_helpers import behind_uvicorn, problem

from server.app import create_app
from server.settings import Settings

EXTENSION = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
METHOD = "Access-Control-Request-Method"
HEADERS = "Access-Control-Request-Headers"


@pytest.fixture
async def served(sqlite_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind uvicorn on a loopback port, allowing the extension's origin only."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        cors_origins=(EXTENSION,),
    )
    async with (
        behind_uvicorn(create_app(settings)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("asked", "refused", "named"),
    [
        ({"Origin": "https://evil.example", METHOD: "POST"}, ["origin"], "'https://evil.example'"),
        ({"Origin": EXTENSION, METHOD: "DELETE"}, ["method"], "'DELETE'"),
        (
            {"Origin": EXTENSION, METHOD: "POST", HEADERS: "content-type, x-sneaky"},
            ["headers"],
            "x-sneaky",
        ),
        (
            {"Origin": "https://evil.example", METHOD: "PUT", HEADERS: "x-sneaky"},
            ["origin", "method", "headers"],
            "'PUT'",
        ),
    ],
)
async def test_a_refused_preflight_is_a_problem_naming_what_was_refused(
    served: httpx.AsyncClient, asked: dict[str, str], refused: list[str], named: str
) -> None:
    response = await served.options("/v1/analyze", headers=asked)
    assert response.status_code == 400
    body = problem(response)
    assert body["type"] == "urn:fakescope:problem:cors-preflight-refused"
    assert body["detail"].startswith("CORS preflight refused: ") and named in body["detail"]
    assert body["refused"] == refused and body["instance"] == "/v1/analyze"
    assert "access-control-allow-origin" not in response.headers  # still refused


async def test_an_allowed_preflight_is_answered_as_before(served: httpx.AsyncClient) -> None:
    asked = {"Origin": EXTENSION, METHOD: "POST", HEADERS: "content-type, authorization"}
    response = await served.options("/v1/analyze", headers=asked)
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == EXTENSION
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"]
    plain = await served.get("/healthz", headers={"Origin": "https://evil.example"})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
