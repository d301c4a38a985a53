"""Tabs left open across an extension update or reload: if Chrome keeps a page's isolated
world, the content scripts of the dead instance are still there (their `globalThis` parts,
their listeners inert). A right-click check must still show its verdict: what an older
instance left is cleared out and the scripts are injected afresh, while this instance's own
scripts are never injected twice.

Chromium 156 gives a reloaded instance's scripts an isolated world of their own (a real reload,
developer mode on, is tested in test_extension_reload.py), so this case cannot be produced with
it: the tests leave in the extension's isolated world what an older instance would have left
there."""

from __future__ import annotations

from typing import Any

import pytest
from panel_helpers import panel

pytestmark = pytest.mark.browser

# What an older instance leaves in a page after a check, in three forms. Its functions stand
# for ones whose listeners died with it: nothing answers the worker's messages any more.
LEAVE_AN_OLDER_INSTANCE = """(form) => {
    const nothing = () => {};
    // FakeScope 0.1.0, before instance markers: its parts and nothing else.
    globalThis.__fakescopePageImage = true;
    globalThis.__fakescopeOverlayDom = { STYLE: '', h: nothing, uid: nothing };
    globalThis.__fakescopeOverlayForms = { askSection: nothing, reportSection: nothing };
    globalThis.__fakescope = { showOverlay: nothing, findImages: () => [], h: nothing };
    if (form === 'another instance') {
        const older = 'an-older-instance';
        globalThis.__fakescopeInjection = { instance: older, runtime: chrome.runtime };
    } else if (form === 'a dead runtime') {
        // A chrome.runtime whose extension context was invalidated has no id.
        globalThis.__fakescopeInjection = { instance: null, runtime: {} };
    }
    // Its panel, left open and dead.
    document.documentElement.append(document.createElement('fakescope-overlay'));
}"""


def in_extension_world(browser: Any, page: Any, func: str, arg: Any = None) -> Any:
    """Runs `func(arg)` in the page's isolated world of the extension, where its content
    scripts run, and returns its result."""
    return browser.worker.evaluate(
        f"""async ([pageUrl, arg]) => {{
            const tab = (await chrome.tabs.query({{}})).find((t) => t.url === pageUrl);
            const [{{ result }}] = await chrome.scripting.executeScript({{
                target: {{ tabId: tab.id }}, world: 'ISOLATED', func: {func}, args: [arg],
            }});
            return result;
        }}""",
        [page.url, arg],
    )


def overlay_count(page: Any) -> int:
    return int(page.evaluate("document.querySelectorAll('fakescope-overlay').length"))


@pytest.fixture
def page(browser: Any, stub_server: Any, page_server: Any) -> Any:
    browser.set_settings(serverUrl=stub_server.url)
    return browser.context.new_page()


@pytest.mark.parametrize("form", ["version 0.1.0", "another instance", "a dead runtime"])
def test_a_check_in_a_page_an_older_instance_left_scripts_in_shows_its_verdict(
    form: str, browser: Any, page: Any, page_server: Any
) -> None:
    page.goto(page_server.url("/plain.html"))
    in_extension_world(browser, page, LEAVE_AN_OLDER_INSTANCE, form)

    result = browser.check_image(page, page_server.url("/img/check.png"))

    assert result["ok"], result
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"
    assert overlay_count(page) == 1, "the dead panel went"


def test_this_instances_scripts_are_not_injected_twice_and_an_older_ones_are_stopped(
    until: Any, browser: Any, page: Any, page_server: Any
) -> None:
    page.goto(page_server.url("/plain.html"))
    assert browser.check_image(page, page_server.url("/img/check.png"))["ok"]
    keep = "() => { globalThis.firstPanel = globalThis.__fakescope; }"
    same = "() => globalThis.firstPanel === globalThis.__fakescope"
    in_extension_world(browser, page, keep)

    # Checked again, by this instance: the scripts already there answer, nothing is added.
    assert browser.check_image(page, page_server.url("/img/report.png"))["ok"]
    assert in_extension_world(browser, page, same), "the panel's script did not run again"
    assert overlay_count(page) == 1
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"

    # The same scripts, as if an older instance (whose context outlived it) had left them:
    # replaced, and stopped, or both panels would answer the next check.
    in_extension_world(
        browser, page, "() => { globalThis.__fakescopeInjection.instance = 'an-older-instance'; }"
    )
    assert browser.check_image(page, page_server.url("/img/down.png"))["ok"]
    assert not in_extension_world(browser, page, same), "injected afresh"
    assert overlay_count(page) == 1, "one panel: the older one closed and stopped listening"
    assert panel(page).locator(".verdict").get_attribute("data-label") == "real"
    assert browser.check_image(page, page_server.url("/img/check.png"))["ok"]
    assert overlay_count(page) == 1
