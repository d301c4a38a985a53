"""Taking back the extension's access to a site, as a user does on chrome://extensions (*Site
access: On click*): feed mode stops there, and what the worker read with that access (the
SHA-256 and PDQ hashes of the images at their addresses, in chrome.storage.session) is
forgotten at once, instead of answering that site's lookups and checks until it expires (10
minutes). The analyses themselves stay: they are keyed by the bytes' hash, which only someone
holding the bytes can ask for."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import extension_id
from feed_helpers import knows_every_image, switch_feed_mode_on

pytestmark = pytest.mark.browser

# What the worker keeps in chrome.storage.session, by prefix (worker/session-caches.js).
STORED = """async () => {
    const all = await chrome.storage.session.get(null);
    const count = (prefix) => Object.keys(all).filter((key) => key.startsWith(prefix)).length;
    return {reads: count('url:'), pdqs: count('pdq:'), analyses: count('analysis:')};
}"""


def set_site_access(browser: Any, access: str) -> None:
    """The extension's site access as chrome://extensions sets it: ON_CLICK withholds every
    host permission (the extension gets permissions.onRemoved), ON_ALL_SITES gives them back."""
    settings = browser.context.new_page()
    settings.goto("chrome://extensions")
    settings.evaluate(
        """([id, access]) => new Promise((done, fail) =>
            chrome.developerPrivate.updateExtensionConfiguration(
                {extensionId: id, hostAccess: access},
                () => chrome.runtime.lastError
                    ? fail(chrome.runtime.lastError.message) : done()))""",
        [extension_id(), access],
    )
    settings.close()


def test_taking_back_a_sites_access_forgets_what_was_read_there(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    known = page.locator(f'fakescope-badge button[data-src="{page_server.url("/img/known.png")}"]')
    until(lambda: known.count() == 1, what="the known image's badge")
    stored = until(
        lambda: (s := browser.worker.evaluate(STORED))["reads"] and s["pdqs"] and s,
        what="the feed's reads remembered",
    )
    # The page's other images finish their lookups too (a read under way when access goes is
    # not remembered either, but this test is about what was remembered).
    seen: list[dict[str, int]] = []

    def settled() -> bool:
        seen.append(browser.worker.evaluate(STORED))
        return len(seen) >= 3 and seen[-3:] == [seen[-1]] * 3

    until(settled, what="the feed's reads settled")
    stored = seen[-1]
    assert stored["analyses"] >= 1

    set_site_access(browser, "ON_CLICK")

    until(
        lambda: (s := browser.worker.evaluate(STORED))["reads"] == 0 and s["pdqs"] == 0,
        what="the reads made with that access forgotten",
    )
    assert browser.worker.evaluate(STORED)["analyses"] == stored["analyses"], "analyses stay"
    until(
        lambda: (
            not browser.worker.evaluate(
                "async () => (await chrome.scripting.getRegisteredContentScripts()).length"
            )
        ),
        what="feed mode to stop on the site",
    )

    # Given back, feed mode works there again and reads afresh.
    set_site_access(browser, "ON_ALL_SITES")
    until(
        lambda: browser.worker.evaluate(
            "async () => (await chrome.scripting.getRegisteredContentScripts()).length"
        ),
        what="feed mode back on the site",
    )
    again = browser.context.new_page()
    again.goto(page_server.url("/feed.html"))
    badge = again.locator(f'fakescope-badge button[data-src="{page_server.url("/img/known.png")}"]')
    until(lambda: badge.count() == 1, what="the known image's badge again")
    until(lambda: browser.worker.evaluate(STORED)["reads"] >= 1, what="read afresh")
