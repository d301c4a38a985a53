"""A right-click check of an image inside an iframe: a small embedded frame (an ad, an
embedded post) gets its panel in the top frame, saying where the image is; a frame with room
keeps the panel next to the image; where the top frame cannot be scripted, the panel stays in
the frame. The frames come from another origin (127.0.0.1) than the page (localhost)."""

from __future__ import annotations

import hashlib
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


def embedding_page(frame_url: str, width: int, height: int) -> str:
    return f"""<!doctype html><html><head><title>Embedding</title></head><body>
<h1>A page with an embedded post</h1>
<label>Comment <input id="comment" type="text"></label>
<iframe id="embed" src="{frame_url}" width="{width}" height="{height}"
  style="border: 0; display: block"></iframe>
</body></html>"""


CHECK_IN_FRAME = """async ([pageUrl, frameUrl, srcUrl]) => {
    const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
    const frames = await chrome.scripting.executeScript(
      {target: {tabId: tab.id, allFrames: true}, func: () => location.href});
    const frame = frames.find((f) => f.result === frameUrl);
    if (!frame) throw new Error('no frame at ' + frameUrl);
    return self.fakescopeHandleMenuClick(
      {menuItemId: 'fakescope-check', srcUrl, frameId: frame.frameId, frameUrl, pageUrl}, tab);
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
    result: dict[str, Any] = browser.worker.evaluate(CHECK_IN_FRAME, [page.url, frame_url, src])
    return result


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
    assert overlay.locator(".verdict").inner_text() == "Likely authentic"
    assert "12% likelihood" in overlay.locator(".score").inner_text()
    assert "Consistent sensor noise" in overlay.locator(".explanation").inner_text()
    assert overlay.locator("select option").count() == 14
    note = overlay.locator(".frame-note").inner_text()
    assert f"embedded frame from {frame_origin(page_server)}" in note
    assert in_frame_panels(page) == 0, "no panel squeezed into the frame"
    # Not anchored to the image (at the frame's top left): at the top right of the viewport.
    box = overlay.locator("section[role=dialog]").bounding_box()
    assert box is not None and box["x"] + box["width"] > 900 and box["y"] < 40, box
    assert overlay.locator("section[role=dialog]").evaluate(
        "(el) => el.getRootNode().activeElement === el"
    ), "the panel takes the focus when it opens"

    # The report form works from the top frame's panel.
    overlay.get_by_role("button", name="Report a wrong verdict").click()
    overlay.get_by_label("Why is the verdict wrong?").fill("The fur is painted, this is a render.")
    overlay.get_by_role("button", name="Send report").click()
    until(
        lambda: "sent to human review" in overlay.locator(".report-status").inner_text(),
        what="the report confirmation",
    )
    assert "POST /v1/reports" in stub_server.requests

    # Esc closes it, and the focus goes back to the frame the user was in.
    page.keyboard.press("Escape")
    assert overlay.count() == 0
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
    overlay = page.locator("fakescope-overlay")
    assert "embedded frame from" in overlay.locator(".frame-note").inner_text()
    overlay.get_by_role("button", name="Try again").click()
    until(lambda: overlay.locator(".verdict").count() > 0, what="the verdict after Try again")
    assert overlay.locator(".verdict").inner_text() == "Likely authentic"
    assert "embedded frame from" in overlay.locator(".frame-note").inner_text()
    assert in_frame_panels(page) == 0
    assert len(answers) == 2


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
