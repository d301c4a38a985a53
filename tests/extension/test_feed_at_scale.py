"""Feed mode at the scale of a real social-media feed (real Chromium, a stub server that knows
every image): an infinite scroll past hundreds of images, images a virtual list removes before
their lookup goes out, rows recycled with new sources, images that never load.

What each test counts is what the extension did: the worker's own requests for an image (no
Referer: the page's <img> sends its page as one), and the /v1/lookup requests the stub server got
(how many, how many keys each)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from feed_helpers import switch_feed_mode_on
from live_server import free_port
from PIL import Image

pytestmark = pytest.mark.browser

PAGE_HOST = "localhost"

# A feed: `append(first, count)` adds posts /img/N.png (each its own picture) at the end, as an
# infinite scroll does; `vanishing(first, count)` adds posts that the page takes out again as soon
# as they come near the screen (a virtual list scrolled past them); `keep(first)` one that stays.
FEED = """<!doctype html><html><head><title>Scale</title>
<style>body { margin: 8px; } img { display: inline-block; width: 100px; height: 75px; margin: 4px; }
</style></head><body><div id="feed"></div><script>
  const feed = document.getElementById('feed');
  const post = (n) => {
    const img = document.createElement('img');
    img.src = `/img/${n}.png`; img.alt = `post ${n}`; img.id = `p${n}`;
    return img;
  };
  // Every tenth post shows the same picture (a meme shared over and over).
  window.append = (first, count) => {
    for (let n = first; n < first + count; n += 1) feed.append(post(n % 10 === 9 ? 9 : n));
  };
  // Loaded first (complete, as a cached picture is), taken out just after the first sight of it
  // (feed mode's observer sees it in the same rendering step as the page's).
  const takeOut = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) setTimeout(() => entry.target.remove(), 50);
    }
  }, { rootMargin: '200px' });
  const loaded = (img) => new Promise((done) => { img.onload = img.onerror = () => done(img); });
  window.vanishing = async (first, count) => {
    const images = [];
    for (let n = first; n < first + count; n += 1) images.push(post(n));
    await Promise.all(images.map(loaded));
    feed.append(...images);
    images.forEach((img) => takeOut.observe(img));
  };
  window.keep = async (n) => {
    const img = post(n);
    await loaded(img);
    feed.append(img);
  };
  // A virtual list: a few rows whose <img> elements show another post each time it scrolls.
  window.rows = (count) => {
    for (let k = 0; k < count; k += 1) {
      const img = post(0);
      img.id = `row${k}`;
      img.removeAttribute('src');
      feed.append(img);
    }
  };
  window.recycle = (round, count) => {
    for (let k = 0; k < count; k += 1) {
      const img = document.getElementById(`row${k}`);
      const n = 3000 + round * count + k;
      if (k % 2) img.src = `/img/${n}.png`;
      else img.srcset = `/img/${n}.png 1x`;
    }
  };
  // Detached posts, held only weakly by the page (window.gc: --js-flags=--expose-gc).
  let weak = [];
  window.dropAll = () => {
    weak = [...document.images].map((img) => new WeakRef(img));
    feed.replaceChildren();
    return weak.length;
  };
  window.stillAlive = async () => {
    for (let i = 0; i < 5; i += 1) {
      gc();
      await new Promise((done) => setTimeout(done, 50));
    }
    return weak.filter((ref) => ref.deref()).length;
  };
  // Whether every image on the screen carries a badge for what it shows now.
  window.screenBadged = () => {
    const badged = new Map([...document.querySelectorAll('fakescope-badge')]
      .map((host) => host.shadowRoot?.querySelector('button'))
      .filter(Boolean)
      .map((button) => [button.dataset.src, button]));
    const onScreen = [...document.images].filter((img) => {
      const r = img.getBoundingClientRect();
      return r.bottom > 0 && r.top < innerHeight && r.width > 0;
    });
    const missing = onScreen.filter((img) => !badged.has(img.currentSrc));
    return { onScreen: onScreen.length, missing: missing.map((img) => img.id) };
  };
  window.badgeFor = (id) => {
    const img = document.getElementById(id);
    const next = img.nextSibling;
    if (next?.localName === 'fakescope-badge') {
      const button = next.shadowRoot.querySelector('button');
      return { src: button.dataset.src, label: button.dataset.label ?? null,
        current: img.currentSrc };
    }
    return { src: null, label: null, current: img.currentSrc };
  };
