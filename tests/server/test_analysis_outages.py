"""Reading and storing analyses through database outages: requests ride them out.

Concurrent reads of stored analyses (`GET /v1/analyses/{sha}`, `POST /v1/lookup`, a
cache-hit `POST /v1/analyze`) share one query (`ReadCoalescer`), so one dropped connection
used to answer every request of its batch 503 `database-unavailable`. Now the batch is read
again on a fresh connection, with growing pauses, for up to the retry budget; requests that
arrive meanwhile join it. New analyses are stored in shared transactions (`GroupCommit`),
tried again the same way. A database that stays away still ends in 503
`database-unavailable` with Retry-After, within each request's budget. The faults are real:
the backend under the statement is terminated just before it runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from db_faults import DroppedWrites, LostCommitReplies, TerminatedBackends
from server_helpers import AppClient, problem, run_sql, running, unique_png, upload

from server.app import create_app
from server.settings import Settings

SERVED_READ = "review_label"  # in the query of served analyses only
STORE_ANALYSIS = "INSERT INTO analyses"


async def _stored(client: AppClient, n: int) -> list[tuple[str, bytes]]:
    """`n` images analysed and stored: (sha256, bytes)."""
    images = []
    for _ in range(n):
        data = unique_png()
        response = await client.post("/v1/analyze", **upload(data))
        assert response.status_code == 200, response.text
        images.append((response.json()["sha256"], data))
    return images


async def _read_all(client: AppClient, images: list[tuple[str, bytes]]) -> list[Any]:
    """Each image read three ways at once: GET by hash, a lookup, a cache-hit upload."""
    shas = [sha for sha, _ in images]
    return await asyncio.gather(
        *(client.get(f"/v1/analyses/{sha}") for sha in shas),
        *(client.post("/v1/lookup", json={"sha256": [sha]}) for sha in shas),
        *(client.post("/v1/analyze", **upload(data)) for _, data in images),
    )


def _found(response: Any, sha: str) -> bool:
    body = response.json()
    return body.get("sha256") == sha or sha in body.get("results", {})


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_concurrent_cached_reads_ride_out_terminated_backends(settings: Settings) -> None:
    # No in-memory cache of served analyses: every read goes to the database.
    async with running(create_app(replace(settings, cache_ttl_s=0))) as client:
        images = await _stored(client, 8)
        faults = TerminatedBackends(client.app.state.db.engine, SERVED_READ, times=3)
        try:
            responses = await _read_all(client, images)
        finally:
            faults.remove()
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * len(responses), [r.text for r in responses if r.status_code != 200]
    shas = [sha for sha, _ in images] * 3
    assert all(_found(response, sha) for response, sha in zip(responses, shas, strict=True))
    assert faults.seen > 3  # the batch was read again after each termination


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_cached_reads_of_a_database_that_stays_away_end_in_503_not_500(
    settings: Settings,
) -> None:
    # A request timeout of 2 s: reads try again for half of it, then answer 503. With 1 s
    # (0.5 s of retries) the first read, which terminates a backend through a connection of
    # its own, could outlast the budget on a busy machine, and nothing was tried again.
    async with running(
        create_app(replace(settings, cache_ttl_s=0, request_timeout_s=2.0))
    ) as client:
        images = await _stored(client, 3)
        faults = TerminatedBackends(client.app.state.db.engine, SERVED_READ, times=None)
        try:
            responses = await _read_all(client, images)
        finally:
            faults.remove()
    for response in responses:
        body = problem(response)
        assert response.status_code == 503 and response.headers["retry-after"] == "2"
        assert body["type"].endswith(":database-unavailable"), body
    assert faults.seen > 1  # tried again before giving up


async def _analyses_of(database_url: str, shas: list[str]) -> list[str]:
    rows = await run_sql(database_url, "SELECT sha256 FROM analyses")
    return sorted(sha for (sha,) in rows if sha in shas)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_new_analyses_are_stored_through_terminated_backends(
    settings: Settings, database_url: str
) -> None:
    images = [unique_png() for _ in range(6)]
    async with running(create_app(settings)) as client:
        faults = TerminatedBackends(client.app.state.db.engine, STORE_ANALYSIS, times=3)
        try:
            responses = await asyncio.gather(
                *(client.post("/v1/analyze", **upload(data)) for data in images)
            )
        finally:
            faults.remove()
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    shas = [response.json()["sha256"] for response in responses]
    assert await _analyses_of(database_url, shas) == sorted(shas)  # once each
    assert faults.seen > 3


async def test_analyses_whose_commit_reply_was_lost_are_stored_once_and_served(
    settings: Settings, database_url: str
) -> None:
    # The connection dies after COMMIT was sent: the analyses are stored, but the server
    # cannot know. It tries again: each insert meets its own row (an IntegrityError, which
    # the service takes as "stored already") and the stored analysis is served.
    images = [unique_png() for _ in range(6)]
    async with running(create_app(settings)) as client:
        faults = LostCommitReplies(client.app.state.db, times=2)
        try:
            responses = await asyncio.gather(
                *(client.post("/v1/analyze", **upload(data)) for data in images)
            )
        finally:
            faults.remove()
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    shas = [response.json()["sha256"] for response in responses]
    assert await _analyses_of(database_url, shas) == sorted(shas)  # once each
    assert faults.lost == 2


async def test_new_analyses_of_a_database_that_stays_away_end_in_503_not_500(
    settings: Settings, database_url: str
) -> None:
    # A request timeout of 2 s: the stores try again for half of it, then answer 503 (the
    # rest is the analysis's own time: past it, the answer would be 503 `timeout`).
    async with running(create_app(replace(settings, request_timeout_s=2.0))) as client:
        faults = DroppedWrites(client.app.state.db, times=None)
        try:
            responses = await asyncio.gather(
                *(client.post("/v1/analyze", **upload(unique_png())) for _ in range(3))
            )
        finally:
            faults.remove()
    for response in responses:
        body = problem(response)
        assert response.status_code == 503 and response.headers["retry-after"] == "2"
        assert body["type"].endswith(":database-unavailable"), body
    assert faults.dropped > 1  # tried again before giving up
    assert await run_sql(database_url, "SELECT count(*) FROM analyses") == [(0,)]
