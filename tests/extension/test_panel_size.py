"""A panel about the page's own image (the page has that image anyway) is as tall as what it
shows, in steps of 80 px up to min(80vh, 640 px): a loading panel is small, a verdict as tall as
it needs, and the page learns only that coarse height. The panel page measures its content and
tells the worker, which has the host set the iframe's height (never through window messages).
Panels about another frame's image keep one size: test_frame_panel_privacy.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from feed_helpers import switch_feed_mode_on
from panel_helpers import PANEL_ROOT, panel, panel_frame, panel_text
from playwright.sync_api import Error as PlaywrightError

pytestmark = pytest.mark.browser

LOADING = "Checking this image"
STEP = 80
MAX_HEIGHT = 640  # min(80vh, 640 px) in the tests' 1000 x 800 viewport

PAGE = """<!doctype html><html><head><title>Sizes</title></head><body>
<img id="pic" src="/img/check.png" width="240" height="180" alt="pic">
<img id="other" src="/img/report.png" width="240" height="180" alt="other">
</body></html>"""

START_CHECK = """async ([pageUrl, srcUrl]) => {
    const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
    self.fakescopeHandleMenuClick(
      {menuItemId: 'fakescope-check', srcUrl, frameId: 0, pageUrl}, tab);
}"""

# In the panel page: whether all of the panel's content fits in it (nothing scrolls).
FITS = f"() => {{ const s = {PANEL_ROOT}.querySelector('section'); "
FITS += "return s.scrollHeight <= s.clientHeight; }"


def frame_height(page: Any) -> float:
    """The panel iframe's height; 0 while there is none (or it is being replaced: no box)."""
    frame = panel_frame(page)
    box = frame.frame_element().bounding_box() if frame else None
    return float(box["height"]) if box else 0.0


def settled_height(page: Any, until: Any, fits: Any, what: str, showing: str = "") -> float:
    """The panel iframe's height once it shows `showing`, `fits(height)` holds for it and the
    content fits in it (or it is as tall as a panel may be)."""

    def settled() -> float:
        try:
            height = frame_height(page)
            shown = showing in panel_text(page, ".body")
            whole = height == MAX_HEIGHT or panel(page).evaluate(FITS)
        except PlaywrightError:  # the panel read was replaced by a new one meanwhile
            return 0.0
        return height if shown and fits(height) and whole else 0.0

    return float(until(settled, what=what))


@pytest.fixture
def sized_page(browser: Any, stub_server: Any, page_server: Any) -> Any:
    page_server.pages["/sizes.html"] = PAGE
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/sizes.html"))
    return page


def test_a_panel_about_the_pages_own_image_is_as_tall_as_what_it_shows(
    until: Any, browser: Any, stub_server: Any, page_server: Any, sized_page: Any
) -> None:
    page = sized_page
    stub_server.hold()
    browser.worker.evaluate(START_CHECK, [page.url, page_server.url("/img/check.png")])
    loading = settled_height(page, until, lambda h: 0 < h <= 2 * STEP, "small", LOADING)
    stub_server.release()

    until(lambda: panel_text(page, ".verdict") == "Likely authentic", what="the verdict")
    result = settled_height(page, until, lambda h: h > loading, "a taller verdict panel")

    assert loading % STEP == 0 and result % STEP == 0
    assert result <= MAX_HEIGHT
    # The panel still opens over its image's corner.
    pic = page.locator("#pic").bounding_box()
    box = panel_frame(page).frame_element().bounding_box()
    assert (box["x"], box["y"]) == (pic["x"] + 8, pic["y"] + 8)


def test_a_short_error_gets_a_short_panel(
    until: Any, browser: Any, stub_server: Any, page_server: Any, sized_page: Any
) -> None:
    page = sized_page
    outcome = browser.check_image(page, page_server.url("/img/gone.png"))

    assert not outcome["ok"], outcome
    until(lambda: "not there any more" in panel_text(page, ".body"), what="the error")
    error = settled_height(page, until, lambda h: 2 * STEP < h < MAX_HEIGHT, "a short panel")
    assert error % STEP == 0


def test_a_long_verdict_is_capped_and_a_new_check_is_small_again(
    until: Any, browser: Any, stub_server: Any, page_server: Any, sized_page: Any
) -> None:
    page = sized_page
    stub_server.analysis = {
        "explanation": "A long explanation. " * 80,
        "evidence": [
            {"kind": "exif", "summary": f"Camera tag {n}", "strength": "weak"} for n in range(12)
        ],
    }
    assert browser.check_image(page, page_server.url("/img/check.png"))["ok"]
    until(lambda: frame_height(page) == MAX_HEIGHT, what="the longest panel, capped")

    stub_server.hold()
    browser.worker.evaluate(START_CHECK, [page.url, page_server.url("/img/report.png")])
    small = settled_height(page, until, lambda h: 0 < h <= 2 * STEP, "small again", LOADING)
    stub_server.release()
    assert small % STEP == 0


SIMILAR = "ab" * 32  # the SHA-256 of an image that was checked, which the feed's image looks like


def answers_with_a_hint(stub_server: Any) -> None:
    """The stub server knows no image itself, but finds every one near SIMILAR."""

    def lookup(handler: Any) -> None:
        asked = json.loads(handler.body)
        if SIMILAR in asked.get("sha256", []):
            handler.reply(200, {"results": {SIMILAR: stub_server.answer(SIMILAR)}, "near": []})
            return
        near = [{"pdq": pdq, "sha256": SIMILAR, "distance": 12} for pdq in asked.get("pdq", [])]
        handler.reply(200, {"results": {}, "near": near})

    stub_server.routes["POST /v1/lookup"] = lookup


def test_a_feed_badges_hint_panel_follows_its_content(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    answers_with_a_hint(stub_server)
    page_server.pages["/sizes-feed.html"] = PAGE
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/sizes-feed.html"))

    page.locator(f'fakescope-badge button[data-src="{page_server.url("/img/check.png")}"]').click()

    until(lambda: panel_text(page, ".hint-title"), what="the badge's hint panel")
    hint = settled_height(page, until, lambda h: 2 * STEP < h < MAX_HEIGHT, "its own height")
    assert hint % STEP == 0