</script></body></html>"""


def picture(n: int) -> bytes:
    """A small distinct PNG per post (shown at 100 by 75 px)."""
    rng = np.random.default_rng(n)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class FeedSite:
    """Serves the feed page and /img/N.png for any N, and logs who asked
    for each image: the page's <img> sends its page as Referer, the worker no Referer."""

    port: int = field(default_factory=free_port)
    worker_fetches: list[str] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        return f"http://{PAGE_HOST}:{self.port}"

    def fetched_by_worker(self, path: str) -> int:
        return self.worker_fetches.count(path)

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if self.headers.get("Referer") is None and path != "/feed.html":
                    owner.worker_fetches.append(path)
                if path == "/feed.html":
                    status, kind, body = 200, "text/html; charset=utf-8", FEED.encode()
                elif (
                    path.startswith("/img/")
                    and path.removeprefix("/img/").removesuffix(".png").isdigit()
                ):
                    n = int(path.removeprefix("/img/").removesuffix(".png"))
                    status, kind, body = 200, "image/png", picture(n)
                else:
                    status, kind, body = 404, "text/plain", b"not found"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "max-age=600")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def feed_site() -> Iterator[FeedSite]:
    site = FeedSite()
    site.start()
    try:
        yield site
    finally:
        assert site.httpd is not None
        site.httpd.shutdown()
        site.httpd.server_close()


@dataclass
class Lookups:
    """The /v1/lookup requests the stub server answered: the SHA-256s and PDQ hashes of each."""

    requests: list[tuple[list[str], list[str]]] = field(default_factory=list)

    @property
    def shas(self) -> list[str]:
        return [sha for shas, _ in self.requests for sha in shas]


@pytest.fixture
def lookups(stub_server: Any) -> Lookups:
    """The stub server knows every image (a verdict for each SHA-256) and logs each lookup."""
    log = Lookups()

    def lookup(handler: Any) -> None:
        body = json.loads(handler.body)
        log.requests.append((body.get("sha256", []), body.get("pdq", [])))
        results = {s: stub_server.answer(s) for s in body.get("sha256", [])}
        handler.reply(200, {"results": results, "near": []})

    stub_server.routes["POST /v1/lookup"] = lookup
    return log


def open_feed(browser: Any, stub_server: Any, feed_site: FeedSite, until: Any) -> Any:
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, feed_site.origin, until)
    page = browser.context.new_page()
    page.goto(f"{feed_site.origin}/feed.html")
    return page


def test_an_infinite_scroll_keeps_its_badges_past_hundreds_of_images_and_batches_its_lookups(
    until: Any, browser: Any, stub_server: Any, lookups: Lookups, feed_site: FeedSite
) -> None:
    page = open_feed(browser, stub_server, feed_site, until)
    total = 0
    # Screen after screen, each looked at until its badges are there; the feed grows as it goes.
    while total < 480:
        page.evaluate("([first, count]) => window.append(first, count)", [total, 80])
        total += 80
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        until(
            lambda: not page.evaluate("window.screenBadged()")["missing"],
            30,
            what=f"a badge on every image on the screen, {total} images in",
        )

    assert len(lookups.requests) <= total // 8, "lookups go in batches"
    for shas, pdqs in lookups.requests:
        assert len(shas) + len(pdqs) <= 500
    assert len(lookups.shas) == len(set(lookups.shas)), "no image looked up twice"
    fetched = [p for p in feed_site.worker_fetches if p.startswith("/img/")]
    assert len(fetched) == len(set(fetched)), "no image fetched twice"


def test_images_taken_out_before_their_lookup_are_neither_fetched_nor_hashed(
    until: Any, browser: Any, stub_server: Any, lookups: Lookups, feed_site: FeedSite
) -> None:
    page = open_feed(browser, stub_server, feed_site, until)
    page.evaluate("window.vanishing(1000, 10)")
    page.evaluate("window.keep(2000)")
    until(lambda: page.evaluate("window.badgeFor('p2000')")["src"], what="the kept post's badge")

    gone = [f"/img/{n}.png" for n in range(1000, 1010)]
    assert page.evaluate("document.querySelectorAll('img').length") == 1
    assert [p for p in gone if feed_site.fetched_by_worker(p)] == []
    assert len(lookups.shas) == 1


