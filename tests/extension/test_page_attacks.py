"""A hostile page against the extension: what its own scripts and markup can make the content
scripts or the service worker do. Each test is one attack, run for real in Chromium.

- Markup named like the content scripts' parts (`<div id="__fakescope">`), which the isolated
  world still finds on its global object, does not keep the panel or the badges out.
- A page script's `click()` opens no badge's panel and no options tab.
- A page from the internet cannot make the worker fetch images on this computer or the local
  network (feed lookups, checks), which the browser would not let the page reach itself.
- An image address that answers without end is not read past the size limit, and an image of
  a few kilobytes that would decode to hundreds of megabytes is not decoded for feed mode.
- Content scripts, which run in the page's process, cannot read the API token.

Pages on the internet are needed: Chromium maps `public.test` and `other.test` to 127.0.0.1
(`--host-resolver-rules`), and the extension loaded here is a copy whose manifest also grants
`http://public.test/*`, as a user switching feed mode on there would (a prompt no test can
click). `other.test` stays an image site the extension has no access to."""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from feed_helpers import knows_every_image, switch_feed_mode_on
from live_server import REPO_ROOT, free_port
from panel_helpers import PANEL_ROOT, panel, panel_frame

pytestmark = pytest.mark.browser

SOURCE_EXTENSION = Path(os.environ.get("FAKESCOPE_EXTENSION_DIR") or REPO_ROOT / "extension")


