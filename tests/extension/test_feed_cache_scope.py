"""What a feed badge may show of an image address: only what that page's own feed lookup (the
worker's request, without cookies or Referer) reads there. A verdict learnt in another context (a
right-click check of a cookie-only image in another site's frame, read with that site's cookies)
is never shown in a badge, which the page reads; a page's own reads keep answering its next
lookups (scrolling, a re-visit) from the cache.

Pages on the internet are needed: Chromium maps `public.test` (the hostile page, feed mode on)
and `other.test` (a site that shows its images only to a signed-in user: a cookie) to
127.0.0.1, and the extension loaded is a copy whose manifest also grants both, as a user
switching feed mode on for `public.test` and allowing `other.test` under *Image sites* would
(prompts no test can click)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from feed_helpers import knows_every_image, switch_feed_mode_on
from live_server import REPO_ROOT, free_port
from panel_helpers import panel

pytestmark = pytest.mark.browser

SOURCE_EXTENSION = Path(os.environ.get("FAKESCOPE_EXTENSION_DIR") or REPO_ROOT / "extension")
SESSION = "session=s1"


@pytest.fixture
def extension_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "extension"
    shutil.copytree(SOURCE_EXTENSION, copy, ignore=shutil.ignore_patterns("tests"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["host_permissions"] += ["http://public.test/*", "http://other.test/*"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.fixture
def browser_args() -> list[str]:
    return ["--host-resolver-rules=MAP public.test 127.0.0.1, MAP other.test 127.0.0.1"]


@dataclass
class Request:
    path: str
    status: int
    cookie: str | None
    referer: str | None


@dataclass
class SignedInSite:
    """`other.test`: a page with one image, which it serves only with the session cookie."""

    image: bytes
    port: int = field(default_factory=free_port)
    log: list[Request] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        return f"http://other.test:{self.port}"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                cookie = self.headers.get("Cookie")
                if self.path == "/frame.html":
                    status, kind = 200, "text/html"
                    body = (
                        b'<!doctype html><title>Inbox</title><body style="margin: 0">'
                        b'<img id="pic" src="/private.png" width="240" height="180" alt="pic">'
                    )
                elif self.path == "/private.png" and SESSION in (cookie or ""):
                    status, kind, body = 200, "image/png", owner.image
                else:
                    status, kind, body = 403, "text/plain", b"sign in first"
                owner.log.append(Request(self.path, status, cookie, self.headers.get("Referer")))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def worker_requests(self, since: int) -> list[Request]:
        """The extension's requests for the image since entry `since` of the log (the page's
        own <img> sends its Referer; the worker's plain request none)."""
        return [r for r in self.log[since:] if r.path == "/private.png" and r.referer is None]


@pytest.fixture
def signed_in_site(page_server: Any) -> Iterator[SignedInSite]:
    site = SignedInSite(image=page_server.images["report.png"])
    site.start()
    try:
        yield site
    finally:
        assert site.httpd is not None
        site.httpd.shutdown()
        site.httpd.server_close()


def public_site(page_server: Any) -> str:
    return f"http://public.test:{page_server.port}"


# The hostile page shows images of its choice: each is loaded (or refused) before it goes into the
# page, so feed mode finds them all complete and looks them up in one batch.
HOSTILE_FEED = """<!doctype html><html><head><title>Hostile feed</title>
<style>img { display: block; width: 240px; height: 180px; margin: 16px; }</style></head>
<body><h1>Posts</h1><script>
  window.showImages = (sources) => Promise.all(sources.map((src) => new Promise((done) => {
    const img = new Image();
    img.alt = src;
    img.onload = img.onerror = () => done(img);
    img.src = src;
  }))).then((images) => { document.body.append(...images); return images.length; });
</script>
%s
</body></html>"""


def embedding(frame_url: str) -> str:
    """A small embedded frame: its image's panel opens in the top frame."""
    return f'<iframe id="embed" src="{frame_url}" width="300" height="200"></iframe>'


CHECK_IN_FRAME = """async ([pageUrl, frameUrl, srcUrl]) => {
    const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
    const frames = await chrome.scripting.executeScript(
      {target: {tabId: tab.id, allFrames: true}, func: () => location.href});
    const frame = frames.find((f) => f.result === frameUrl);
    if (!frame) throw new Error('no frame at ' + frameUrl);
    return self.fakescopeHandleMenuClick(
      {menuItemId: 'fakescope-check', srcUrl, frameId: frame.frameId, frameUrl, pageUrl}, tab);
}"""


def check_in_frame(browser: Any, page: Any, frame_url: str, src: str) -> dict[str, Any]:
    """The user's right-click on the frame's image and "Check with FakeScope"."""
    result: dict[str, Any] = browser.worker.evaluate(CHECK_IN_FRAME, [page.url, frame_url, src])
    return result


