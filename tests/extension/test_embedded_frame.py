"""A right-click check of an image inside an iframe: a small embedded frame (an ad, an
embedded post) gets its panel in the top frame, saying where the image is; a frame with room
keeps the panel next to the image; where the top frame cannot be scripted, the panel stays in
the frame. The frames come from another origin (127.0.0.1) than the page (localhost).

The top frame's panel for a frame's image is the extension page panel/frame-panel.html in an
iframe, inside a closed shadow root (the embedding page must not read it): the tests reach it as
one of the page's frames (`panel_frame`), and click and type into it as the user does."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

pytestmark = pytest.mark.browser

FRAME_PAGE = """<!doctype html><html><head><title>Frame</title></head>
<body style="margin: 0"><img id="pic" src="/img/check.png" width="240" height="180" alt="pic">
</body></html>"""

# The frame's own blob: image: only a page reader in that frame can read it.
BLOB_FRAME_PAGE = """<!doctype html><html><head><title>Blob frame</title></head>
<body style="margin: 0"><img id="pic" alt="made"><script>
  fetch('/img/report.png').then((r) => r.blob()).then((b) => {
    document.getElementById('pic').src = URL.createObjectURL(b);
  });
</script></body></html>"""


def embedding_page(frame_url: str, width: int, height: int, extra: str = "") -> str:
    return f"""<!doctype html><html><head><title>Embedding</title></head><body>
<h1>A page with an embedded post</h1>{extra}
<label>Comment <input id="comment" type="text"></label>
<iframe id="embed" src="{frame_url}" width="{width}" height="{height}"
  style="border: 0; display: block"></iframe>
</body></html>"""


CHECK_IN_FRAME = """async ([pageUrl, frameUrl, srcUrl, wait]) => {
    const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
    const frames = await chrome.scripting.executeScript(
      {target: {tabId: tab.id, allFrames: true}, func: () => location.href});
    const frame = frames.find((f) => f.result === frameUrl);
    if (!frame) throw new Error('no frame at ' + frameUrl);
    const checking = self.fakescopeHandleMenuClick(
      {menuItemId: 'fakescope-check', srcUrl, frameId: frame.frameId, frameUrl, pageUrl}, tab);
    return wait ? checking : null;
}"""


# The panel page's panel, read in the panel page (an extension page: the test may, the embedding
# page may not), once the page has drawn it (or found it has nothing to draw).
IN_PANEL = """async ([selector, text]) => {
    if (await window.fakescopeFramePanel !== 'shown') return null;
    const root = document.querySelector('fakescope-panel').shadowRoot;
    const all = [...root.querySelectorAll(selector)]
      .filter((el) => text === null || el.textContent.trim() === text);
    const focused = document.hasFocus() ? root.activeElement : null;
    const found = {count: all.length,
      focused: focused && {tag: focused.localName, role: focused.getAttribute('role'),
        name: focused.getAttribute('aria-label')}};
    const el = all[0];
    if (!el) return found;
    return {...found, text: el.innerText, label: el.dataset.label ?? null};
}"""

PANEL_PAGE = re.compile(r"^chrome-extension://[a-p]{32}/panel/frame-panel\.html#")


def panel_frame(page: Any) -> Any:
    """The top frame's panel page (for an image of another frame), or None."""
    # A round trip first: the sync API takes in frames attached meanwhile only while it waits.
    page.evaluate("() => 0")
    frames = [f for f in page.main_frame.child_frames if PANEL_PAGE.match(f.url)]
    assert len(frames) <= 1, [f.url for f in frames]
    return frames[0] if frames else None


def in_top_panel(
    browser: Any, page: Any, selector: str, text: str | None = None
) -> dict[str, Any] | None:
    """The first element of the top frame's panel matching `selector` (and `text`): its text,
    data-label and how many match, with the element focused in the panel (while the panel page
    has the focus); None when the top frame shows no panel page."""
    frame = panel_frame(page)
    if frame is None:
        return None
    found: dict[str, Any] | None = frame.evaluate(IN_PANEL, [selector, text])
    return found


def panel_text(browser: Any, page: Any, selector: str) -> str:
    found = in_top_panel(browser, page, selector)
    return str(found["text"]) if found and found["count"] else ""


def top_panel_locator(page: Any, selector: str, text: str) -> Any:
    frame = panel_frame(page)
    assert frame is not None, "no panel page in the top frame"
    exact = re.compile(rf"^\s*{re.escape(text)}\s*$")
    return frame.locator(selector).filter(has_text=exact).first


def click_in_top_panel(browser: Any, page: Any, selector: str, text: str) -> None:
    """A real (trusted) click on a control of the top frame's panel, as the user makes it."""
    top_panel_locator(page, selector, text).click()


def frame_origin(page_server: Any) -> str:
    return f"http://127.0.0.1:{page_server.port}"


