"""Extension benchmark: how long a right-click check takes to show its verdict (real Chromium).

Every result panel is an extension page framed over the image (extension/README.md): the
verdict shows after the check itself (image bytes fetched by the service worker, the
server's answer) plus the panel's own cost (an iframe load, a storage read, drawing). This
measures both, in one run, against a real `fakescope serve` (provenance only: no model, so
the server's part is as small as it gets and the extension's part stands out):

- `check`: from the menu handler's start to its result in the worker;
- `panel`: from the same start to the verdict visible in the panel page;
- `panel - check`: what showing the panel adds (the panel opens while the check runs, so
  this is what is left after the answer).

Each round checks N new images (a new PNG each: nothing cached anywhere), then the same N
again (answered from the extension's own cache: no server request). Prints the median and
p90 of each and the ratio panel / check.

    python benchmarks/bench_panel.py            # 30 images, about half a minute
    python benchmarks/bench_panel.py --quick    # a smoke run (CI runs it)
    python benchmarks/bench_panel.py --json out.json
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
EXTENSION_DIR = REPO_ROOT / "extension"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
PAGE_HOST = "localhost"  # the page on localhost, the server on 127.0.0.1: two origins

CHECK = """async ([pageUrl, srcUrl]) => {
    const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
    if (!tab) throw new Error('no tab for ' + pageUrl);
    return self.fakescopeHandleMenuClick(
        {menuItemId: 'fakescope-check', srcUrl, frameId: 0, pageUrl}, tab);
}"""


def extension_id() -> str:
    """Chrome's ID for the manifest `key`: SHA-256 of the public key, 32 hex digits as a-p."""
    key = json.loads((EXTENSION_DIR / "manifest.json").read_text())["key"]
    digest = hashlib.sha256(base64.b64decode(key)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


class Pages:
    """Serves /page/N.html (one image, /img/N.png) on localhost."""

    def __init__(self, count: int) -> None:
        self.images = {f"/img/{i}.png": png(i) for i in range(count)}
        images = self.images

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path in images:
                    body, kind = images[self.path], "image/png"
                elif self.path.startswith("/page/"):
                    n = self.path.removeprefix("/page/").removesuffix(".html")
                    body = (
                        f'<!doctype html><html><body><img src="/img/{n}.png" width="240" '
                        'height="180" alt="picture"></body></html>'
                    ).encode()
                    kind = "text/html"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://{PAGE_HOST}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`fakescope serve`, provenance only, its own SQLite file; returns once ready."""
    env = {
        **os.environ,
        "FAKESCOPE_DATA_DIR": str(data_dir),
        "FAKESCOPE_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'fakescope.db'}",
        "FAKESCOPE_MODEL": "",
        "FAKESCOPE_CORS_ORIGINS": f"chrome-extension://{extension_id()}",
        "FAKESCOPE_RATE_LIMIT": "off",
        "PYTHONPATH": str(REPO_ROOT),
    }
    subprocess.run(
        [sys.executable, "-m", "fakescope.cli", "db", "upgrade"], env=env, check=True, cwd=REPO_ROOT
    )
    port = free_port()
    log = (data_dir / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "fakescope.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server did not start; see {data_dir / 'server.log'}")


def chromium() -> str:
    found = next((p for p in CHROMIUM_CANDIDATES if Path(p).is_file()), None)
    found = found or shutil.which("chromium")
    if found is None:
        raise SystemExit("Chromium is not installed (apt-get install chromium)")
    return found


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered), 1), "p90_ms": round(p90, 1)}


def measure(worker: Any, context: Any, pages: Pages, count: int) -> dict[str, list[float]]:
    """One check per page: ms to the check's result and to the verdict in the panel."""
    times: dict[str, list[float]] = {"check": [], "panel": [], "extra": []}
    panel_page = f"chrome-extension://{extension_id()}/panel/frame-panel.html"
    for i in range(count):
        page = context.new_page()
        try:
            page.goto(f"{pages.base}/page/{i}.html")
            started = time.perf_counter()
            result = worker.evaluate(CHECK, [page.url, f"{pages.base}/img/{i}.png"])
            checked = time.perf_counter()
            if not result.get("ok"):
                raise RuntimeError(f"check {i} failed: {result}")
            while not (frames := [f for f in page.frames if f.url.startswith(panel_page)]):
                page.wait_for_timeout(1)
            frames[0].wait_for_selector(".verdict", state="visible", timeout=30_000)
            shown = time.perf_counter()
        finally:
            page.close()
        times["check"].append(1000 * (checked - started))
        times["panel"].append(1000 * (shown - started))
        times["extra"].append(1000 * (shown - checked))
    return times


def with_extension(playwright: Any, workdir: Path, **options: Any) -> tuple[Any, Any]:
    """Headless Chromium with the extension loaded, in a profile under `workdir`: its browser
    context and the extension's service worker (`options`: more launch options, a viewport)."""
    context = playwright.chromium.launch_persistent_context(
        str(workdir / "profile"),
        executable_path=chromium(),
        headless=True,
        args=[
            f"--disable-extensions-except={EXTENSION_DIR}",
            f"--load-extension={EXTENSION_DIR}",
            *CHROMIUM_ARGS,
        ],
        **options,
    )
    worker = (
        context.service_workers[0]
        if context.service_workers
        else context.wait_for_event("serviceworker", timeout=20_000)
    )
    return context, worker


def run(count: int, workdir: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    pages = Pages(count)
    process, server = start_server(workdir)
    try:
        with sync_playwright() as playwright:
            context, worker = with_extension(playwright, workdir)
            try:
                worker.evaluate(
                    "async (url) => chrome.storage.local.set({settings: {serverUrl: url}})", server
                )
                measure(worker, context, pages, min(3, count))  # warm-up: browser, server
                new = measure(worker, context, pages, count)  # images 0..count-1, once more:
                cached = measure(worker, context, pages, count)  # now cached in the extension
            finally:
                context.close()
    finally:
        process.terminate()
        process.wait(timeout=15)
        pages.stop()
    # The warm-up checked images 0..2 already: the "new" round's first ones are not new to
    # the server or the extension. Leave them out of "new".
    skip = min(3, count) if count > 3 else 0
    figures: dict[str, Any] = {}
    for name, times in (("new", {k: v[skip:] for k, v in new.items()}), ("cached", cached)):
        figures[name] = {key: summary(values) for key, values in times.items()}
        figures[name]["ratio_panel_to_check"] = round(
            statistics.median(times["panel"]) / statistics.median(times["check"]), 2
        )
        figures[name]["count"] = len(times["panel"])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few images: a smoke run")
    parser.add_argument("--images", type=int, default=30, help="images per round")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    count = 5 if args.quick else max(4, args.images)
    with tempfile.TemporaryDirectory(prefix="fakescope-bench-panel-") as tmp:
        figures = run(count, Path(tmp))
    figures["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    print(f"{'images':<8}{'what':<16}{'median ms':>10}{'p90 ms':>9}")
    for name in ("new", "cached"):
        for key, label in (("check", "check"), ("panel", "panel"), ("extra", "panel - check")):
            row = figures[name][key]
            print(f"{name:<8}{label:<16}{row['median_ms']:>10.1f}{row['p90_ms']:>9.1f}")
        print(f"{name:<8}{'panel / check':<16}{figures[name]['ratio_panel_to_check']:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
