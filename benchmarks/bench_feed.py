"""Extension benchmark: feed mode on a long infinite-scroll feed (real Chromium).

A page appends posts (a distinct small picture each, every tenth the same one) as it is scrolled,
screen after screen, each looked at until every image on it has its badge; a stub server answers
every /v1/lookup with a verdict. Prints what feed mode did and what it cost the page:

- `images`, `badged`: posts scrolled past, and badges on the last screen / its images;
- `lookups`, `max keys`: /v1/lookup requests and the most keys (SHA-256 + PDQ) in one;
- `fetched`: images the worker fetched (each at most once: a repeated picture is asked once);
- `long tasks`: tasks of 50 ms or more on the page's main thread (PerformanceObserver), their
  count, total and longest, while the feed was scrolled;
- `frame p90`: the 90th percentile of the page's frame intervals (requestAnimationFrame) while
  it scrolls by 40 px a frame with every badge in place (16.7 ms is one display frame);
- `scroll main ms/frame`, `scroll layout ms/frame`: the renderer's main-thread task time and
  layout time per scrolled frame (Chrome DevTools Protocol Performance.getMetrics), which still
  tell two runs apart when both keep up with the display.

    python benchmarks/bench_feed.py            # 600 posts, about half a minute
    python benchmarks/bench_feed.py --quick    # 160 posts: a smoke run
    python benchmarks/bench_feed.py --posts 1200
    python benchmarks/bench_feed.py --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from bench_panel import with_extension
from PIL import Image

STEP = 80  # posts appended per screen
SCROLLED_FRAMES = 120

PAGE = """<!doctype html><html><head><title>Feed</title>
<style>body { margin: 8px; } img { display: inline-block; width: 100px; height: 75px; margin: 4px; }
</style></head><body><div id="feed"></div><script>
  window.longTasks = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.longTasks.push(entry.duration);
  }).observe({ type: 'longtask' });
  window.append = (first, count) => {
    const feed = document.getElementById('feed');
    for (let n = first; n < first + count; n += 1) {
      const img = document.createElement('img');
      img.src = `/img/${n % 10 === 9 ? 9 : n}.png`;
      img.alt = `post ${n}`;
      feed.append(img);
    }
  };
  window.screenBadged = () => {
    const badged = new Set([...document.querySelectorAll('fakescope-badge')]
      .map((host) => host.shadowRoot?.querySelector('button')?.dataset.src));
    const shown = [...document.images].filter((img) => {
      const r = img.getBoundingClientRect();
      return r.bottom > 0 && r.top < innerHeight;
    });
    return { shown: shown.length, badged: shown.filter((img) => badged.has(img.currentSrc)).length,
      badges: badged.size };
  };
  window.scrollFrames = async (frames) => {
    window.scrollTo(0, 0);
    const gaps = [];
    let last = await new Promise(requestAnimationFrame);
    for (let i = 0; i < frames; i += 1) {
      window.scrollBy(0, 40);
      const now = await new Promise(requestAnimationFrame);
      gaps.push(now - last);
      last = now;
    }
    return gaps;
  };
</script></body></html>"""


def picture(n: int) -> bytes:
    rng = np.random.default_rng(n)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_site(fetched: list[str]) -> ThreadingHTTPServer:
    """The feed page and /img/N.png on localhost; the worker's fetches (no Referer) logged."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/feed.html":
                body, kind = PAGE.encode(), "text/html"
            elif self.path.startswith("/img/"):
                if self.headers.get("Referer") is None:
                    fetched.append(self.path)
                body, kind = picture(int(self.path[5:].removesuffix(".png"))), "image/png"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=600")
            self.end_headers()
            self.wfile.write(body)

    return serve(Handler)


