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


def test_switching_feed_mode_off_stops_lookups_on_pages_already_open(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any
) -> None:
    fakescope_server.analyze(page_server.images["known.png"], "known.png")
    fakescope_server.analyze(page_server.images["lazy.png"], "lazy.png")
    browser.set_settings(serverUrl=fakescope_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    until(lambda: page_server.url("/img/known.png") in badge_labels(page), what="a badge")

    options = browser.context.new_page()
    options.goto(browser.extension_url("options/options.html"))
    options.wait_for_selector("body[data-ready=true]")
    options.get_by_role("button", name=f"Turn off feed mode on {page_server.origin}").click()
    until(lambda: options.locator("#feed-empty").is_visible(), what="feed mode off")
    lookups_before = fakescope_server.request_count("POST", "/v1/lookup")

    page.bring_to_front()
    page.locator("#lazy").scroll_into_view_if_needed()
    page.evaluate("window.appendImage('/img/later.png', 'later')")
    page.locator("#later").scroll_into_view_if_needed()
    page.wait_for_timeout(2000)

    assert fakescope_server.request_count("POST", "/v1/lookup") == lookups_before, "no lookups"
    assert badge_labels(page) == {}, "the badges went with feed mode"


def test_a_badge_leaves_an_image_whose_source_changes(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any
) -> None:
    known = fakescope_server.analyze(page_server.images["known.png"], "known.png")
    browser.set_settings(serverUrl=fakescope_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    known_url = page_server.url("/img/known.png")
    until(lambda: badge_labels(page).get(known_url) == known["label"], what="the badge")

    # A carousel (or a recycled row of a virtual list) shows another image in the same <img>.
    page.evaluate("document.getElementById('known').src = '/img/unknown.png'")
    page.wait_for_function("document.getElementById('known').currentSrc.endsWith('unknown.png')")
    page.wait_for_timeout(1200)

    assert known_url not in badge_labels(page), "the old image's verdict left with it"
    assert page.locator("fakescope-badges button").count() == 0

    page.evaluate("document.getElementById('known').src = '/img/known.png'")
    until(lambda: badge_labels(page).get(known_url) == known["label"], what="the badge again")
