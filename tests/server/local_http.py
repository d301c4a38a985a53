"""A tiny HTTP server on 127.0.0.1 for URL-fetch tests (redirects, big bodies, lying headers)."""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


class Site:
    def __init__(self, image: bytes) -> None:
        self.image = image
        self.hosts_seen: list[str] = []
        self.accept_encodings: list[str] = []
        self.base = ""


def _gzip(chunks: Iterator[bytes]) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    return b"".join(packer.compress(chunk) for chunk in chunks) + packer.flush()


# 256 MiB of zeros in about 256 KB: what a hostile site sends as a "gzip-encoded image".
GZIP_BOMB = _gzip(b"\0" * (1 << 20) for _ in range(256))


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str, length: bool = True) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            site.hosts_seen.append(self.headers.get("Host", ""))
            site.accept_encodings.append(self.headers.get("Accept-Encoding", ""))
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path == "/image":  # a PNG that claims to be HTML: content decides
                self._send(200, site.image, "text/html")
            elif url.path == "/html-as-png":
                self._send(200, b"<html><script>alert(1)</script></html>", "image/png")
            elif url.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", query["to"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/chain":
                left = int(query["n"][0])
                target = f"/chain?n={left - 1}" if left > 0 else "/image"
                self.send_response(301)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/endless":  # no Content-Length: only the streaming cap stops it
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                try:
                    for _ in range(10_000):
                        self.wfile.write(b"\0" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif url.path == "/declared-huge":
                self.send_response(200)
                self.send_header("Content-Length", str(10**12))
                self.end_headers()
            elif url.path == "/slow":
                time.sleep(float(query.get("s", ["3"])[0]))
                self._send(200, site.image, "image/png")
            elif url.path in ("/gzip-bomb", "/gzip-image"):  # sent whatever the client accepts
                body = GZIP_BOMB if url.path == "/gzip-bomb" else _gzip(iter([site.image]))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Encoding", query.get("as", ["gzip"])[0])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)
            elif url.path == "/missing":
                self._send(404, b"nope", "text/plain")
            else:
                self._send(404, b"", "text/plain")

    return Handler


@contextmanager
def _serve(image: bytes, tls: ssl.SSLContext | None) -> Iterator[Site]:
    """The site on a free port of 127.0.0.1, over HTTPS when given a TLS context."""
    site = Site(image)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "http" if tls is None else "https"
    site.base = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


def serve_site(image: bytes) -> AbstractContextManager[Site]:
    return _serve(image, None)


def self_signed_certificate(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A certificate for `hostname` (and its key), made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={hostname}",
            "-addext",
            f"subjectAltName=DNS:{hostname}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def serve_tls_site(image: bytes, cert: Path, key: Path) -> AbstractContextManager[Site]:
    """The same site over HTTPS on 127.0.0.1 with the given certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return _serve(image, context)
