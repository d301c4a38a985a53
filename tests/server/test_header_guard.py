"""Request heads over real sockets against `fakescope serve` (server/http_protocol.py): a request
line and headers longer than FAKESCOPE_MAX_HEADER_BYTES get 431 and the connection closes
(uvicorn with httptools read a header line of any length whole), and headers not complete
within FAKESCOPE_HEADER_TIMEOUT_S get 408, or a plain close when nothing came (uvicorn held such
connections forever, and with FAKESCOPE_MAX_CONNECTIONS enough of them refused every real
request). A request whose headers arrived is left alone, however slow its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest
from live_server import LiveServer

from server.settings import Settings

try:
    import psutil
except ImportError:  # pragma: no cover - psutil comes with the dev tools here
    psutil = None

# Small, so that deadlines pass within the test; the bound each read waits is far longer, so
# that a server that never answers fails the test instead of hanging it.
HEADER_TIMEOUT_S = "1"
ANSWER_WITHIN_S = 30.0
LIMIT = Settings().max_header_bytes  # the default, 64 KiB
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: "


def start_server(tmp: Path, **env: str) -> LiveServer:
    from server.db.migrate import upgrade_async

    url = f"sqlite+aiosqlite:///{tmp / 'fakescope.db'}"
    asyncio.run(upgrade_async(url))
    settings = {
        "FAKESCOPE_DATABASE_URL": url,
        "FAKESCOPE_DATA_DIR": str(tmp / "var"),
        "FAKESCOPE_RATE_LIMIT": "off",
        "FAKESCOPE_HEADER_TIMEOUT_S": HEADER_TIMEOUT_S,
        "FAKESCOPE_REQUEST_TIMEOUT_S": "60",
        **env,
    }
    return LiveServer(settings, tmp / "serve.log").start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("header_guard"))
    try:
        yield live
    finally:
        live.stop()


def connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_WITHIN_S)


def read_to_close(sock: socket.socket, rfile: BinaryIO | None = None) -> bytes:
    """Everything up to the server closing (a reset after the answer ends it too)."""
    read = rfile.read1 if rfile is not None else sock.recv  # type: ignore[attr-defined]
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := read(65536):
            data += chunk
    return data


def read_response(rfile: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One answer with a Content-Length, leaving the connection open."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = rfile.readline()
        assert line, f"closed before an answer: {head!r}"
        head += line
    status, headers = parse_head(head[:-4])
    body = rfile.read(int(headers["content-length"]))
    return status, headers, body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers


def assert_refused(data: bytes, status: int, code: str) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    got, headers = parse_head(head)
    assert got == status, data[:300]
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["type"] == f"urn:fakescope:problem:{code}"
    assert problem["status"] == status


def request(path: str = "/healthz", pad: int = 0) -> bytes:
    extra = b"X-Pad: " + b"p" * pad + b"\r\n" if pad else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


def rss(server: LiveServer) -> int | None:
    if psutil is None or server.process is None:
        return None
    return int(psutil.Process(server.process.pid).memory_info().rss)


def test_a_huge_header_line_is_431_without_being_read_whole(server: LiveServer) -> None:
    # uvicorn with httptools read a 200 MiB header line whole (432 MiB of memory) and never
    # answered; now the head stops at 64 KiB.
    before = rss(server)
    sent = 32 * 1024 * 1024
    with connect(server) as sock:
        with contextlib.suppress(OSError):  # the server stops reading and closes
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * sent)
        assert_refused(read_to_close(sock), 431, "headers-too-large")
    after = rss(server)
    if before is not None and after is not None:
        assert after - before < sent // 4, (before, after)
    assert httpx.get(server.base + "/healthz", timeout=ANSWER_WITHIN_S).status_code == 200


def test_a_head_of_exactly_the_limit_is_served_and_one_byte_more_is_431(
    server: LiveServer,
) -> None:
    pad = LIMIT - len(request(pad=1)) + 1
    assert len(request(pad=pad)) == LIMIT
    with connect(server) as sock, sock.makefile("rb") as rfile:
        sock.sendall(request(pad=pad))
        status, _headers, body = read_response(rfile)
        assert status == 200, body
    with connect(server) as sock:
        sock.sendall(request(pad=pad + 1))
        assert_refused(read_to_close(sock), 431, "headers-too-large")


def test_headers_that_stall_are_408_and_a_silent_connection_is_closed(
    server: LiveServer,
) -> None:
    with connect(server) as stalled, connect(server) as silent:
        stalled.sendall(HALF_HEAD)
        assert_refused(read_to_close(stalled), 408, "header-timeout")
        assert read_to_close(silent) == b""  # nothing came, nothing is answered: closed


def test_keep_alive_requests_are_served_and_a_later_stalled_head_is_408(
    server: LiveServer,
) -> None:
    with connect(server) as sock, sock.makefile("rb") as rfile:
        sock.sendall(request())
        status, headers, _body = read_response(rfile)
        assert status == 200 and headers.get("connection") != "close"
        sock.sendall(request() * 2)  # pipelined: both heads in one write
        for _ in range(2):
            status, headers, _body = read_response(rfile)
            assert status == 200 and headers.get("connection") != "close"
        # The deadline counts again from the end of the previous answer.
        sock.sendall(HALF_HEAD)
        assert_refused(read_to_close(sock, rfile), 408, "header-timeout")


def test_a_body_slower_than_the_header_deadline_is_not_cut(server: LiveServer) -> None:
    # The deadline is for heads: a body has FAKESCOPE_REQUEST_TIMEOUT_S (60 s here) to arrive.
    body = json.dumps({"sha256": ["ab" * 32]}).encode()
    head = (
        b"POST /v1/lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    pieces = [body[i : i + 8] for i in range(0, len(body), 8)]
    pause_s = 2.5 * float(HEADER_TIMEOUT_S) / len(pieces)  # the body takes 2.5 deadlines
    with connect(server) as sock, sock.makefile("rb") as rfile:
        sock.sendall(head)
        for piece in pieces:
            time.sleep(pause_s)
            sock.sendall(piece)
        status, _headers, answer = read_response(rfile)
        assert status == 200, answer
        # The guard is running on this connection: the next head that stalls is refused.
        sock.sendall(HALF_HEAD)
        assert_refused(read_to_close(sock, rfile), 408, "header-timeout")


def test_stalled_connections_at_the_connection_cap_are_let_go(tmp_path: Path) -> None:
    # Slowloris: at FAKESCOPE_MAX_CONNECTIONS open connections uvicorn answers every request
    # 503. Connections that never finish their headers used to hold the cap forever.
    server = start_server(tmp_path, FAKESCOPE_MAX_CONNECTIONS="3")
    stalled = [connect(server) for _ in range(3)]
    answers: list[bytes] = []
    try:
        for sock in stalled:
            sock.sendall(HALF_HEAD)
        readers = [
            threading.Thread(target=lambda s=sock: answers.append(read_to_close(s)))
            for sock in stalled
        ]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while True:
            probe = httpx.get(server.base + "/healthz", timeout=ANSWER_WITHIN_S)
            if probe.status_code == 200:
                break
            assert probe.status_code == 503 and time.monotonic() < deadline, probe.text
            time.sleep(0.1)
        for reader in readers:
            reader.join(ANSWER_WITHIN_S)
        assert len(answers) == 3
        for data in answers:
            assert_refused(data, 408, "header-timeout")
    finally:
        for sock in stalled:
            sock.close()
        server.stop()
