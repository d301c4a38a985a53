"""A right-click check of an image inside an iframe: a small embedded frame (an ad, an
embedded post) gets its panel in the top frame, saying where the image is; a frame with room
keeps the panel next to the image; where the top frame cannot be scripted, the panel stays in
the frame. The frames come from another origin (127.0.0.1) than the page (localhost).

Every panel is the extension page panel/frame-panel.html in an iframe, inside a closed shadow
root (the page it is in must not read it): the tests reach it as one of its host document's
frames (panel_helpers.py), and click and type into it as the user does."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from panel_helpers import (
    click_in_panel,
    focused_in_panel,
    in_panel,
    panel,
    panel_frame,
    panel_locator,
    panel_text,
    press_escape_in_panel,
)

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
    from playwright.sync_api import expect

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
    until(lambda: panel_text(page, ".verdict"), what="the panel page's verdict")
    verdict = in_panel(page, ".verdict")
    assert verdict is not None
    assert (verdict["text"], verdict["label"]) == ("Likely authentic", "real")
    assert "12% likelihood" in panel_text(page, ".score")
    assert "Consistent sensor noise" in panel_text(page, ".explanation")
    options = in_panel(page, "select option")
    assert options is not None and options["count"] == 14
    note = panel_text(page, ".frame-note")
    assert f"embedded frame from {frame_origin(page_server)}" in note
    assert in_frame_panels(page) == 0, "no panel squeezed into the frame"
    # Not anchored to the image (at the frame's top left): at the top right of the viewport.
    # The panel takes the focus a moment after it is drawn.
    until(lambda: focused_in_panel(page), what="the focus in the panel")
    dialog = in_panel(page, "section[role=dialog]")
    assert dialog is not None
    box = panel_frame(page).frame_element().bounding_box()
    assert box["x"] + box["width"] > 900 and box["y"] < 40, box
    # The panel takes the focus when it opens: the page sees only the host focused.
    assert dialog["focused"]["role"] == "dialog"
    assert page.evaluate("() => document.activeElement.localName") == "fakescope-overlay"
    # Tab moves through the panel's controls, as in the page's own panel.
    page.keyboard.press("Tab")
    expect(panel_locator(page, "button.close")).to_be_focused()
    tabbed = in_panel(page, "button.close")
    assert tabbed is not None and tabbed["focused"]["name"] == "Close FakeScope result"

    # The report form works from the top frame's panel, with the user's clicks and keys.
    click_in_panel(page, "button", "Report a wrong verdict")
    expect(panel_locator(page, "textarea")).to_be_focused()
    focused = in_panel(page, "textarea")
    assert focused is not None and focused["focused"]["tag"] == "textarea"
    page.keyboard.type("The fur is painted, this is a render.")
    click_in_panel(page, "button", "Send report")
    until(
        lambda: "sent to human review" in panel_text(page, ".report-status"),
        what="the report confirmation",
    )
    assert "POST /v1/reports" in stub_server.requests
    after_report = in_panel(page, "section[role=dialog]")
    assert after_report is not None and after_report["focused"]["role"] == "dialog"

    # Esc closes it, and the focus goes back to the frame the user was in.
    press_escape_in_panel(page)
    until(lambda: overlay.count() == 0, what="the panel to close")
    assert in_panel(page, "*") is None
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
    until(lambda: "busy" in panel_text(page, "[role=alert]"), what="the error")
    assert "embedded frame from" in panel_text(page, ".frame-note")
    click_in_panel(page, "button", "Try again")
    until(
        lambda: panel_text(page, ".verdict") == "Likely authentic",
        what="the verdict after Try again",
    )
    verdict = in_panel(page, ".verdict")
    assert verdict is not None and verdict["label"] == "real"
    # The focused Try again button is gone: the focus stays in the panel.
    assert verdict["focused"]["role"] == "dialog"
    assert "embedded frame from" in panel_text(page, ".frame-note")
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
    until(lambda: "Checking this image" in panel_text(page, ".body"), what="loading")
    until(lambda: "POST /v1/analyze" in stub_server.requests, what="the upload")

    stop_service_worker(browser)

    until(
        lambda: "stopped before the check finished" in panel_text(page, "[role=alert]"),
        what="the panel to stop spinning",
    )
    stub_server.delay_s = 0.0
    click_in_panel(page, "button", "Try again")
    until(lambda: panel_text(page, ".verdict") == "Likely authentic", what="the verdict")
    assert "embedded frame from" in panel_text(page, ".frame-note")
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
    embed = page.frame(url=frame_url)
    assert page.frame_locator("#embed").locator("fakescope-overlay").count() == 1
    assert panel(page, within=embed).locator(".verdict").inner_text() == "Likely authentic"
    assert panel(page, within=embed).locator(".frame-note").count() == 0
    # Anchored over the image's corner in the frame, as the page's own panel is.
    pic = page.frame_locator("#embed").locator("#pic").bounding_box()
    box = panel(page, within=embed).frame_element().bounding_box()
    assert (box["x"], box["y"]) == pytest.approx((pic["x"] + 8, pic["y"] + 8), abs=1)


def test_an_image_in_a_large_sandboxed_frame_gets_its_panel_in_the_frame(
    browser: Any, stub_server: Any, page_server: Any, frame_pages: None
) -> None:
    """A sandboxed frame's document has an opaque origin ("null") though its address names a
    site: the panel page, checking where it sits, compares it with the document's own origin."""
    frame_url = f"{frame_origin(page_server)}/frame.html"
    page_server.pages["/sandboxing.html"] = (
        '<!doctype html><iframe id="embed" sandbox="allow-scripts" '
        f'src="{frame_url}" width="800" height="600"></iframe>'
    )
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/sandboxing.html"))
    page.frame_locator("#embed").locator("#pic").wait_for()

    result = check_in_frame(browser, page, frame_url, f"{frame_origin(page_server)}/img/check.png")

    assert result["ok"], result
    embed = page.frame(url=frame_url)
    assert panel(page, within=embed).evaluate("() => location.ancestorOrigins[0]") == "null"
    assert panel(page, within=embed).locator(".verdict").inner_text() == "Likely authentic"