def test_recycled_rows_badge_what_they_show_now(
    until: Any, browser: Any, stub_server: Any, feed_site: FeedSite
) -> None:
    import hashlib
    import time

    labels = {
        hashlib.sha256(picture(n)).hexdigest(): ("fake" if n % 2 else "real")
        for n in range(3000, 3200)
    }

    def lookup(handler: Any) -> None:
        time.sleep(0.4)  # answers arrive after the rows moved on
        asked = json.loads(handler.body).get("sha256", [])
        results = {s: {**stub_server.answer(s), "label": labels.get(s, "uncertain")} for s in asked}
        handler.reply(200, {"results": results, "near": []})

    stub_server.routes["POST /v1/lookup"] = lookup
    page = open_feed(browser, stub_server, feed_site, until)
    page.evaluate("window.rows(8)")
    for round_ in range(8):
        page.evaluate("([r, c]) => window.recycle(r, c)", [round_, 8])
        page.wait_for_timeout(150 if round_ % 3 else 700)

    def settled() -> bool:
        rows = [page.evaluate(f"window.badgeFor('row{k}')") for k in range(8)]
        return all(r["src"] == r["current"] and r["current"] for r in rows) and rows

    rows = until(settled, 20, what="every row's badge for its current picture")
    for row in rows:
        n = int(row["current"].rsplit("/", 1)[1].removesuffix(".png"))
        assert row["label"] == ("fake" if n % 2 else "real"), row
    stale = page.evaluate("""() => [...document.querySelectorAll('fakescope-badge')]
        .map((host) => host.shadowRoot.querySelector('button').dataset.src)
        .filter((src) => ![...document.images].some((img) => img.currentSrc === src))""")
    assert stale == []


@pytest.fixture
def browser_args() -> list[str]:
    return ["--js-flags=--expose-gc"]


def test_images_taken_out_of_the_page_are_not_kept_alive(
    until: Any, browser: Any, stub_server: Any, lookups: Lookups, feed_site: FeedSite
) -> None:
    page = open_feed(browser, stub_server, feed_site, until)
    page.evaluate("window.append(4000, 60)")
    until(lambda: not page.evaluate("window.screenBadged()")["missing"], 30, what="badges")
    assert page.evaluate("window.dropAll()") == 60
    page.wait_for_timeout(500)
    assert page.evaluate("window.stillAlive()") == 0


def test_images_the_workers_full_queue_turned_away_are_asked_again(
    until: Any, browser: Any, stub_server: Any, lookups: Lookups, feed_site: FeedSite
) -> None:
    """Eight feeds at once, 48 new pictures each, while the server holds every lookup: 384
    images for a worker whose lookup queue holds 256. Those it had no room for (and any whose
    lookup timed out meanwhile) are asked again later; each page ends with every picture badged
    (before, they were skipped for good)."""
    release = threading.Event()
    answer = stub_server.routes["POST /v1/lookup"]

    def slow_lookup(handler: Any) -> None:
        release.wait(10)  # under the extension's 15-s lookup timeout
        answer(handler)

    stub_server.routes["POST /v1/lookup"] = slow_lookup
    pages = [open_feed(browser, stub_server, feed_site, until)]
    pages += [browser.context.new_page() for _ in range(7)]
    for k, page in enumerate(pages):
        if k:
            page.goto(f"{feed_site.origin}/feed.html")
        page.bring_to_front()  # hidden tabs see nothing near their viewport
        page.evaluate("([first, count]) => window.append(first, count)", [5000 + 100 * k, 48])
        page.wait_for_timeout(300)
    pictures = {
        f"/img/{5000 + 100 * k + n}.png" for k in range(8) for n in range(48) if n % 10 != 9
    }
    # Every picture fetched and hashed by the worker, so every lookup key was queued or refused.
    until(lambda: pictures <= set(feed_site.worker_fetches), 30, what="the worker's fingerprints")
    release.set()
    for k, page in enumerate(pages):
        page.bring_to_front()  # a hidden tab draws no badges (they are placed in frames)
        until(
            lambda page=page: not page.evaluate("window.screenBadged()")["missing"],
            60,
            what=f"a badge on every picture of feed {k}",
        )


def test_a_lookup_the_server_turned_away_is_asked_again(
    until: Any, browser: Any, stub_server: Any, lookups: Lookups, feed_site: FeedSite
) -> None:
    """The server answers the first two lookups 503 (a restart, an overloaded database): the
    page says so once, and its pictures are looked up again and badged."""
    answer = stub_server.routes["POST /v1/lookup"]
    refused: list[int] = []

    def flaky_lookup(handler: Any) -> None:
        if len(refused) < 2:
            refused.append(1)
            handler.reply(
                503,
                {
                    "type": "urn:fakescope:problem:database-unavailable",
                    "title": "Service unavailable",
                    "status": 503,
                    "detail": "the database could not be reached",
                },
            )
            return
        answer(handler)

    stub_server.routes["POST /v1/lookup"] = flaky_lookup
    page = open_feed(browser, stub_server, feed_site, until)
    page.evaluate("([first, count]) => window.append(first, count)", [6000, 40])
    until(
        lambda: not page.evaluate("window.screenBadged()")["missing"],
        60,
        what="a badge on every picture after the server came back",
    )
    assert len(refused) == 2
    assert page.locator("fakescope-notice").count() == 1  # the failure was said, once