def start_stub(keys: list[int]) -> ThreadingHTTPServer:
    """Answers /v1/lookup with a verdict for every SHA-256; logs the keys of each request."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def reply(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.reply({"status": "ready", "model": {"id": "bench"}})

        def do_POST(self) -> None:
            asked = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            shas = asked.get("sha256", [])
            keys.append(len(shas) + len(asked.get("pdq", [])))
            verdict = {"label": "real", "p_fake": 0.1, "decided_by": "model", "evidence": []}
            results = {s: {"sha256": s, **verdict} for s in shas}
            self.reply({"results": results, "near": []})

    return serve(Handler)


def wait_for(condition: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise RuntimeError("timed out")


def metrics(cdp: Any) -> dict[str, float]:
    """The page renderer's main-thread totals so far, in seconds (TaskDuration, LayoutDuration)."""
    values = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {name: float(values[name]) for name in ("TaskDuration", "LayoutDuration")}


def run(posts: int, workdir: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    fetched: list[str] = []
    keys: list[int] = []
    site, stub = start_site(fetched), start_stub(keys)
    origin = f"http://localhost:{site.server_address[1]}"
    try:
        with sync_playwright() as playwright:
            context, worker = with_extension(
                playwright, workdir, viewport={"width": 1000, "height": 800}
            )
            try:
                worker.evaluate(
                    "async (s) => chrome.storage.local.set({settings: s})",
                    {
                        "serverUrl": f"http://127.0.0.1:{stub.server_address[1]}",
                        "feedSites": [origin],
                    },
                )
                wait_for(
                    lambda: worker.evaluate(
                        "async () => (await chrome.scripting.getRegisteredContentScripts()).length"
                    ),
                    20,
                )
                page = context.new_page()
                page.goto(f"{origin}/feed.html")
                started = time.perf_counter()
                for first in range(0, posts, STEP):
                    page.evaluate("([f, c]) => window.append(f, c)", [first, STEP])
                    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
                    last = wait_for(
                        lambda: (
                            (s := page.evaluate("window.screenBadged()"))["badged"] == s["shown"]
                            and s
                        ),
                        60,
                    )
                elapsed = time.perf_counter() - started
                long_tasks = page.evaluate("window.longTasks")
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                before = metrics(cdp)
                gaps = sorted(page.evaluate("(n) => window.scrollFrames(n)", SCROLLED_FRAMES))
                scrolled = {k: v - before[k] for k, v in metrics(cdp).items()}
            finally:
                context.close()
    finally:
        site.shutdown()
        stub.shutdown()
    return {
        "images": posts,
        "distinct_pictures": len({n if n % 10 != 9 else 9 for n in range(posts)}),
        "seconds": round(elapsed, 1),
        "badged_last_screen": f"{last['badged']}/{last['shown']}",
        "badges": last["badges"],
        "lookups": len(keys),
        "max_keys": max(keys, default=0),
        "fetched": len(fetched),
        "fetched_twice": len(fetched) - len(set(fetched)),
        "long_tasks": len(long_tasks),
        "long_tasks_total_ms": round(sum(long_tasks)),
        "long_task_max_ms": round(max(long_tasks, default=0)),
        "frame_p50_ms": round(gaps[len(gaps) // 2], 1),
        "frame_p90_ms": round(gaps[int(0.9 * (len(gaps) - 1))], 1),
        "scroll_main_ms_per_frame": round(1000 * scrolled["TaskDuration"] / SCROLLED_FRAMES, 1),
        "scroll_layout_ms_per_frame": round(1000 * scrolled["LayoutDuration"] / SCROLLED_FRAMES, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="160 posts: a smoke run")
    parser.add_argument("--posts", type=int, default=600, help="posts scrolled past")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    posts = 2 * STEP if args.quick else STEP * max(1, -(-args.posts // STEP))
    with tempfile.TemporaryDirectory(prefix="fakescope-bench-feed-") as tmp:
        figures = run(posts, Path(tmp))
    figures["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    for name, value in figures.items():
        if name != "machine":
            print(f"{name:<28}{value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