def badges(page: Any) -> dict[str, str | None]:
    """What the page reads of FakeScope's badges (their roots are open): image → label."""
    found: dict[str, str | None] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('fakescope-badge')]
            .map((host) => host.shadowRoot.querySelector('button'))
            .map((badge) => [badge.dataset.src, badge.dataset.label ?? null]))"""
    )
    return found


def show_and_settle(page: Any, until: Any, private: str, control: str) -> dict[str, str | None]:
    """The page shows the signed-in site's image and one of its own, together: once its own has
    its badge, feed mode has had the answer for both (one lookup)."""
    assert page.evaluate("(s) => showImages(s)", [private, control]) == 2
    until(lambda: control in badges(page), what="the badge on the page's own image")
    return badges(page)


def test_a_verdict_checked_in_another_sites_frame_is_no_badge_on_a_hostile_feed_page(
    until: Any, browser: Any, stub_server: Any, page_server: Any, signed_in_site: SignedInSite
) -> None:
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    browser.context.add_cookies([{"name": "session", "value": "s1", "url": signed_in_site.origin}])
    switch_feed_mode_on(browser, public_site(page_server), until)
    private = f"{signed_in_site.origin}/private.png"
    frame_url = f"{signed_in_site.origin}/frame.html"

    # The user checks the image in the signed-in site's frame, on some page: the worker reads it
    # as the frame's <img> would, with the site's cookie.
    page_server.pages["/embeds-inbox.html"] = (
        f"<!doctype html><title>Blog</title>{embedding(frame_url)}"
    )
    blog = browser.context.new_page()
    blog.goto(page_server.url("/embeds-inbox.html"))
    checked = check_in_frame(browser, blog, frame_url, private)
    assert checked["ok"] and checked["via"] == "worker-referer", checked
    assert panel(blog).locator(".verdict").get_attribute("data-label") == "real"

    # A page with feed mode on names that address in an <img> of its own.
    page_server.pages["/hostile-feed.html"] = HOSTILE_FEED % ""
    hostile = browser.context.new_page()
    hostile.goto(f"{public_site(page_server)}/hostile-feed.html")
    since = len(signed_in_site.log)
    own = f"{public_site(page_server)}/img/known.png"

    shown = show_and_settle(hostile, until, private, own)

    assert shown[own] == "real", "feed mode works on this page"
    assert private not in shown, "the page reads no verdict for an image it could not fetch"
    # Its lookup asked as an uncached image is asked, without the cookie, and was refused.
    asked = signed_in_site.worker_requests(since)
    assert [(r.status, r.cookie) for r in asked] == [(403, None)]


def test_a_check_in_a_frame_of_a_hostile_feed_page_gives_its_badges_nothing(
    until: Any, browser: Any, stub_server: Any, page_server: Any, signed_in_site: SignedInSite
) -> None:
    """The hostile page embeds the signed-in site and gets the user to check its image: the
    panel opens in the hostile top page (the frame is small), whose badges must not learn it."""
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    browser.context.add_cookies([{"name": "session", "value": "s1", "url": signed_in_site.origin}])
    switch_feed_mode_on(browser, public_site(page_server), until)
    private = f"{signed_in_site.origin}/private.png"
    frame_url = f"{signed_in_site.origin}/frame.html"
    page_server.pages["/hostile-embed.html"] = HOSTILE_FEED % embedding(frame_url)
    hostile = browser.context.new_page()
    hostile.goto(f"{public_site(page_server)}/hostile-embed.html")
    hostile.frame_locator("#embed").locator("#pic").wait_for()

    checked = check_in_frame(browser, hostile, frame_url, private)
    assert checked["ok"] and checked["via"] == "worker-referer", checked
    assert panel(hostile).locator(".verdict").get_attribute("data-label") == "real"
    since = len(signed_in_site.log)
    own = f"{public_site(page_server)}/img/known.png"

    shown = show_and_settle(hostile, until, private, own)

    assert shown[own] == "real"
    assert private not in shown, "the check's verdict goes to the panel only, not to a badge"
    assert [(r.status, r.cookie) for r in signed_in_site.worker_requests(since)] == [(403, None)]


def test_a_feed_sites_own_reads_answer_its_next_lookups_and_checks_from_the_cache(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    """Scrolling back to an image, a re-visit of the page, a right-click check there: the
    address's fingerprints read for this site are used again, the image is not fetched again."""
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, page_server.origin, until)
    known = page_server.url("/img/known.png")

    def worker_fetches() -> int:
        return len([r for r in page_server.requests_for("/img/known.png") if r.referer is None])

    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    until(lambda: badges(page).get(known) == "real", what="the badge on the known image")
    fetched = worker_fetches()
    assert fetched >= 1
    lookups = stub_server.requests.count("POST /v1/lookup")

    again = browser.context.new_page()
    again.goto(page_server.url("/feed.html#again"))
    until(lambda: badges(again).get(known) == "real", what="the badge on the re-visit")
    checked = browser.check_image(again, known)

    assert checked["ok"] and checked["via"] == "cache", checked
    assert worker_fetches() == fetched, "not fetched again"
    assert stub_server.requests.count("POST /v1/lookup") == lookups, "nor looked up again"
    assert "POST /v1/analyze" not in stub_server.requests
