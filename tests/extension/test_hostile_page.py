"""Page CSS hostile to the overlay (`* { all: unset }`, a full-page layer at the largest
z-index, rules aimed at the overlay's own tag) neither hides nor restyles it, and the
overlay does not move the page's content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from panel_helpers import panel

pytestmark = pytest.mark.browser
PAGE_SIZE = "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
HIT_TEST = "([x, y]) => document.elementFromPoint(x, y)?.tagName"


def test_hostile_page_css_does_not_break_the_overlay(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any, artifacts_dir: Path
) -> None:
    browser.set_settings(serverUrl=fakescope_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/hostile.html"))
    image_box_before = page.locator("#target").bounding_box()
    layout_before = page.evaluate(PAGE_SIZE)

    result = browser.check_image(page, page_server.url("/img/hostile.png"))
    assert result["ok"], result

    host = page.locator("fakescope-overlay")
    overlay = panel(page)
    frame = overlay.frame_element()
    overlay.locator("section[role=dialog]").wait_for()  # drawn once the panel page has loaded
    assert frame.is_visible() and overlay.locator("section[role=dialog]").is_visible()
    # The panel about the page's own image opens small and grows to its verdict once the panel
    # page has drawn and measured it (the worker has the host set the new height).
    overlay.locator(".verdict").wait_for()
    until(
        lambda: (frame.bounding_box() or {}).get("height", 0) >= 200,
        what="the panel grown to its verdict",
    )
    box = frame.bounding_box()
    assert box is not None and box["width"] >= 300 and box["height"] >= 200
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1000, "inside the viewport"
    verdict = overlay.locator(".verdict")
    assert verdict.evaluate("(el) => getComputedStyle(el).fontSize") == "20px"
    assert verdict.evaluate("(el) => getComputedStyle(el).display") == "block"
    # Nothing of the page sits on top: the hit test at the panel's centre lands in the overlay.
    hit = page.evaluate(HIT_TEST, [box["x"] + box["width"] / 2, box["y"] + 40])
    assert hit == "FAKESCOPE-OVERLAY"
    overlay.get_by_role("button", name="Close FakeScope result").focus()
    assert page.locator("#target").bounding_box() == image_box_before, "the image did not move"
    assert page.evaluate(PAGE_SIZE) == layout_before, "the page did not grow or reflow"
    page.screenshot(path=str(artifacts_dir / "extension-overlay-hostile-page.png"))

    overlay.get_by_role("button", name="Close FakeScope result").click()
    until(lambda: host.count() == 0, what="the panel to close")
