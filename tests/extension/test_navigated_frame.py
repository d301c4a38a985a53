"""A check belongs to the document the user right-clicked in. When the frame (or, for the top
frame's panel of a small frame's image, the top page) navigates to another page of the same
site while the server works, the check's messages must not reach the new document: it never
asked, and a panel drawn in a page is readable by that page. The result is dropped; the recent
checks still list it. A frame that already shows another page when the menu item is chosen
gets no check at all.

The new document listens for the extension's messages in its isolated world (`LISTEN`), as a
content script there (feed mode's, a later check's) would: without the binding, the old
check's verdict is sent there."""

from __future__ import annotations

import threading
from typing import Any

import pytest

pytestmark = pytest.mark.browser

FRAME_PAGE = """<!doctype html><html><head><title>Frame</title></head>
<body style="margin: 0"><img id="pic" src="/img/check.png" width="240" height="180" alt="pic">
</body></html>"""
NEXT_PAGE = """<!doctype html><html><head><title>Next</title></head>
<body><p id="next">Another page of the same site.</p></body></html>"""

# The frame of the page at `pageUrl` showing `frameUrl` (or the top frame: `frameUrl` null).
FRAME_ID = """async ([pageUrl, frameUrl]) => {
    const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
    if (!frameUrl) return [tab.id, 0];
    const frames = await chrome.scripting.executeScript(
      {target: {tabId: tab.id, allFrames: true}, func: () => location.href});
    const frame = frames.find((f) => f.result === frameUrl);
    if (!frame) throw new Error('no frame at ' + frameUrl);
    return [tab.id, frame.frameId];
}"""

# What the menu click does; the outcome lands in `self.navigationCheck` when the check ends.
START_CHECK = """async ([tabId, frameId, srcUrl, frameUrl, pageUrl]) => {
    self.navigationCheck = null;
    const tab = await chrome.tabs.get(tabId);
    const info = {menuItemId: 'fakescope-check', srcUrl, frameId, pageUrl,
      ...(frameId ? {frameUrl} : {})};
    self.fakescopeHandleMenuClick(info, tab).then(
      (outcome) => { self.navigationCheck = outcome; },
      (error) => { self.navigationCheck = {thrown: String(error)}; });
}"""

# A listener in the new document's isolated world, recording every message the extension sends it.
LISTEN = """async ([tabId, frameId]) => {
    await chrome.scripting.executeScript({target: {tabId, frameIds: [frameId]}, func: () => {
      globalThis.heardByThisDocument = [];
      chrome.runtime.onMessage.addListener((message, _sender, reply) => {
        globalThis.heardByThisDocument.push(message);
        reply({ok: true});
      });
    }});
}"""

HEARD = """async ([tabId, frameId]) => {
    const [injection] = await chrome.scripting.executeScript(
      {target: {tabId, frameIds: [frameId]}, func: () => globalThis.heardByThisDocument ?? null});
    return injection.result;
}"""

RECENT = "async () => (await chrome.storage.local.get('recentChecks')).recentChecks ?? []"


class GatedAnalyze:
    """POST /v1/analyze answers only once `release()` is called: the check stays pending."""

    def __init__(self, stub_server: Any) -> None:
        self.arrived = threading.Event()
        self.gate = threading.Event()
        stub_server.routes["POST /v1/analyze"] = self.answer
        self.stub_server = stub_server

    def answer(self, handler: Any) -> None:
        import hashlib

        self.arrived.set()
        self.gate.wait(30)
        handler.reply(200, self.stub_server.answer(hashlib.sha256(handler.body).hexdigest()))

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def site(page_server: Any, stub_server: Any, browser: Any) -> Any:
    """Pages on localhost embedding a frame from 127.0.0.1 at a given size."""
    frame_origin = f"http://127.0.0.1:{page_server.port}"
    page_server.pages["/nav-frame.html"] = FRAME_PAGE
    page_server.pages["/nav-next.html"] = NEXT_PAGE
    browser.set_settings(serverUrl=stub_server.url)

    def open_page(name: str, size: tuple[int, int]) -> tuple[Any, str]:
        frame_url = f"{frame_origin}/nav-frame.html"
        page_server.pages[f"/{name}.html"] = (
            f'<!doctype html><html><body><h1>Embedding</h1><iframe id="embed" src="{frame_url}"'
            f' width="{size[0]}" height="{size[1]}" style="border: 0"></iframe></body></html>'
        )
        page = browser.context.new_page()
        page.goto(page_server.url(f"/{name}.html"))
        page.frame_locator("#embed").locator("#pic").wait_for()
        return page, frame_url

    open_page.frame_origin = frame_origin  # type: ignore[attr-defined]
    return open_page


def outcome(browser: Any) -> Any:
    return browser.worker.evaluate("() => self.navigationCheck")


def test_a_frame_that_navigates_mid_check_gets_nothing_of_the_old_pages_check(
    until: Any, browser: Any, stub_server: Any, site: Any
) -> None:
    page, frame_url = site("roomy", (700, 500))  # room for the panel in the frame itself
    src = f"{site.frame_origin}/img/check.png"
    tab_id, frame_id = browser.worker.evaluate(FRAME_ID, [page.url, frame_url])
    server = GatedAnalyze(stub_server)
    browser.worker.evaluate(START_CHECK, [tab_id, frame_id, src, frame_url, page.url])
    assert server.arrived.wait(20), "the upload reached the server"
    frame_panel = page.frame_locator("#embed").locator("fakescope-overlay")
    assert frame_panel.count() == 1, "the page right-clicked shows the check loading"

    # The frame moves on to another page of its site while the server works.
    page.frame_locator("#embed").locator("body").evaluate(
        "(body, url) => { location.href = url; }", f"{site.frame_origin}/nav-next.html"
    )
    page.frame_locator("#embed").locator("#next").wait_for()
    browser.worker.evaluate(LISTEN, [tab_id, frame_id])
    server.release()

    done = until(lambda: outcome(browser), timeout_s=20, what="the check to end")
    assert browser.worker.evaluate(HEARD, [tab_id, frame_id]) == [], "nothing sent to the new page"
    assert done["ok"] and done.get("shown") is False, done
    assert frame_panel.count() == 0, "no panel in the new page"
    recent = browser.worker.evaluate(RECENT)
    assert [entry["imageUrl"] for entry in recent] == [src], "the recent checks still list it"


