"""Feed mode: switched on per site in the options, badges only on images the server already
knows, looked up by hash in batches; no image is uploaded."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser


def enable_feed_mode_in_options(browser: Any, site: str, until: Any) -> None:
    options = browser.context.new_page()
    options.goto(browser.extension_url("options/options.html"))
    options.wait_for_selector("body[data-ready=true]")
    assert options.locator("#feed-empty").is_visible(), "feed mode starts off everywhere"
    options.fill("#feed-site", site + "/some/page")
    options.click("#add-site")
    until(lambda: options.locator("#feed-sites li").count() == 1, what="the site in the list")
    assert options.locator("#feed-sites li span").inner_text() == site
    options.close()
    until(
        lambda: browser.worker.evaluate(
            "async () => (await chrome.scripting.getRegisteredContentScripts()).length"
        ),
        what="the feed content script registration",
    )


def badge_labels(page: Any) -> dict[str, str]:
    badges = page.locator("fakescope-badges button[data-src]")
    return {
        badges.nth(i).get_attribute("data-src"): badges.nth(i).get_attribute("data-label")
        for i in range(badges.count())
    }


def test_feed_mode_badges_only_known_images_without_uploading_any(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any, artifacts_dir: Path
) -> None:
    known = fakescope_server.analyze(page_server.images["known.png"], "known.png")
    lazy = fakescope_server.analyze(page_server.images["lazy.png"], "lazy.png")
    later = fakescope_server.analyze(page_server.images["later.png"], "later.png")
    uploads_before = fakescope_server.request_count("POST", "/v1/analyze")
    lookups_before = fakescope_server.request_count("POST", "/v1/lookup")
    browser.set_settings(serverUrl=fakescope_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)

    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    known_url = page_server.url("/img/known.png")
    until(lambda: known_url in badge_labels(page), what="a badge on the known image")
    page.wait_for_timeout(1500)  # let every lookup of the first screen finish
    labels = badge_labels(page)
    assert labels[known_url] == known["label"]
    assert page_server.url("/img/unknown.png") not in labels, "unknown images get no badge"
    assert page_server.url("/hotlink/guarded.png") not in labels
    assert page_server.url("/img/lazy.png") not in labels, "not looked up before it is visible"
    page.screenshot(path=str(artifacts_dir / "extension-feed-badges.png"))

    page.locator("#lazy").scroll_into_view_if_needed()
    lazy_url = page_server.url("/img/lazy.png")
    until(lambda: badge_labels(page).get(lazy_url) == lazy["label"], what="the lazy image badge")

    page.evaluate("window.appendImage('/img/later.png', 'later')")
    page.locator("#later").scroll_into_view_if_needed()
    later_url = page_server.url("/img/later.png")
    until(
        lambda: badge_labels(page).get(later_url) == later["label"],
        what="a badge on an image added by infinite scroll",
    )

    assert fakescope_server.request_count("POST", "/v1/analyze") == uploads_before, "no uploads"
    lookups = fakescope_server.request_count("POST", "/v1/lookup") - lookups_before
    assert 1 <= lookups <= 4, f"lookups are batched, got {lookups} requests"

    badge = page.locator(f'fakescope-badges button[data-src="{known_url}"]')
    assert "FakeScope:" in badge.get_attribute("aria-label")
    page.locator("#known").scroll_into_view_if_needed()
    badge.click()
    overlay = page.locator("fakescope-overlay")
    assert overlay.locator(".verdict").get_attribute("data-label") == known["label"]

    # Overlay and badge live in document coordinates: they scroll with the image.
    panel = overlay.locator("section[role=dialog]")
    offsets = lambda: [  # noqa: E731
        panel.bounding_box()["y"] - page.locator("#known").bounding_box()["y"],
        badge.bounding_box()["y"] - page.locator("#known").bounding_box()["y"],
    ]
    before = offsets()
    scroll_before = page.evaluate("window.scrollY")
    page.evaluate("window.scrollBy(0, 120)")
    assert page.evaluate("window.scrollY") == scroll_before + 120
    page.wait_for_timeout(300)
    assert offsets() == pytest.approx(before, abs=1)
    assert known["sha256"] == hashlib.sha256(page_server.images["known.png"]).hexdigest()


def test_feed_mode_is_off_until_a_site_is_switched_on(
    browser: Any, fakescope_server: Any, page_server: Any
) -> None:
    fakescope_server.analyze(page_server.images["known.png"], "known.png")
    lookups_before = fakescope_server.request_count("POST", "/v1/lookup")
    browser.set_settings(serverUrl=fakescope_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    page.wait_for_timeout(1500)
    assert page.locator("fakescope-badges").count() == 0
    assert fakescope_server.request_count("POST", "/v1/lookup") == lookups_before
