"""Long values keep to the extension's pages: a long server address, site or file name breaks
inside its box instead of running past it (the popup, the options page at 320 px, the check-file
page), a site's **Turn off** button keeps its label on one line, and a report's choices sit
beside their radio buttons. Measured in the real browser, from the text's own line boxes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import EXTENSION_DIR, make_png
from panel_helpers import panel, panel_text

pytestmark = pytest.mark.browser

# Each element (by selector) whose text runs past the right edge of its box (the element's
# own, or the one `box` selects, for inline elements): [selector, by how many px].
TEXT_OUTSIDE = """([selectors, box = null]) => selectors.flatMap((selector) =>
  [...document.querySelectorAll(selector)].flatMap((el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const right = Math.max(...[...range.getClientRects()].map((r) => r.right));
    const over = right - (box ? document.querySelector(box) : el).getBoundingClientRect().right;
    return over > 0.5 ? [[selector, Math.round(over)]] : [];
  }))"""

# Whether the page scrolls sideways.
SCROLLS_SIDEWAYS = "() => document.documentElement.scrollWidth > innerWidth"

# A long word of a server's path: no hyphen, so nothing breaks it but the page's CSS.
LONG_PATH = "/imageforensicsgatewayservice" * 3
LONG_HOST = "internationalbroadcastingcorporationnewsandcurrentaffairs.localhost"


@pytest.fixture
def extension_dir(tmp_path: Path) -> Path:
    """The extension, allowed to read the long-named site (as the user's click on the toolbar
    button allows the popup to, for the tab it is over): the popup names the site."""
    copy = tmp_path / "extension"
    shutil.copytree(EXTENSION_DIR, copy, ignore=shutil.ignore_patterns("tests"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["host_permissions"].append(f"http://{LONG_HOST}/*")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_the_popup_breaks_a_long_server_address_and_site_inside_its_width(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    # The server is up, at an address with a long path; the page is on a site with a long name
    # (*.localhost is this computer, so the page server answers it).
    browser.set_settings(serverUrl=stub_server.url + LONG_PATH)
    page_server.pages["/long-site.html"] = "<!doctype html><title>Site</title><p>A page"
    site = browser.context.new_page()
    site.goto(f"http://{LONG_HOST}:{page_server.port}/long-site.html")
    # The popup's page in a background tab: the site's tab stays the active one it asks about.
    with browser.context.expect_page() as opened:
        browser.worker.evaluate(
            "(url) => chrome.tabs.create({url, active: false})",
            browser.extension_url("popup/popup.html"),
        )
    popup = opened.value
    # The browser sizes a popup to its body: 320 px and the padding.
    popup.set_viewport_size({"width": 348, "height": 600})
    until(lambda: "Server ready" in popup.locator("#server-status").inner_text(), what="status")
    until(lambda: LONG_HOST in popup.locator("#feed-site").inner_text(), what="the site")

    assert popup.evaluate(TEXT_OUTSIDE, [["#server-status", "#feed-site"], "main"]) == []
    assert not popup.evaluate(SCROLLS_SIDEWAYS)


def test_options_keep_long_feed_sites_and_their_buttons_inside_a_narrow_window(
    browser: Any,
) -> None:
    sites = [f"https://{'x' * 60}.example.org", f"https://{LONG_HOST[:-10]}.co.uk"]
    browser.set_settings(feedSites=sites)
    page = browser.context.new_page()
    page.set_viewport_size({"width": 320, "height": 800})  # a phone-sized window, or zoom 300 %
    page.goto(browser.extension_url("options/options.html"))
    page.wait_for_selector("body[data-ready=true]")
    page.locator("#feed-sites li").nth(len(sites) - 1).wait_for()

    assert page.evaluate(TEXT_OUTSIDE, [["#feed-sites li span", "#feed-sites li"]]) == []
    assert not page.evaluate(SCROLLS_SIDEWAYS)
    lines = """() => [...document.querySelectorAll('#feed-sites button')].map((button) => {
        const range = document.createRange();
        range.selectNodeContents(button);
        return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
    })"""
    assert page.evaluate(lines) == [1] * len(sites), "“Turn off” broke over two lines"


def test_the_check_file_page_breaks_a_long_server_address_and_file_name(
    until: Any, browser: Any, stub_server: Any, tmp_path: Path
) -> None:
    browser.set_settings(serverUrl=stub_server.url + LONG_PATH)
    picture = tmp_path / ("IMG_20251128_162554_" + "holiday_photos_from_the_beach" * 4 + ".png")
    picture.write_bytes(make_png(11))
    page = browser.context.new_page()
    page.set_viewport_size({"width": 320, "height": 800})
    page.goto(browser.extension_url("check-file/check-file.html"))
    until(lambda: LONG_PATH in page.locator("#intro").inner_text(), what="the server's address")
    page.set_input_files("#file", str(picture))
    until(lambda: picture.name in page.locator("#chosen").inner_text(), what="the file's name")

    assert page.evaluate(TEXT_OUTSIDE, [["#intro", "#chosen"]]) == []
    assert not page.evaluate(SCROLLS_SIDEWAYS)


def test_a_reports_choices_sit_beside_their_radio_buttons(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    # The radios took `flex: 1` from the panel's rule for text fields: each one stood in the
    # middle of the row and its words ("Authentic") at the far right.
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))
    assert browser.check_image(page, page_server.url("/img/check.png"))["ok"]
    until(lambda: panel_text(page, ".verdict"), what="the verdict")
    frame = panel(page)
    frame.get_by_role("button", name="Report a wrong verdict").click()
    # How far each choice's words start from the left of its row: a radio button and a gap.
    starts = """() => [...document.querySelector('fakescope-panel').shadowRoot
        .querySelectorAll('fieldset label')].map((label) => {
            const range = document.createRange();
            range.selectNodeContents(label.lastChild);
            const start = range.getBoundingClientRect().left;
            return Math.round(start - label.getBoundingClientRect().left);
        })"""
    until(lambda: frame.evaluate(starts), what="the report's choices")

    assert all(start <= 32 for start in frame.evaluate(starts)), frame.evaluate(starts)