def test_a_top_page_that_navigates_mid_check_gets_no_panel_for_the_frames_image(
    until: Any, browser: Any, stub_server: Any, page_server: Any, site: Any
) -> None:
    page, frame_url = site("cramped", (300, 200))  # too small: the panel shows in the top frame
    src = f"{site.frame_origin}/img/check.png"
    tab_id, frame_id = browser.worker.evaluate(FRAME_ID, [page.url, frame_url])
    server = GatedAnalyze(stub_server)
    browser.worker.evaluate(START_CHECK, [tab_id, frame_id, src, frame_url, page.url])
    assert server.arrived.wait(20), "the upload reached the server"
    assert page.locator("fakescope-overlay").count() == 1, "the top frame hosts the panel"

    # The top page moves on to another page of its site while the server works.
    page.goto(page_server.url("/nav-next.html"))
    browser.worker.evaluate(LISTEN, [tab_id, 0])
    server.release()

    done = until(lambda: outcome(browser), timeout_s=20, what="the check to end")
    assert browser.worker.evaluate(HEARD, [tab_id, 0]) == [], "nothing sent to the new page"
    assert done["ok"] and done.get("shown") is False, done
    assert page.locator("fakescope-overlay").count() == 0, "no panel in the new page"
    assert [f for f in page.frames if "frame-panel.html" in f.url] == []


def test_a_frame_showing_another_page_when_the_menu_item_is_chosen_gets_no_check(
    until: Any, browser: Any, stub_server: Any, site: Any
) -> None:
    """The frame navigated while the context menu was open: the click names the old page."""
    page, frame_url = site("moved", (700, 500))
    src = f"{site.frame_origin}/img/check.png"
    tab_id, frame_id = browser.worker.evaluate(FRAME_ID, [page.url, frame_url])
    page.frame_locator("#embed").locator("body").evaluate(
        "(body, url) => { location.href = url; }", f"{site.frame_origin}/nav-next.html"
    )
    page.frame_locator("#embed").locator("#next").wait_for()

    browser.worker.evaluate(START_CHECK, [tab_id, frame_id, src, frame_url, page.url])

    done = until(lambda: outcome(browser), timeout_s=20, what="the check to end")
    assert not done["ok"] and "another page" in done["reason"], done
    assert page.frame_locator("#embed").locator("fakescope-overlay").count() == 0
    assert "POST /v1/analyze" not in stub_server.requests, "the old page's image is not sent"


# Whether the extension's page reader (content/page-image.js) is in a frame's isolated world.
HAS_PAGE_READER = """async ([tabId, frameId]) => {
    const [injection] = await chrome.scripting.executeScript({target: {tabId, frameIds: [frameId]},
      func: () => Object.hasOwn(globalThis, '__fakescopePageImage')});
    return injection.result;
}"""


def test_try_again_after_the_small_frame_navigated_reads_nothing_in_its_new_page(
    until: Any, browser: Any, stub_server: Any, site: Any
) -> None:
    """The top frame's panel for a small frame's image failed; the frame moved on to another page
    of its site. **Try again** belongs to the page right-clicked too: the new page never asked,
    so it gets no page reader and is not asked for the image (read as for a frame that is gone,
    in the panel's own document)."""
    from panel_helpers import click_in_panel, panel_text

    answers: list[int] = []

    def busy_once(handler: Any) -> None:
        import hashlib

        answers.append(len(answers))
        if len(answers) == 1:
            handler.reply(500, {"title": "Internal Server Error", "status": 500, "detail": "busy"})
        else:
            handler.reply(200, stub_server.answer(hashlib.sha256(handler.body).hexdigest()))

    stub_server.routes["POST /v1/analyze"] = busy_once
    page, frame_url = site("retried", (300, 200))  # too small: the panel shows in the top frame
    src = f"{site.frame_origin}/img/check.png"
    tab_id, frame_id = browser.worker.evaluate(FRAME_ID, [page.url, frame_url])
    browser.worker.evaluate(START_CHECK, [tab_id, frame_id, src, frame_url, page.url])
    until(lambda: "busy" in panel_text(page, "[role=alert]"), what="the error")

    page.frame_locator("#embed").locator("body").evaluate(
        "(body, url) => { location.href = url; }", f"{site.frame_origin}/nav-next.html"
    )
    page.frame_locator("#embed").locator("#next").wait_for()
    assert browser.worker.evaluate(HAS_PAGE_READER, [tab_id, frame_id]) is False
    browser.worker.evaluate(LISTEN, [tab_id, frame_id])
    click_in_panel(page, "button", "Try again")

    until(lambda: panel_text(page, ".verdict") == "Likely authentic", what="the verdict")
    assert len(answers) == 2
    assert browser.worker.evaluate(HAS_PAGE_READER, [tab_id, frame_id]) is False, (
        "no page reader in the new page"
    )
    assert browser.worker.evaluate(HEARD, [tab_id, frame_id]) == [], "nothing sent to it"