def open_embedding(
    browser: Any, page_server: Any, stub_server: Any, name: str, frame: str, size: tuple[int, int]
) -> tuple[Any, str]:
    """A page on localhost embedding `frame` from 127.0.0.1 at `size`; the page, the frame URL."""
    frame_url = f"{frame_origin(page_server)}{frame}"
    page_server.pages[f"/{name}.html"] = embedding_page(frame_url, *size)
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url(f"/{name}.html"))
    page.frame_locator("#embed").locator("#pic").wait_for()
    return page, frame_url


@pytest.fixture
def frame_pages(page_server: Any) -> None:
    page_server.pages["/frame.html"] = FRAME_PAGE
    page_server.pages["/blob-frame.html"] = BLOB_FRAME_PAGE


def check_in_frame(browser: Any, page: Any, frame_url: str, src: str) -> dict[str, Any]:
    result: dict[str, Any] = browser.worker.evaluate(
        CHECK_IN_FRAME, [page.url, frame_url, src, True]
    )
    return result


def start_check_in_frame(browser: Any, page: Any, frame_url: str, src: str) -> None:
    """A check of the frame's image that runs on while the test acts (check_in_frame waits)."""
    browser.worker.evaluate(CHECK_IN_FRAME, [page.url, frame_url, src, False])


def in_frame_panels(page: Any) -> int:
    return int(page.frame_locator("#embed").locator("fakescope-overlay").count())


def test_an_image_in_a_small_embedded_frame_gets_its_panel_in_the_top_frame(
    until: Any, browser: Any, stub_server: Any, page_server: Any, frame_pages: None
) -> None:
    page, frame_url = open_embedding(
        browser, page_server, stub_server, "small", "/frame.html", (300, 200)
    )
    # What the user does: a right-click on the image in the frame (the frame takes the focus).
    page.frame_locator("#embed").locator("#pic").click(button="right")
    src = f"{frame_origin(page_server)}/img/check.png"

    result = check_in_frame(browser, page, frame_url, src)

    assert result["ok"], result
    assert result["via"] == "worker"
    overlay = page.locator("fakescope-overlay")  # the top document's
    assert overlay.count() == 1
    until(lambda: panel_text(browser, page, ".verdict"), what="the panel page's verdict")
    verdict = in_top_panel(browser, page, ".verdict")
    assert verdict is not None
    assert (verdict["text"], verdict["label"]) == ("Likely authentic", "real")
    assert "12% likelihood" in panel_text(browser, page, ".score")
    assert "Consistent sensor noise" in panel_text(browser, page, ".explanation")
    options = in_top_panel(browser, page, "select option")
    assert options is not None and options["count"] == 14
    note = panel_text(browser, page, ".frame-note")
    assert f"embedded frame from {frame_origin(page_server)}" in note
    assert in_frame_panels(page) == 0, "no panel squeezed into the frame"
    # Not anchored to the image (at the frame's top left): at the top right of the viewport.
    dialog = in_top_panel(browser, page, "section[role=dialog]")
    assert dialog is not None
    box = panel_frame(page).frame_element().bounding_box()
    assert box["x"] + box["width"] > 900 and box["y"] < 40, box
    # The panel takes the focus when it opens: the page sees only the host focused.
    assert dialog["focused"]["role"] == "dialog"
    assert page.evaluate("() => document.activeElement.localName") == "fakescope-overlay"
    # Tab moves through the panel's controls, as in the page's own panel.
    page.keyboard.press("Tab")
    tabbed = in_top_panel(browser, page, "button.close")
    assert tabbed is not None and tabbed["focused"]["name"] == "Close FakeScope result"

    # The report form works from the top frame's panel, with the user's clicks and keys.
    click_in_top_panel(browser, page, "button", "Report a wrong verdict")
    focused = in_top_panel(browser, page, "textarea")
    assert focused is not None and focused["focused"]["tag"] == "textarea"
    page.keyboard.type("The fur is painted, this is a render.")
    click_in_top_panel(browser, page, "button", "Send report")
    until(
        lambda: "sent to human review" in panel_text(browser, page, ".report-status"),
        what="the report confirmation",
    )
    assert "POST /v1/reports" in stub_server.requests
    after_report = in_top_panel(browser, page, "section[role=dialog]")
    assert after_report is not None and after_report["focused"]["role"] == "dialog"

    # Esc closes it, and the focus goes back to the frame the user was in.
    page.keyboard.press("Escape")
    until(lambda: overlay.count() == 0, what="the panel to close")
    assert in_top_panel(browser, page, "*") is None
    assert page.evaluate("() => document.activeElement.id") == "embed"


