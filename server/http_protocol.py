"""uvicorn's httptools protocol with a size cap and a deadline for each request's headers, and
a deadline for answers the client stops taking.

uvicorn 0.54 has neither when it parses with httptools: a client could send one endless header
line (httptools gathers a header's value whole, so the process grew by all of it) or keep a
connection open without ever finishing its headers (slowloris), and with `limit_concurrency`
(FAKESCOPE_MAX_CONNECTIONS) enough such connections left every real request a 503.

`HeaderGuardedProtocol` (`fakescope serve` passes it as uvicorn's `http=`, an import string, so
`--workers` processes import it too) adds both, per request:

- size: the request line and headers together may take FAKESCOPE_MAX_HEADER_BYTES (64 KiB, as
  common proxies allow). A longer head gets 431 `headers-too-large` and the connection is
  closed; no more than the cap is given to the parser, so one read beyond it is the most held.
  Only bytes read while a request's headers are incomplete count, from the end of the previous
  request: for a pipelined request whose head starts inside the read that ended the previous
  request, that read is not counted (up to one more read of slack).
- time: the headers must be complete FAKESCOPE_HEADER_TIMEOUT_S after the connection opened or
  after the previous response ended (while a response is being made nothing is timed; uvicorn's
  own keep-alive timeout still closes connections idle between requests first when shorter).
  Past it: 408 `header-timeout` if some of the request arrived, else a plain close.

Once a request's headers are complete the guard does nothing for it: its body has the app's own
deadline (server/requests.py). Both answers are problem+json written straight to the transport,
with `Connection: close`; the app never sees the request. A refusal due while an earlier
pipelined response is still being made closes the connection without an answer.

It also gives answers a send deadline. A client that reads nothing fills the socket's buffers;
the transport then pauses writing and uvicorn's `send` waits for it to resume, with nothing
timed (the handler, its stream and the FAKESCOPE_MAX_CONNECTIONS slot were held forever; so
was a finished answer still buffered, a close waiting for it to be sent). While writing is
paused a timer runs: if the client took none of the bytes not yet taken (the transport's
buffer plus what the kernel holds unacknowledged, TIOCOUTQ on Linux: a slow reader empties
the kernel's part long before the transport's moves) for FAKESCOPE_SEND_TIMEOUT_S, the
connection is aborted; when writing resumes the timer is cancelled. uvicorn's
`connection_lost` then wakes the waiting `send` and marks the request disconnected, as when a
client leaves. Connections whose writing never pauses make no timer.

And past FAKESCOPE_MAX_CONNECTIONS (uvicorn's `limit_concurrency`) uvicorn answers requests
itself, before the app, with a plain-text 503: here that answer is the API's problem+json
(`too-many-connections`, with Retry-After and `Connection: close`) like every other 503.

This subclasses uvicorn internals (`data_received`, `on_headers_complete`,
`on_message_complete`, `on_response_complete`, `connection_made`, `connection_lost`,
`pause_writing`, `resume_writing`, `_start_asgi_task`, `cycle`, `transport`, `loop`,
`server_state`, `STATUS_LINE`, `flow_control.service_unavailable`): pyproject.toml pins
uvicorn to the version read (0.54).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import struct
import sys
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from server.problems import PROBLEM_MEDIA_TYPE, RETRY_AFTER_UNAVAILABLE_S, problem_body
from server.settings import Settings

IMPORT_STRING = "server.http_protocol:HeaderGuardedProtocol"
_HttpTools = HttpToolsProtocol
_TIOCOUTQ = 0x5411  # Linux: bytes a TCP socket holds that the peer has not acknowledged


def _kernel_unacked(transport: asyncio.Transport) -> int:
    """What the kernel still holds of what was written, where it says (Linux), else 0."""
    if sys.platform != "linux":
        return 0
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    import fcntl

    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0" * 4))[0])
    except (OSError, ValueError):
        return 0


@dataclass(frozen=True)
class HeaderGuard:
    max_bytes: int
    timeout_s: float
    send_timeout_s: float  # a response the client takes nothing of for this long is dropped
    too_large: bytes  # the answers after their status line and uvicorn's default headers
    timed_out: bytes
    overloaded: bytes  # the problem+json body of the 503 past FAKESCOPE_MAX_CONNECTIONS


def _answer_tail(status: int, code: str, detail: str) -> bytes:
    body = json.dumps(problem_body(status, detail, code=code)).encode()
    return (
        b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body
    )


@functools.cache
def header_guard() -> HeaderGuard:
    """The limits from FAKESCOPE_* (read once per process: workers read their own)."""
    settings = Settings.from_env()
    limit, timeout = settings.max_header_bytes, settings.header_timeout_s
    return HeaderGuard(
        max_bytes=limit,
        timeout_s=timeout,
        send_timeout_s=settings.send_timeout_s,
        too_large=_answer_tail(
            431,
            "headers-too-large",
            f"the request line and headers together exceed {limit} bytes",
        ),
        timed_out=_answer_tail(
            408, "header-timeout", f"the request headers did not arrive within {timeout:g} s"
        ),
        overloaded=json.dumps(
            problem_body(
                503,
                f"this server process is at its limit of {settings.max_connections} open "
                "connections or running requests (FAKESCOPE_MAX_CONNECTIONS); try again shortly",
                code="too-many-connections",
            )
        ).encode(),
    )


async def too_many_connections(scope: Any, receive: Any, send: Any) -> None:
    """What answers in place of uvicorn's plain-text 503 when `limit_concurrency` is reached:
    the API's problem+json, with Retry-After as every 503 of the API has (and, as uvicorn's,
    `Connection: close`)."""
    body = header_guard().overloaded
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_UNAVAILABLE_S).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class HeaderGuardedProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._guard = guard = header_guard()
        self._max_head_bytes = guard.max_bytes
        self._head_timeout_s = guard.timeout_s
        # The current request's head: waiting for it to complete, bytes read of it, when it is
        # due (loop time; None: no deadline runs). One timer per connection checks the due
        # time, moved on rather than replaced for each request: a timer made and cancelled
        # per request cost measurable throughput. Base methods are called by name, not through
        # super(), for the same reason (these run for every request).
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_due: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        # The send deadline: a timer only while the transport has paused writing (the client
        # took too little of the answer), none otherwise; and the bytes then not yet taken.
        self._send_timeout_s = guard.send_timeout_s
        self._send_timer: asyncio.TimerHandle | None = None
        self._send_buffered = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)

    # Transport flow control (called when the write buffer passes its high / low water mark)
    def pause_writing(self) -> None:
        _HttpTools.pause_writing(self)
        if self._send_timer is None:
            self._send_buffered = self._untaken()
            self._send_timer = self.loop.call_later(self._send_timeout_s, self._send_timer_fired)

    def resume_writing(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        _HttpTools.resume_writing(self)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes:
                self._head_bytes -= len(data)
                self._data_past_the_limit(data)
                return
        _HttpTools.data_received(self, data)

    def _data_past_the_limit(self, data: bytes) -> None:
        limit = self._max_head_bytes
        while self._awaiting_head and len(data) > limit - self._head_bytes:
            # Parse only what the head may still take; it must end within that.
            room = limit - self._head_bytes
            self._head_bytes = limit
            if room > 0:
                _HttpTools.data_received(self, data[:room])
                if self.transport.is_closing() or self.transport.get_protocol() is not self:
                    return  # a 400 from uvicorn, or the connection became a WebSocket
            if self._awaiting_head and self._head_bytes == limit:
                self._refuse(431, self._guard.too_large)
                return
            data = data[room:]  # a head completed (on_headers_complete reset the count)
        if self._awaiting_head:
            self._head_bytes += len(data)
        if data:
            _HttpTools.data_received(self, data)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # uvicorn picks its own plain-text 503 app past limit_concurrency, here or when a
        # pipelined request's turn comes: the API's answer replaces it.
        if app is service_unavailable:
            app = too_many_connections
        _HttpTools._start_asgi_task(self, cycle, app)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._head_due = None
        _HttpTools.on_headers_complete(self)

    def on_message_complete(self) -> None:
        _HttpTools.on_message_complete(self)
        self._awaiting_head = True
        if self.cycle is not None and self.cycle.response_complete:
            self._arm_head_deadline()  # answered before its body ended: the next head is due

    def on_response_complete(self) -> None:
        _HttpTools.on_response_complete(self)
        if self._awaiting_head and self.cycle.response_complete:
            self._arm_head_deadline()

    # The guard
    def _arm_head_deadline(self) -> None:
        if self.transport.is_closing():
            return
        self._head_due = due = self.loop.time() + self._head_timeout_s
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(due, self._head_timer_fired)

    def _stop_head_timer(self) -> None:
        self._head_due = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timer_fired(self) -> None:
        self._head_timer = None
        due = self._head_due
        if due is None or not self._awaiting_head or self.transport.is_closing():
            return
        if self.loop.time() < due:  # moved on since this timer was set
            self._head_timer = self.loop.call_at(due, self._head_timer_fired)
            return
        if self._head_bytes:  # some of the request arrived
            self._refuse(408, self._guard.timed_out)
        else:
            self.transport.close()

    def _untaken(self) -> int:
        """Bytes written that the client has not taken: the transport's buffer, and what the
        kernel sends only as the client's window opens (it may take much before the
        transport's buffer moves)."""
        return self.transport.get_write_buffer_size() + _kernel_unacked(self.transport)

    def _send_timer_fired(self) -> None:
        self._send_timer = None
        buffered = self._untaken()
        if buffered < self._send_buffered:  # the client took some: it has another period
            self._send_buffered = buffered
            self._send_timer = self.loop.call_later(self._send_timeout_s, self._send_timer_fired)
            return
        if self.logger.isEnabledFor(logging.INFO):
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.info(
                "%sconnection dropped: the client took none of the response for %g s",
                prefix,
                self._send_timeout_s,
            )
        # Nothing can be answered to a client that reads nothing. The abort drops the buffer
        # (a close would wait for it to be sent) and calls connection_lost, which wakes a
        # send waiting for the buffer to drain and tells the app the client is gone.
        self.transport.abort()

    def _refuse(self, status: int, tail: bytes) -> None:
        self._awaiting_head = False
        self._stop_head_timer()
        if self.logger.isEnabledFor(logging.INFO):
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.info("%sHTTP %d: request headers refused", prefix, status)
        if self.cycle is None or self.cycle.response_complete:
            answer = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                answer.extend([name, b": ", value, b"\r\n"])
            answer.append(tail)
            self.transport.write(b"".join(answer))
        self.transport.close()