@pytest.fixture
def extension_dir(tmp_path: Path) -> Path:
    """The extension, with `http://public.test/*` granted (see the module's docstring)."""
    copy = tmp_path / "extension"
    shutil.copytree(SOURCE_EXTENSION, copy, ignore=shutil.ignore_patterns("tests"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["host_permissions"].append("http://public.test/*")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.fixture
def browser_args() -> list[str]:
    return ["--host-resolver-rules=MAP public.test 127.0.0.1, MAP other.test 127.0.0.1"]


def badged_sources(page: Any) -> list[str]:
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('fakescope-badge')]
                .map((host) => host.shadowRoot.querySelector('button').dataset.src)"""
        )
    )


def public_site(page_server: Any) -> str:
    return f"http://public.test:{page_server.port}"


# Every part the content scripts leave on their global object, as the id or name of an element.
NAMED_LIKE_THE_PARTS = """
<div id="__fakescope"></div><div id="__fakescopeOverlayDom"></div>
<img name="__fakescopeOverlayForms" alt=""><form name="__fakescopePanel"></form>
<div id="__fakescopePageImage"></div><div id="__fakescopeFeed"></div>
<form id="__fakescopeInjection"><input name="runtime" id="alive"><input name="instance"></form>
"""


def test_markup_named_like_the_content_scripts_parts_keeps_out_neither_badges_nor_panel(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    knows_every_image(stub_server)
    page_server.pages["/clobbering.html"] = (
        "<!doctype html><html><head><title>Clobbering</title></head><body>"
        + NAMED_LIKE_THE_PARTS
        + '<img id="pic" src="/img/check.png" width="240" height="180" alt="pic">'
        + "</body></html>"
    )
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/clobbering.html"))
    # The page's elements are what its own scripts find under those names.
    assert page.evaluate("() => window.__fakescope.localName") == "div"

    src = page_server.url("/img/check.png")
    until(lambda: src in badged_sources(page), what="the feed badge on the image")
    result = browser.check_image(page, src)

    assert result["ok"], result
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"


def test_a_page_script_clicking_a_badge_opens_no_panel(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    """The badge's root is open: a page script's click() would pull the focus into the panel
    whenever it liked."""
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    known = page_server.url("/img/known.png")
    until(lambda: known in badged_sources(page), what="a badge")
    page.locator("h1").click()  # the user is somewhere on the page

    page.evaluate(
        """(src) => [...document.querySelectorAll('fakescope-badge')]
            .map((host) => host.shadowRoot.querySelector('button'))
            .find((badge) => badge.dataset.src === src).click()""",
        known,
    )

    page.wait_for_timeout(500)  # a panel would be open by now: the worker answers at once
    assert page.locator("fakescope-overlay").count() == 0
    assert page.evaluate("() => document.activeElement.localName") == "body"
    # The user's own click still opens it.
    page.locator(f'fakescope-badge button[data-src="{known}"]').click()
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"


def test_a_page_script_clicking_allow_this_image_site_opens_no_tab(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    image = f"http://other.test:{page_server.port}/img/report.png"
    page_server.pages["/other-image.html"] = (
        "<!doctype html><title>Other site's image</title>"
        f'<img id="pic" src="{image}" width="240" height="180" alt="pic">'
    )
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(f"{public_site(page_server)}/other-image.html")
    result = browser.check_image(page, image)
    assert not result["ok"] and result["failure"]["imageOrigin"] == image.rsplit("/img/", 1)[0]
    allow = panel(page).get_by_role("button", name="Allow this image site…")
    allow.wait_for()  # the panel page draws the error once it has loaded
    pages_before = len(browser.context.pages)

    # The page's script cannot reach the panel (a closed root); a script's click, even one run
    # in the panel page itself, opens nothing.
    assert page.evaluate("() => document.querySelector('fakescope-overlay').shadowRoot") is None
    panel_frame(page).evaluate(
        f"""() => {{
            const allow = [...{PANEL_ROOT}.querySelectorAll('button')]
              .find((b) => b.textContent.startsWith('Allow this image site'));
            for (let i = 0; i < 5; i += 1) allow.click();
        }}"""
    )
    page.wait_for_timeout(500)
    assert len(browser.context.pages) == pages_before, "no options tab for the page's clicks"

    with browser.context.expect_page() as opened:
        allow.click()
    assert opened.value.url.startswith(browser.extension_url("options/options.html?grant="))


def loopback_image_page(page_server: Any) -> str:
    """An internet page with its own image and two of this computer's (by address, by name)."""
    port = page_server.port
    page_server.pages["/with-local-images.html"] = f"""<!doctype html><title>Internet page</title>
<img src="/img/known.png" width="240" height="180" alt="own">
<img src="http://127.0.0.1:{port}/img/unknown.png" width="240" height="180" alt="by address">
<img src="http://localhost:{port}/img/lazy.png" width="240" height="180" alt="by name">"""
    return f"{public_site(page_server)}/with-local-images.html"


def requests_since(page_server: Any, since: int, path: str) -> list[Any]:
    """The requests for `path` logged after the first `since` (the log lasts the session)."""
    return [r for r in page_server.log[since:] if r.path == path]


def worker_requests_since(page_server: Any, since: int, path: str) -> int:
    """The worker's requests for `path`: the page's own <img> sends its origin as Referer."""
    return len([r for r in requests_since(page_server, since, path) if r.referer is None])


def test_feed_mode_on_an_internet_page_fetches_none_of_its_local_images(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, public_site(page_server), until)
    page = browser.context.new_page()
    since = len(page_server.log)
    page.goto(loopback_image_page(page_server))

    own = f"{public_site(page_server)}/img/known.png"
    until(lambda: own in badged_sources(page), what="the badge on the page's own image")
    page.wait_for_timeout(1500)  # let every lookup of the page finish

    assert badged_sources(page) == [own], "no verdict for an image of this computer"
    assert worker_requests_since(page_server, since, "/img/known.png") >= 1, "the worker's fetch"
    for path in ("/img/unknown.png", "/img/lazy.png"):
        assert requests_since(page_server, since, path), f"the page itself loaded {path}"
        assert worker_requests_since(page_server, since, path) == 0, f"the worker fetched {path}"


def test_a_check_on_an_internet_page_does_not_fetch_an_image_of_this_computer(
    browser: Any, stub_server: Any, page_server: Any
) -> None:
    """A page can put an invisible image of its choice under the user's right-click: an image
    of a local service would be fetched with the extension's access, and its verdict shown in the
    page's own panel."""
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(loopback_image_page(page_server))
    local = f"http://127.0.0.1:{page_server.port}/img/check.png"
    since = len(page_server.log)

    result = browser.check_image(page, local)

    assert not result["ok"]
    assert result["failure"]["title"] == "FakeScope does not read this image for this page"
    assert "imageOrigin" not in result["failure"], "allowing the site would not help"
    assert requests_since(page_server, since, "/img/check.png") == []
    assert "POST /v1/analyze" not in stub_server.requests
    overlay = panel(page)
    overlay.locator(".error-title").wait_for()
    assert overlay.locator(".verdict").count() == 0
    assert "does not read this image" in overlay.locator(".error-title").inner_text()


@pytest.fixture
def endless_image() -> Iterator[tuple[str, dict[str, int]]]:
    """An image address on this computer that answers 160 MiB without a Content-Length, and
    records how much of it went out before the client stopped reading."""
    sent: dict[str, int] = {}
    piece = bytes(1 << 20)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            written = 0
            try:
                for _ in range(160):
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                    written += len(piece)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client went away
            sent[self.path] = written

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/endless.png", sent
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_image_that_never_ends_is_not_read_past_the_size_limit(
    until: Any, browser: Any, stub_server: Any, page_server: Any, endless_image: Any
) -> None:
    src, sent = endless_image
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))

    result = browser.check_image(page, src)

    assert not result["ok"] and result["failure"]["title"] == "This image is too large"
    until(lambda: "/endless.png" in sent, what="the answer to end")
    mib = 1 << 20
    # 25 MiB read, plus what the network buffers held when the download was cancelled.
    assert 25 * mib <= sent["/endless.png"] < 64 * mib, sent


