"""Slow and stalled clients over real HTTP (uvicorn on a loopback port): a request body that
never arrives, or arrives a byte at a time, is answered 408 `body-timeout` within
FAKESCOPE_REQUEST_TIMEOUT_S and its connection closed (uvicorn itself waits for a body without
end), and other clients are served meanwhile. A client that leaves a streamed answer stops
its generation at once. A reader that stops reading the review export
holds no database connection while its stream waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import behind_uvicorn, running, unique_png, until

import server.admin.export as export_module
from server.app import create_app
from server.db.database import Database
from server.settings import Settings

# Small, so that the deadline passes within the test; the bound the test waits for an answer
# is far longer, so that a server that never answers fails the test instead of hanging it.
BODY_TIMEOUT_S = 0.5
ANSWER_WITHIN_S = 30.0
BOUNDARY = b"slowclientboundary"


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        request_timeout_s=BODY_TIMEOUT_S,
    )


@pytest.fixture
async def port(settings: Settings) -> AsyncIterator[int]:
    async with behind_uvicorn(create_app(settings)) as chosen:
        yield chosen


def upload_head(length: int) -> bytes:
    """A multipart upload to /v1/analyze announcing `length` bytes, and its first part header."""
    return (
        b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=" + BOUNDARY + b"\r\n"
        b"Content-Length: %d\r\n\r\n"
        % length
        + b"--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG"
    )


def lookup_head(length: int) -> bytes:
    return (
        b"POST /v1/lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length + b'{"sha256": ['
    )


async def answer_of(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """The whole answer, up to the server closing the connection."""
    data = await asyncio.wait_for(reader.read(), ANSWER_WITHIN_S)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, body


def assert_body_timeout(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 408, body
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["type"] == "urn:fakescope:problem:body-timeout"


async def test_an_upload_that_stalls_is_a_408_and_its_connection_closes(port: int) -> None:
    # 20 MB announced, a few bytes sent, then nothing: uvicorn has no body deadline of its
    # own, and the handler waited in request.form() for as long as the client kept quiet.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(upload_head(20_000_000))
        await writer.drain()
        assert_body_timeout(*await answer_of(reader))
        assert reader.at_eof()  # the server closed it: the rest of the body is not awaited
    finally:
        writer.close()


async def test_a_json_body_sent_a_byte_at_a_time_is_a_408(port: int) -> None:
    # Trickling keeps the connection busy without ever finishing: a deadline per read (an
    # idle timeout) would never pass; the deadline is for the whole body.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answered = asyncio.create_task(answer_of(reader))
    try:
        writer.write(lookup_head(100_000))
        await writer.drain()
        while not answered.done():
            with contextlib.suppress(ConnectionError):
                writer.write(b"1")
                await writer.drain()
            await asyncio.wait({answered}, timeout=0.05)
        assert_body_timeout(*answered.result())
    finally:
        answered.cancel()
        writer.close()


async def test_stalled_uploads_do_not_keep_other_clients_waiting(port: int) -> None:
    stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
    try:
        for _reader, writer in stalled:
            writer.write(upload_head(20_000_000))
            await writer.drain()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert (await client.get("/healthz")).status_code == 200
            lookup = await client.post("/v1/lookup", json={"sha256": ["ab" * 32]})
            assert lookup.status_code == 200, lookup.text
        # Every stalled one is answered and let go, not held until its client gives up.
        for reader, _writer in stalled:
            assert_body_timeout(*await answer_of(reader))
    finally:
        for _reader, writer in stalled:
            writer.close()


async def test_a_body_that_arrives_in_time_is_read_whole(port: int) -> None:
    # The deadline bounds the wait for the client only: a body sent in a few pieces, within
    # it, is answered as usual.
    body = json.dumps({"sha256": ["cd" * 32]}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = b"POST /v1/lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        writer.write(head + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        for piece in (body[:10], body[10:40], body[40:]):
            writer.write(piece)
            await writer.drain()
        status, _headers, answer = await answer_of(reader)
        assert status == 200, answer
    finally:
        writer.close()


async def test_an_export_waiting_on_its_reader_holds_no_database_connection(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The export is sent a chunk at a time; between two chunks it waits for the client to
    # take the last one (uvicorn's send waits while the socket is full). Each chunk is read in
    # its own short session: a reader that stops reading does not hold a pooled connection
    # (nor a read transaction, which on PostgreSQL would hold back vacuum) for as long as
    # it likes.
    admin = "slow-reader-admin"
    settings = Settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None, admin_token=admin
    )
    async with running(create_app(settings)) as client:
        for _ in range(3):
            analysed = await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})
            sha = analysed.json()["sha256"]
            decided = await client.post(
                f"/v1/admin/items/{sha}/decision",
                json={"label": "fake"},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert decided.status_code == 201, decided.text
        db: Database = client.app.state.db
        monkeypatch.setattr(export_module, "_CHUNK", 1)
        chunks = export_module.jsonl_stream(db)
        try:
            first = await anext(chunks)  # sent; the reader has not taken it yet
            assert first.count(b"\n") == 1
            assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            rest = [chunk async for chunk in chunks]
            assert len(rest) == 2
        finally:
            await chunks.aclose()


class EndlessAnswers:
    """The tiny model, except that a streamed answer goes on (a piece at a time) until the
    queue says nobody wants it any more, as a long generation does."""

    decodes_continuously = False

    def __init__(self, model: Any) -> None:
        self.inner = model
        self.info = model.info
        self.stopped = threading.Event()

    def generate_batch(
        self,
        images: Any,
        prompts: Any,
        *,
        max_new_tokens: int,
        on_text: Callable[[int, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]:
        if on_text is None or should_stop is None:
            return list(self.inner.generate_batch(images, prompts, max_new_tokens=max_new_tokens))
        for _ in range(int(ANSWER_WITHIN_S / 0.01)):
            if should_stop():
                self.stopped.set()
                break
            on_text(0, " more")
            threading.Event().wait(0.01)
        return [" more"] * len(images)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_client_that_leaves_a_streamed_answer_stops_its_generation(
    settings: Settings, tiny_model: Any
) -> None:
    model = EndlessAnswers(tiny_model)
    app = create_app(replace(settings, request_timeout_s=60), model_loader=lambda: model)
    async with behind_uvicorn(app) as chosen:
        base = f"http://127.0.0.1:{chosen}"
        async with httpx.AsyncClient(base_url=base, timeout=ANSWER_WITHIN_S) as client:
            for _ in range(600):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            files = {"file": ("a.png", unique_png())}
            sha = (await client.post("/v1/analyze", files=files)).json()["sha256"]
            question = {"sha256": sha, "question": "why?"}
            headers = {"Accept": "text/event-stream"}
            async with client.stream("POST", "/v1/ask", json=question, headers=headers) as answer:
                assert answer.status_code == 200
                first = await anext(answer.aiter_text())
                assert first.startswith("event: token")
            # The connection is gone: the generation is stopped, not run on for nobody.
            await until(model.stopped.is_set)