def test_try_again_in_the_top_frame_reads_the_image_in_its_frame_again(
    until: Any, browser: Any, stub_server: Any, page_server: Any, frame_pages: None
) -> None:
    """A blob: image the frame made can only be read in that frame: the first check fails at
    the server, and **Try again** in the top frame's panel reads it in the frame again."""
    answers: list[int] = []

    def busy_once(handler: Any) -> None:
        answers.append(len(answers))
        if len(answers) == 1:
            handler.reply(500, {"title": "Internal Server Error", "status": 500, "detail": "busy"})
        else:
            handler.reply(200, stub_server.answer(hashlib.sha256(handler.body).hexdigest()))

    stub_server.routes["POST /v1/analyze"] = busy_once
    page, frame_url = open_embedding(
        browser, page_server, stub_server, "small-blob", "/blob-frame.html", (300, 200)
    )
    src = until(
        lambda: (
            page.frame_locator("#embed")
            .locator("#pic")
            .evaluate("(img) => img.complete && img.naturalWidth > 0 && img.src")
        ),
        what="the frame's blob: image",
    )
    assert src.startswith("blob:")

    failed = check_in_frame(browser, page, frame_url, src)

    assert not failed["ok"], failed
    until(lambda: "busy" in panel_text(browser, page, "[role=alert]"), what="the error")
    assert "embedded frame from" in panel_text(browser, page, ".frame-note")
    click_in_top_panel(browser, page, "button", "Try again")
    until(
        lambda: panel_text(browser, page, ".verdict") == "Likely authentic",
        what="the verdict after Try again",
    )
    verdict = in_top_panel(browser, page, ".verdict")
    assert verdict is not None and verdict["label"] == "real"
    # The focused Try again button is gone: the focus stays in the panel.
    assert verdict["focused"]["role"] == "dialog"
    assert "embedded frame from" in panel_text(browser, page, ".frame-note")
    assert in_frame_panels(page) == 0
    assert len(answers) == 2


def test_a_top_frame_panel_cut_short_by_the_worker_being_stopped_says_so_and_tries_again(
    until: Any, browser: Any, stub_server: Any, page_server: Any, frame_pages: None
) -> None:
    """The panel page watches a check it shows as loading, as the page's own panel does: when
    Chrome stops the worker mid-check, it says so, and Try again checks the image again."""
    from test_overlay_states import stop_service_worker

    page, frame_url = open_embedding(
        browser, page_server, stub_server, "small-stopped", "/frame.html", (300, 200)
    )
    stub_server.delay_s = 5.0
    start_check_in_frame(browser, page, frame_url, f"{frame_origin(page_server)}/img/check.png")
    until(lambda: "Checking this image" in panel_text(browser, page, ".body"), what="loading")
    until(lambda: "POST /v1/analyze" in stub_server.requests, what="the upload")

    stop_service_worker(browser)

    until(
        lambda: "stopped before the check finished" in panel_text(browser, page, "[role=alert]"),
        what="the panel to stop spinning",
    )
    stub_server.delay_s = 0.0
    click_in_top_panel(browser, page, "button", "Try again")
    until(lambda: panel_text(browser, page, ".verdict") == "Likely authentic", what="the verdict")
    assert "embedded frame from" in panel_text(browser, page, ".frame-note")
    assert in_frame_panels(page) == 0


def test_an_image_in_a_large_frame_keeps_its_panel_in_the_frame(
    browser: Any, stub_server: Any, page_server: Any, frame_pages: None
) -> None:
    page, frame_url = open_embedding(
        browser, page_server, stub_server, "large", "/frame.html", (800, 600)
    )
    result = check_in_frame(browser, page, frame_url, f"{frame_origin(page_server)}/img/check.png")

    assert result["ok"], result
    assert page.locator("fakescope-overlay").count() == 0
    overlay = page.frame_locator("#embed").locator("fakescope-overlay")
    assert overlay.locator(".verdict").inner_text() == "Likely authentic"
    assert overlay.locator(".frame-note").count() == 0


def test_a_top_frame_that_refuses_scripts_leaves_the_panel_in_the_small_frame(
    browser: Any, stub_server: Any, page_server: Any, frame_pages: None
) -> None:
    """As on a browser page or the web store embedding a frame: injecting into frame 0 fails."""
    page, frame_url = open_embedding(
        browser, page_server, stub_server, "refusing", "/frame.html", (300, 200)
    )
    browser.worker.evaluate(
        """() => {
            const scripting = chrome.scripting;
            const execute = scripting.executeScript.bind(scripting);
            scripting.executeScript = (injection) => injection.target.frameIds?.includes(0)
              ? Promise.reject(new Error('Cannot access contents of the page'))
              : execute(injection);
        }"""
    )

    result = check_in_frame(browser, page, frame_url, f"{frame_origin(page_server)}/img/check.png")

    assert result["ok"], result
    assert page.locator("fakescope-overlay").count() == 0
    overlay = page.frame_locator("#embed").locator("fakescope-overlay")
    assert overlay.locator(".verdict").inner_text() == "Likely authentic"
    assert overlay.locator(".frame-note").count() == 0