READ_SETTINGS_IN_THE_PAGE = """async (pageUrl) => {
    const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
    const [{ result }] = await chrome.scripting.executeScript({
      target: {tabId: tab.id}, world: 'ISOLATED',
      func: async () => {
        try {
          return JSON.stringify(await chrome.storage.local.get(null));
        } catch (error) {
          return `refused: ${error.message}`;
        }
      },
    });
    return result;
}"""


def test_content_scripts_cannot_read_the_api_token(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    """Content scripts run in the web page's process: one the page took over could read whatever
    they may. None needs the settings, so none may read them."""
    stub_server.token = "fs-user-token-0123456789"
    browser.set_settings(serverUrl=stub_server.url, apiToken=stub_server.token)
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))

    def read() -> str:
        return str(browser.worker.evaluate(READ_SETTINGS_IN_THE_PAGE, page.url))

    # The worker restricts the area as it starts: an instant after the browser is up.
    until(lambda: read().startswith("refused:"), 5, "the settings refused to a content script")
    assert stub_server.token not in read()
    # The worker still uses the token: a check goes through.
    assert browser.check_image(page, page_server.url("/img/check.png"))["ok"]


def flat_png(width: int, height: int) -> bytes:
    """A one-bit grey PNG: a few kilobytes on the wire, width x height x 4 bytes decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = (b"\0" + bytes((width + 7) // 8)) * height
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


# Remembered per address under the scope it was read in (lib/cache.js): `pdq:<scope> <url>`.
REMEMBERED_PDQ = """async (url) => {
    const all = await chrome.storage.session.get(null);
    const key = Object.keys(all).find((k) => k.startsWith('pdq:') && k.endsWith(` ${url}`));
    return key ? all[key].value : null;
}"""


def test_feed_mode_does_not_decode_an_image_too_large_for_a_hash(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    """8192 x 8192 pixels: 256 MiB to decode (a page can name many, four decoded at a time),
    from a few kilobytes; more pixels than the server analyses, so no hint could come of it."""
    page_server.images["vast.png"] = flat_png(8192, 8192)
    page_server.pages["/vast.html"] = """<!doctype html><title>Vast</title>
<img src="/img/known.png" width="240" height="180" alt="small">
<img src="/img/vast.png" width="240" height="180" alt="vast">"""
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/vast.html"))

    small, vast = (page_server.url(f"/img/{name}.png") for name in ("known", "vast"))

    def remembered() -> list[Any] | None:
        found = [browser.worker.evaluate(REMEMBERED_PDQ, url) for url in (small, vast)]
        return found if all(found) else None

    fingerprints = until(remembered, what="both images fingerprinted")
    assert fingerprints[0]["hash"] is not None, "the small image was decoded and hashed"
    assert fingerprints[1] == {"hash": None, "quality": 0}, "the vast one was never decoded"
    assert len(page_server.images["vast.png"]) < 64 * 1024
