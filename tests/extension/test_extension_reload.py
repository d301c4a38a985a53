"""A real extension reload while a panel or feed badges are in a page: the old instance's
content scripts are orphaned (their extension context invalidated) and the panel page in the
iframe dies with them, its close button inert. Chrome runs the new instance's scripts in an
isolated world of their own, which never sees the old panel or badges, so the orphaned scripts
take them away themselves, give the focus back, and the new instance's checks work in the same
page.

The extension is reloaded as it reloads itself, `chrome.runtime.reload()` from one of its pages,
with developer mode on: without it Chromium disables an unpacked extension once reloaded."""

from __future__ import annotations

from typing import Any

import pytest
from feed_helpers import knows_every_image, switch_feed_mode_on
from panel_helpers import panel

pytestmark = pytest.mark.browser

FIELD_PAGE = (
    "<!doctype html><html><head><title>Field</title></head><body>"
    '<input id="field" aria-label="A field of the page">'
    '<img id="check" src="/img/check.png" width="240" height="180" alt="check">'
    "</body></html>"
)
LINKED_FEED_PAGE = (
    "<!doctype html><html><head><title>Linked feed</title></head><body>"
    '<a id="post" href="/post.html">'
    '<img src="/img/known.png" width="240" height="180" alt="post"></a>'
    "</body></html>"
)


def reload_extension(browser: Any) -> None:
    """Reloads the extension, and points `browser.worker` at the new instance's worker."""
    settings = browser.context.new_page()
    settings.goto("chrome://extensions")
    settings.evaluate(
        """() => new Promise((done) =>
            chrome.developerPrivate.updateProfileConfiguration({inDeveloperMode: true}, done))"""
    )
    settings.close()
    page = browser.context.new_page()
    page.goto(browser.extension_url("popup/popup.html"))
    with browser.context.expect_event("serviceworker", timeout=20_000) as started:
        # After the evaluation has answered: the page goes with the extension.
        page.evaluate("() => { setTimeout(() => chrome.runtime.reload()); }")
    assert started.value.url == browser.worker.url
    browser.worker = started.value


HOSTS = "fakescope-overlay, fakescope-badge, fakescope-notice"


def hosts(page: Any) -> int:
    """FakeScope's elements in the page: panels, badges, notices."""
    return int(page.evaluate("(hosts) => document.querySelectorAll(hosts).length", HOSTS))


def errors_of(page: Any) -> list[str]:
    """Errors that scripts in the page (FakeScope's content scripts too) report from now on; not
    the browser's own notes on resources that failed to load (the page has no favicon)."""
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", on_console)
    return errors


def test_a_panel_left_open_goes_when_the_extension_is_reloaded_and_a_new_check_works(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    page_server.pages["/field.html"] = FIELD_PAGE
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    errors = errors_of(page)
    page.goto(page_server.url("/field.html"))
    page.focus("#field")
    assert browser.check_image(page, page_server.url("/img/check.png"))["ok"]
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"
    until(lambda: page.evaluate("document.activeElement.localName") == "fakescope-overlay")

    reload_extension(browser)

    until(lambda: hosts(page) == 0, 10, "the dead panel to go")
    assert page.evaluate("document.activeElement.id") == "field", "the focus is back"
    assert errors == []
    # The new instance's scripts go into the same page and show its verdict.
    assert browser.check_image(page, page_server.url("/img/report.png"))["ok"]
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"
    assert hosts(page) == 1


def test_feed_badges_and_their_panel_go_when_the_extension_is_reloaded(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, page_server.origin, until)
    page_server.pages["/linked-feed.html"] = LINKED_FEED_PAGE
    page = browser.context.new_page()
    errors = errors_of(page)
    page.goto(page_server.url("/linked-feed.html"))
    badge = page.locator(f'fakescope-badge button[data-src="{page_server.url("/img/known.png")}"]')
    until(lambda: badge.count() == 1, what="the known image's badge")
    badge.click()
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"
    assert page.locator("fakescope-overlay").count() == 1
    until(lambda: page.evaluate("document.activeElement.localName") == "fakescope-overlay")

    reload_extension(browser)

    until(lambda: hosts(page) == 0, 10, "the dead badges and panel to go")
    # The focus went back to the badge as the panel closed; with the badge gone it is on the
    # link around the image (the badge's place in the tab order), not lost to the body.
    assert page.evaluate("document.activeElement.id") == "post"
    assert errors == []
    # A right-click check by the new instance in the same page.
    assert browser.check_image(page, page_server.url("/img/unknown.png"))["ok"]
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"
    assert hosts(page) == 1
