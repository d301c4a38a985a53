"""Fixtures for the browser tests: the real server as a process, a test page server, and
headless Chromium with the unpacked extension loaded (Playwright, sync API)."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import CHROMIUM_ARGS, REPO_ROOT, LiveServer, free_port
from panel_helpers import wait_until

# FAKESCOPE_EXTENSION_DIR runs the browser tests against another copy (e.g. an older build).
EXTENSION_DIR = Path(os.environ.get("FAKESCOPE_EXTENSION_DIR") or REPO_ROOT / "extension")
ADMIN_TOKEN = "fs-test-admin-token-0123456789abcdef"
PAGE_HOST = "localhost"  # pages on localhost, the server on 127.0.0.1: two different origins
MIGRATE_SNIPPET = "import sys; from server.db.migrate import upgrade; upgrade(sys.argv[1])"


def extension_id() -> str:
    """Chrome's ID for the manifest `key`: SHA-256 of the public key, first 32 hex digits as a-p."""
    import base64
    import hashlib

    key = json.loads((EXTENSION_DIR / "manifest.json").read_text())["key"]
    digest = hashlib.sha256(base64.b64decode(key)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


# --- the FakeScope server, as a real process -------------------------------------------


class ServerProcess(LiveServer):
    """`fakescope serve` with the tiny model (or none: provenance only) and its own SQLite
    file, on a free loopback port."""

    def __init__(self, data_dir: Path, model_dir: Path | None) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "FAKESCOPE_DATA_DIR": str(data_dir),
            "FAKESCOPE_DATABASE_URL": f"sqlite+aiosqlite:///{self.database_path}",
            "FAKESCOPE_MODEL": str(model_dir) if model_dir else "",
            "FAKESCOPE_QUANTIZATION": "none",
            "FAKESCOPE_DEVICE": "cpu",
            "FAKESCOPE_ADMIN_TOKEN": ADMIN_TOKEN,
            "FAKESCOPE_CORS_ORIGINS": f"chrome-extension://{extension_id()}",
            "FAKESCOPE_RATE_LIMIT": "off",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO_ROOT),
        }
        super().__init__(env, data_dir / "server.log")

    @property
    def url(self) -> str:
        return self.base

    @property
    def database_path(self) -> Path:
        return self.data_dir / "fakescope.db"

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-c", MIGRATE_SNIPPET, self.env["FAKESCOPE_DATABASE_URL"]],
            cwd=REPO_ROOT,
            env=self.env,
            check=True,
            timeout=120,
        )

    def analyze(self, data: bytes, name: str = "image.png") -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/v1/analyze", files={"file": (name, data, "image/png")}, timeout=120
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def request_count(self, method: str, route: str) -> float:
        """Requests the server counted for a route (Prometheus `fakescope_http_requests`)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith("fakescope_http_requests_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels.get("method") == method and labels.get("route") == route:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def analyses_in_db(self, sha256: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database_path) as conn:
            return conn.execute(
                "SELECT label, p_fake, decided_by, explanation FROM analyses WHERE sha256 = ?",
                (sha256,),
            ).fetchall()


def start_server(tmp_dir: Path, model_dir: Path | None) -> ServerProcess:
    server = ServerProcess(data_dir=tmp_dir, model_dir=model_dir)
    server.migrate()
    server.start(ready_within_s=120)
    return server


@pytest.fixture(scope="session")
def fakescope_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("server"), tiny_model_dir)
    try:
        yield server
    finally:
        server.stop()


# --- the test pages ------------------------------------------------------------------


def make_png(seed: int, size: tuple[int, int] = (240, 180)) -> bytes:
    """A distinct, deterministic PNG per seed (noise over a colour gradient)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    base = np.zeros((h, w, 3), dtype=np.uint8)
    base[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    base[..., 1] = (seed * 53) % 256
    base[..., 2] = np.linspace(255, 0, h, dtype=np.uint8)[:, None]
    noise = rng.integers(0, 40, size=(h, w, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(base + noise).save(out, format="PNG")
    return out.getvalue()


@dataclass
class LoggedRequest:
    path: str
    status: int
    referer: str | None
    origin: str | None
    cookie: str | None = None


@dataclass
class PageServer:
    """Serves the test pages and images on http://localhost:PORT and logs every request."""

    images: dict[str, bytes]
    pages: dict[str, str]
    port: int = field(default_factory=free_port)
    log: list[LoggedRequest] = field(default_factory=list)
    # Extra response headers of a page, by path (e.g. a Content-Security-Policy).
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    httpd: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        return f"http://{PAGE_HOST}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def requests_for(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.log if r.path == path]

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                referer = self.headers.get("Referer")
                origin = self.headers.get("Origin")
                status, body, kind = owner.respond(path, referer, origin)
                cookie = self.headers.get("Cookie")
                owner.log.append(LoggedRequest(path, status, referer, origin, cookie))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in owner.headers.get(path, {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def respond(self, path: str, referer: str | None, origin: str | None) -> tuple[int, bytes, str]:
        if path in self.pages:
            return 200, self.pages[path].encode(), "text/html; charset=utf-8"
        if path.startswith("/hotlink/"):
            # Hotlink protection: only this site's own pages may embed or fetch it.
            own = referer is not None and referer.startswith(self.origin + "/")
            if not own or (origin is not None and origin != self.origin):
                return 403, b"hotlinking refused", "text/plain"
        if path.startswith("/refused/"):
            return 403, b"refused, whoever asks", "text/plain"
        name = path.rsplit("/", 1)[-1]
        if name == "huge.png":
            return 200, HUGE_IMAGE, "image/png"
        if name == "broken.png":
            return 200, b"these bytes are not an image at all", "image/png"
        if name in self.images:
            return 200, self.images[name], "image/png"
        return 404, b"not found", "text/plain"

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


# Over the 25 MiB the extension sends (a PNG signature, then zeros: it is never decoded).
HUGE_IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(26 * 1024 * 1024)

FEED_PAGE = """<!doctype html><html><head><title>Feed</title>
<style>
  body { font-family: sans-serif; margin: 20px; }
  img { display: block; margin: 16px 0; }
</style>
</head><body>
<h1>A feed</h1>
<img id="known" src="/img/known.png" width="240" height="180" alt="known image">
<img id="unknown" src="/img/unknown.png" width="240" height="180" alt="unknown image">
<img id="hotlink" src="/hotlink/guarded.png" width="240" height="180" alt="guarded image">
<div style="height: 2400px">spacer</div>
<img id="lazy" src="/img/lazy.png" loading="lazy" width="240" height="180" alt="lazy image">
<div id="more"></div>
<script>
  // Infinite scroll: the page appends an image later, as feeds do.
  window.appendImage = (src, id) => {
    const img = document.createElement('img');
    img.src = src; img.id = id; img.width = 240; img.height = 180; img.alt = id;
    document.getElementById('more').append(img);
  };
</script>
</body></html>"""

HOSTILE_PAGE = """<!doctype html><html><head><title>Hostile</title>
<style>
  * { all: unset !important; }
  html, body { display: block !important; }
  img { display: block !important; margin: 40px !important; }
  .cover { display: block !important; position: fixed !important; inset: 0 !important;
           z-index: 2147483647 !important; background: rgba(255, 0, 255, 0.25) !important; }
  div, section, p, button, fakescope-overlay { z-index: 2147483647 !important;
           font-size: 3px !important; color: #ff0 !important; display: none !important; }
</style></head><body>
<div class="cover"></div>
<img id="target" src="/img/hostile.png" width="240" height="180" alt="target">
<p>Some text the page styles badly.</p>
</body></html>"""


@pytest.fixture(scope="session")
def page_server() -> Iterator[PageServer]:
    images = {
        name: make_png(seed)
        for seed, name in enumerate(
            [
                "known.png",
                "unknown.png",
                "guarded.png",
                "lazy.png",
                "later.png",
                "hostile.png",
                "check.png",
                "report.png",
                "down.png",
            ],
            start=1,
        )
    }
    pages = {"/feed.html": FEED_PAGE, "/hostile.html": HOSTILE_PAGE}
    pages["/plain.html"] = (
        "<!doctype html><html><head><title>Plain</title></head><body><h1>Images</h1>"
        + "".join(
            f'<img id="{n.split(".")[0]}" src="/img/{n}" width="240" height="180" alt="{n}">'
            for n in ("check.png", "report.png", "down.png")
        )
        + '<img id="guarded" src="/hotlink/guarded.png" width="240" height="180" alt="guarded">'
        + '<img id="broken" src="/img/broken.png" width="240" height="180" alt="broken">'
        + "</body></html>"
    )
    server = PageServer(images=images, pages=pages)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- Chromium with the extension -----------------------------------------------------


@dataclass
class Browser:
    context: Any
    worker: Any

    @property
    def id(self) -> str:
        """The loaded extension's ID, read off its service worker's address."""
        return str(self.worker.url).split("/")[2]

    def extension_url(self, path: str) -> str:
        return f"chrome-extension://{self.id}/{path}"

    def set_settings(self, **settings: Any) -> None:
        self.worker.evaluate(
            """async (s) => {
                const cur = (await chrome.storage.local.get('settings')).settings ?? {};
                await chrome.storage.local.set({settings: {...cur, ...s}});
            }""",
            settings,
        )

    def check_image(self, page: Any, src: str) -> dict[str, Any]:
        """What a right-click on the image and "Check with FakeScope" does."""
        result: dict[str, Any] = self.worker.evaluate(
            """async ([pageUrl, srcUrl]) => {
                const tabs = await chrome.tabs.query({});
                const tab = tabs.find((t) => t.url === pageUrl);
                if (!tab) throw new Error('no tab for ' + pageUrl);
                return self.fakescopeHandleMenuClick(
                  {menuItemId: 'fakescope-check', srcUrl, frameId: 0, pageUrl}, tab);
            }""",
            [page.url, src],
        )
        return result


@pytest.fixture
def extension_dir() -> Path:
    """The extension the browser loads; a test module may override it (e.g. a patched copy)."""
    return EXTENSION_DIR


@pytest.fixture
def browser_args() -> list[str]:
    """Extra Chromium flags; a test module may override it (e.g. --host-resolver-rules)."""
    return []


@pytest.fixture
def browser(
    chromium_path: str, tmp_path: Path, extension_dir: Path, browser_args: list[str]
) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    # Started per test, not once per process: while Playwright's sync driver runs, its event
    # loop counts as running in this thread, and every asyncio test the same xdist worker
    # runs after it fails ("Runner.run() cannot be called from a running event loop").
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium_path,
            headless=True,
            args=[
                f"--disable-extensions-except={extension_dir}",
                f"--load-extension={extension_dir}",
                *CHROMIUM_ARGS,
                *browser_args,
            ],
            viewport={"width": 1000, "height": 800},
        )
        try:
            worker = (
                context.service_workers[0]
                if context.service_workers
                else context.wait_for_event("serviceworker", timeout=20_000)
            )
            # A copy with the repository's manifest `key` gets its fixed ID; a store package
            # (no key) gets one from its folder.
            has_key = "key" in json.loads((extension_dir / "manifest.json").read_text())
            expected = extension_id() if has_key else r"[a-p]{32}"
            assert re.fullmatch(f"chrome-extension://{expected}/background.js", worker.url)
            yield Browser(context=context, worker=worker)
        finally:
            context.close()


@pytest.fixture
def until() -> Callable[..., Any]:
    """`until(condition, timeout_s, what)`: wait_until, for tests (they import nothing)."""
    return wait_until


@pytest.fixture
def admin_token() -> str:
    return ADMIN_TOKEN


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[[], ServerProcess]]:
    """Starts extra servers of the test's own (stopped at the end of the test). They run
    provenance only: no model to load, so they are up in a few seconds."""
    started: list[ServerProcess] = []

    def start() -> ServerProcess:
        server = start_server(tmp_path / f"server-{len(started)}", None)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- a stub FakeScope server, for what the real one cannot be made to do on demand ----------


@dataclass
class StubServer:
    """Answers like a FakeScope server, instantly or after `delay_s`, with `analysis` (a trained
    model's verdict by default) for every upload; `token`, when set, is required on /v1/*.
    Between `hold()` and `release()` uploads wait (up to a minute): a test sees a loading state
    for as long as it needs, however slow the machine."""

    port: int = field(default_factory=free_port)
    delay_s: float = 0.0
    released: threading.Event = field(default_factory=threading.Event)
    token: str | None = None
    analysis: dict[str, Any] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    # "METHOD /path" → a function that answers the request itself (it gets the handler).
    routes: dict[str, Callable[[Any], None]] = field(default_factory=dict)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, sha256: str) -> dict[str, Any]:
        return {
            "sha256": sha256,
            "label": "real",
            "p_fake": 0.12,
            "decided_by": "model",
            "evidence": [],
            "explanation": "Consistent sensor noise and natural lighting.",
            "model": {
                "id": "forensic-7b",
                "revision": "r1",
                "quantization": "nf4",
                "untrained": False,
            },
            "untrained": False,
            "flags": [],
            **self.analysis,
        }

    def start(self) -> None:
        import hashlib
        import json

        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                kind = "application/problem+json" if status >= 400 else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                owner.requests.append(f"GET {self.path}")
                if route := owner.routes.get(f"GET {self.path.split('?', 1)[0]}"):
                    route(self)
                    return
                self.reply(200, {"status": "ready", "model": {"id": "forensic-7b"}})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                owner.requests.append(f"POST {path}")
                if owner.token and self.headers.get("Authorization") != f"Bearer {owner.token}":
                    detail = "unknown or revoked API token"
                    self.reply(401, {"title": "Unauthorized", "status": 401, "detail": detail})
                    return
                if route := owner.routes.get(f"POST {path}"):
                    self.body = body
                    route(self)
                    return
                if path == "/v1/lookup":
                    self.reply(200, {"results": {}, "near": []})
                    return
                time.sleep(owner.delay_s)
                owner.released.wait(60)
                self.reply(200, owner.answer(hashlib.sha256(body).hexdigest()))

        self.released.set()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def hold(self) -> None:
        """Uploads wait from now on, until `release()`."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.released.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def stub_server() -> Iterator[StubServer]:
    server = StubServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
