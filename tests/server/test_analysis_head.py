"""HEAD /v1/analyses/{sha256}: GET's status and headers, without the body."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from live_server import LiveServer
from server_helpers import AppClient, unique_png, upload

HEADERS_AS_GET = ("content-type", "content-length", "x-cache", "retry-after")


def headers_that_differ(
    head: httpx.Response, get: httpx.Response
) -> dict[str, tuple[str | None, str | None]]:
    """The headers HEAD and GET disagree on, among those a client reads."""
    pairs = {name: (head.headers.get(name), get.headers.get(name)) for name in HEADERS_AS_GET}
    return {name: pair for name, pair in pairs.items() if pair[0] != pair[1]}


async def test_head_of_a_cached_analysis_is_its_get_without_the_body(client: AppClient) -> None:
    sha = (await client.post("/v1/analyze", **upload(unique_png()))).json()["sha256"]
    got = await client.get(f"/v1/analyses/{sha}")
    headed = await client.head(f"/v1/analyses/{sha}")
    assert got.status_code == headed.status_code == 200
    assert headed.content == b""
    assert headed.headers["x-cache"] == "hit"
    assert headed.headers["content-type"] == "application/json"
    assert int(headed.headers["content-length"]) == len(got.content)
    assert headers_that_differ(headed, got) == {}


async def test_head_answers_unknown_and_malformed_hashes_as_get_does(client: AppClient) -> None:
    for path, status in (
        ("/v1/analyses/" + "ab" * 32, 404),
        ("/v1/analyses/not-a-sha256", 422),
        ("/v1/analyses/" + "AB" * 32, 404),  # upper-case hex is the same key
    ):
        got = await client.get(path)
        headed = await client.head(path)
        assert got.status_code == headed.status_code == status, path
        assert headed.content == b""
        assert headed.headers["content-type"] == "application/problem+json"
        assert headers_that_differ(headed, got) == {}, path


async def test_the_schema_documents_head_of_an_analysis(client: AppClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    operation = document["paths"]["/v1/analyses/{sha256}"]["head"]
    responses = operation["responses"]
    assert {"200", "404", "422", "429", "503"} <= set(responses)
    assert "content" not in responses["200"]
    assert responses["200"]["headers"]["X-Cache"]["schema"]["enum"] == ["hit", "miss"]
    assert [p["name"] for p in operation["parameters"]] == ["sha256"]


async def test_a_real_server_answers_head_with_get_headers_and_no_body(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Over the wire (uvicorn): the declared length is GET's and no body bytes follow."""
    env = {
        "FAKESCOPE_DATA_DIR": str(tmp_path),
        "FAKESCOPE_DATABASE_URL": sqlite_url,
        "FAKESCOPE_RATE_LIMIT": "off",
        "FAKESCOPE_MODEL": "",
    }
    server = LiveServer(env, tmp_path / "server.log")
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            analysed = await http.post("/v1/analyze", **upload(unique_png()))
            path = f"/v1/analyses/{analysed.json()['sha256']}"
            for _ in range(2):  # the connection stays usable after a HEAD
                got, headed = await http.get(path), await http.head(path)
                assert got.status_code == headed.status_code == 200
                assert headed.content == b""
                assert headers_that_differ(headed, got) == {}
            missing = await http.head("/v1/analyses/" + "ef" * 32)
            assert missing.status_code == 404 and missing.content == b""
    finally:
        await asyncio.to_thread(server.stop)
