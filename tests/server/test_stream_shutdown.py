"""A streamed answer that the server's shutdown cuts short ends with an `error` event.

uvicorn's graceful shutdown waits (10 s under `fakescope serve`), then cancels the requests
still running: an SSE stream already sending was cut mid-body, so that the client read a
broken chunked body with neither `done` nor `error`, and the server logged a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import uvicorn
from live_server import free_port
from server_helpers import CountingModel, unique_png, until, upload, wait_until_ready

from server.analyze.service import SERVER_SHUTDOWN_CANCEL
from server.app import create_app
from server.ask.controller import ended_at_shutdown
from server.settings import Settings

SSE = {"Accept": "text/event-stream"}


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    blocks = [block for block in text.split("\n\n") if block.strip()]
    return [
        (block.split("\n", 1)[0].removeprefix("event: "), json.loads(block.split("data: ", 1)[1]))
        for block in blocks
    ]


class StallingStream(CountingModel):
    """Streams its first words, then decodes on until its stream is no longer wanted."""

    decodes_continuously = False

    def generate_batch(
        self,
        images: Any,
        prompts: Any,
        max_new_tokens: int = 0,
        *,
        on_text: Any = None,
        should_stop: Any = None,
    ) -> list[str]:
        for row in range(len(images)):
            if on_text is not None:
                on_text(row, "The first words")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (should_stop is not None and should_stop()):
            time.sleep(0.02)
        return ["The first words"] * len(images)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_stream_running_at_shutdown_ends_with_a_shutting_down_error_event(
    sqlite_url: str, tmp_path: Any, tiny_model: Any
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None, batch_wait_ms=10.0
    )
    model = StallingStream(tiny_model)
    app = create_app(settings, model_loader=lambda: model)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, timeout_graceful_shutdown=1, log_config=None
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    logs = _Records()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "fakescope", "asyncio")]
    for logger in loggers:
        logger.addHandler(logs)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await until(lambda: server.started or serving.done())
            await wait_until_ready(client)  # type: ignore[arg-type]
            sha = (await client.post("/v1/analyze", **upload(unique_png()))).json()["sha256"]
            ask = {"sha256": sha, "aspect": "texture"}
            async with client.stream("POST", "/v1/ask", json=ask, headers=SSE) as response:
                assert response.status_code == 200
                body = response.aiter_text()
                text = await anext(body)
                assert text.startswith("event: token"), text
                server.should_exit = True  # SIGTERM: the stream outlives the grace period
                async for piece in body:  # a cut stream raises httpx.RemoteProtocolError
                    text += piece
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
        for logger in loggers:
            logger.removeHandler(logs)
    events = _events(text)
    assert [name for name, _ in events] == ["token", "error"], text
    error = events[-1][1]
    assert (error["status"], error["code"]) == (503, "shutting-down")
    assert error["type"].endswith(":shutting-down") and error["detail"]
    assert error["retry_after"] >= 1
    assert any("graceful shutdown exceeded" in r.getMessage() for r in logs.records)
    assert not [r for r in logs.records if r.exc_info], "a traceback was logged"


class _Stalled:
    """An ASGI app that starts a response, sends one body piece and then waits forever."""

    def __init__(self, media_type: bytes) -> None:
        self.media_type = media_type

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", self.media_type)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"event: token\n", "more_body": True})
        await asyncio.Event().wait()


async def _cancelled(
    media_type: bytes, message: str | None
) -> tuple[list[Any], BaseException | None]:
    sent: list[Any] = []

    async def send(event: Any) -> None:
        sent.append(event)

    async def receive() -> Any:
        await asyncio.Event().wait()

    wrapped = ended_at_shutdown(_Stalled(media_type))  # type: ignore[arg-type]
    task = asyncio.create_task(wrapped({"type": "http"}, receive, send))
    await until(lambda: len(sent) == 2)
    task.cancel(message)
    try:
        await task
    except BaseException as exc:
        return sent, exc
    return sent, None


async def test_only_the_servers_shutdown_ends_a_stream_with_an_error_event() -> None:
    sent, raised = await _cancelled(b"text/event-stream; charset=utf-8", SERVER_SHUTDOWN_CANCEL)
    assert raised is None and len(sent) == 4
    assert sent[2]["body"].startswith(b"event: error\ndata: ") and sent[2]["more_body"]
    assert _events(sent[2]["body"].decode())[0][1]["code"] == "shutting-down"
    assert sent[3] == {"type": "http.response.body", "body": b"", "more_body": False}
    # A client that left, a timeout: cancelled as before, nothing more sent.
    sent, raised = await _cancelled(b"text/event-stream", None)
    assert isinstance(raised, asyncio.CancelledError) and len(sent) == 2
    # Not an event stream: no event to send (uvicorn ends that response as before).
    sent, raised = await _cancelled(b"application/json", SERVER_SHUTDOWN_CANCEL)
    assert isinstance(raised, asyncio.CancelledError) and len(sent) == 2