def test_try_again_in_a_large_frames_panel_shows_the_new_check_in_that_frame(
    until: Any, browser: Any, stub_server: Any, page_server: Any, frame_pages: None
) -> None:
    """The panel page sits in the frame (its host), under the top page: it shows, and its Try
    again checks the frame's image again into the same panel."""
    answers: list[int] = []

    def busy_once(handler: Any) -> None:
        answers.append(len(answers))
        if len(answers) == 1:
            handler.reply(500, {"title": "Internal Server Error", "status": 500, "detail": "busy"})
        else:
            handler.reply(200, stub_server.answer(hashlib.sha256(handler.body).hexdigest()))

    stub_server.routes["POST /v1/analyze"] = busy_once
    page, frame_url = open_embedding(
        browser, page_server, stub_server, "large-retry", "/frame.html", (800, 600)
    )
    failed = check_in_frame(browser, page, frame_url, f"{frame_origin(page_server)}/img/check.png")

    assert not failed["ok"], failed
    embed = page.frame(url=frame_url)
    until(lambda: "busy" in panel_text(page, "[role=alert]", within=embed), what="the error")
    click_in_panel(page, "button", "Try again", within=embed)
    until(
        lambda: panel_text(page, ".verdict", within=embed) == "Likely authentic",
        what="the verdict after Try again",
    )
    assert len(answers) == 2
    assert page.locator("fakescope-overlay").count() == 0, "nothing in the top frame"
    assert panel_frame(page) is None


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
    embed = page.frame(url=frame_url)
    assert page.frame_locator("#embed").locator("fakescope-overlay").count() == 1
    assert panel(page, within=embed).locator(".verdict").inner_text() == "Likely authentic"
    assert panel(page, within=embed).locator(".frame-note").count() == 0
