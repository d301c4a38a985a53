"""Responses nobody reads, over real sockets against `fakescope serve`
(server/http_protocol.py): a client that sends a request and then reads nothing fills the
socket's buffers, uvicorn stops writing, and the connection used to be held forever (its
FAKESCOPE_MAX_CONNECTIONS slot, the buffered answer, a streamed answer's handler waiting to
send). Now a response the client takes nothing of for FAKESCOPE_SEND_TIMEOUT_S has its
connection dropped; a reader that is slow but keeps taking some gets the whole answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import math
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from admin_sessions import new_token, page_session
from live_server import LiveServer, free_port
from PIL import Image
from server_helpers import unique_png, until, upload
from test_header_guard import parse_head, start_server
from test_slow_clients import EndlessAnswers

from server.admin.auth import SESSION_COOKIE
from server.admin.roles import Role
from server.app import create_app
from server.http_protocol import HeaderGuardedProtocol, header_guard
from server.settings import Settings

SEND_TIMEOUT_S = "1"
# The bound each wait has: far longer than the deadline, so that a server that never lets go
# fails the test instead of hanging it.
WITHIN_S = 30.0
TINY_RCVBUF = 4096


def kernel_send_buffer_max() -> int:
    """The most a TCP socket's send buffer grows to here: the kernel takes that much of an
    answer whether the client reads or not (Linux says; else its default, 4 MiB)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return 4 * 1024 * 1024


def big_png() -> bytes:
    """A PNG of random pixels (it does not compress) 2 MiB longer than the kernel's buffers
    take, so that uvicorn has to hold some and wait for the client."""
    side = int(math.sqrt((kernel_send_buffer_max() + 2 * 1024 * 1024) / 3)) + 1
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served_image(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[LiveServer, bytes, str]]:
    """A server with room for one request (uvicorn counts the asking connection too), a
    big analysed image kept for the review page, and a review page session to fetch it:
    (server, the image, a request for it)."""
    tmp = tmp_path_factory.mktemp("send_timeout")
    server = start_server(
        tmp,
        FAKESCOPE_MODEL=str(tiny_model_dir),
        FAKESCOPE_SEND_TIMEOUT_S=SEND_TIMEOUT_S,
        FAKESCOPE_MAX_CONNECTIONS="2",
    )
    try:
        image = big_png()
        analysed = httpx.post(
            server.base + "/v1/analyze",
            files={"file": ("big.png", image, "image/png")},
            timeout=WITHIN_S * 4,
        )
        assert analysed.status_code == 200, analysed.text
        sha = analysed.json()["sha256"]
        assert sha == hashlib.sha256(image).hexdigest()
        url = server.env["FAKESCOPE_DATABASE_URL"]
        token_id, _secret = asyncio.run(new_token(url, Role.ADMIN))
        cookie = asyncio.run(page_session(url, token_id, Role.ADMIN))
        request = (
            f"GET /admin/items/{sha}/image HTTP/1.1\r\nHost: x\r\n"
            f"Cookie: {SESSION_COOKIE}={cookie}\r\n\r\n"
        ).encode()
        yield server, image, request
    finally:
        server.stop()


def open_request(server: LiveServer, request: bytes, rcvbuf: int) -> tuple[socket.socket, int]:
    """A connection that sent `request` and read its answer's head, and the length it
    announces (200: the slot was free;
    a 503 means an earlier connection was still being let go, so it tries again)."""
    deadline = time.monotonic() + WITHIN_S
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connecting, so that the window starts small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(WITHIN_S)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # the head only: the body stays unread
            assert chunk, head
            head += chunk
        status, headers = parse_head(head[:-4])
        if status == 200:
            return sock, int(headers["content-length"])
        sock.close()
        assert status == 503 and time.monotonic() < deadline, head
        time.sleep(0.1)


def test_a_response_nobody_reads_is_dropped_and_its_slot_freed(
    served_image: tuple[LiveServer, bytes, str],
) -> None:
    server, image, request = served_image
    stalled, length = open_request(server, request, TINY_RCVBUF)
    with stalled:
        assert length == len(image)
        # The stalled connection holds the only slot (others get uvicorn's 503) until the
        # send deadline drops it; then the server serves again.
        deadline = time.monotonic() + WITHIN_S
        while True:
            probe = httpx.get(server.base + "/healthz", timeout=WITHIN_S)
            if probe.status_code == 200:
                break
            assert probe.status_code == 503 and time.monotonic() < deadline, probe.text
            time.sleep(0.1)
        # The stalled client finds its connection gone, its answer cut short.
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := stalled.recv(65536):
                received += len(chunk)
        assert received < len(image)


def test_a_slow_but_steady_reader_gets_the_whole_response(
    served_image: tuple[LiveServer, bytes, str],
) -> None:
    # It takes a piece every 0.3 s: the server's writing stays paused for seconds, longer
    # than the deadline, but the client never goes a whole deadline without taking some.
    server, image, request = served_image
    slow, length = open_request(server, request, 256 * 1024)
    with slow, slow.makefile("rb") as rfile:
        body = b""
        while len(body) < length:
            time.sleep(0.3)
            piece = rfile.read1(min(256 * 1024, length - len(body)))
            assert piece, f"closed after {len(body)} of {length} bytes"
            body += piece
        assert body == image


class FloodingAnswers(EndlessAnswers):
    """A streamed answer that goes on, in big pieces, until nobody wants it any more."""

    def generate_batch(
        self,
        images: Any,
        prompts: Any,
        *,
        max_new_tokens: int,
        on_text: Callable[[int, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]:
        if on_text is None:
            return super().generate_batch(images, prompts, max_new_tokens=max_new_tokens)
        return super().generate_batch(
            images,
            prompts,
            max_new_tokens=max_new_tokens,
            on_text=lambda row, text: on_text(row, text * 4096),  # 20 KiB a piece
            should_stop=should_stop,
        )


async def test_a_streamed_answer_nobody_reads_stops_its_generation(
    sqlite_url: str, tmp_path: Path, tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client that asks for a streamed answer and then reads nothing: the handler waits to
    # send, then the connection is dropped and the generation stops as when a client leaves.
    monkeypatch.setenv("FAKESCOPE_SEND_TIMEOUT_S", SEND_TIMEOUT_S)
    header_guard.cache_clear()
    model = FloodingAnswers(tiny_model)
    settings = Settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None, request_timeout_s=60
    )
    app = create_app(settings, model_loader=lambda: model)
    chosen = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=chosen, log_config=None, http=HeaderGuardedProtocol
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        await until(lambda: server.started or serving.done())
        base = f"http://127.0.0.1:{chosen}"
        async with httpx.AsyncClient(base_url=base, timeout=WITHIN_S) as client:
            for _ in range(600):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            sha = (await client.post("/v1/analyze", **upload(unique_png()))).json()["sha256"]
        body = json.dumps({"sha256": sha, "question": "why?"}).encode()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_RCVBUF)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", chosen))
        await loop.sock_sendall(
            sock,
            b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
        )
        # Nothing is read: the generation goes on until the send deadline drops the client.
        await until(model.stopped.is_set, WITHIN_S)
    finally:
        sock.close()
        header_guard.cache_clear()
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
