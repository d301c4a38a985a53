"""Pages whose Content-Security-Policy forbids frames, or everything, or sandboxes them: the panel
is an extension page in an iframe (content/overlay.js), which a page's CSP could block. Measured in
Chromium: it does not, for a right-click check of the page's own image and for a feed badge's
panel."""

from __future__ import annotations

from typing import Any

import pytest
from feed_helpers import knows_every_image, switch_feed_mode_on
from panel_helpers import panel_text

pytestmark = pytest.mark.browser

POLICIES = {
    "frame-src none": "frame-src 'none'",
    "child-src none": "child-src 'none'",
    "default-src none": "default-src 'none'; img-src 'self'",
    "sandbox": "sandbox allow-scripts",
}

CSP_PAGE = """<!doctype html><html><head><title>Strict</title></head><body>
<h1>A page with a strict policy</h1>
<img id="pic" src="/img/check.png" width="240" height="180" alt="pic">
</body></html>"""


# In the page: whether its policy is in force (a frame of its own site is refused, or the
# document's origin is opaque).
POLICY_IN_FORCE = """async (sandboxed) => {
    if (sandboxed) return self.origin === 'null';
    const refused = new Promise((resolve) => document.addEventListener(
      'securitypolicyviolation', (event) => resolve(event.effectiveDirective), {once: true}));
    const frame = document.createElement('iframe');
    frame.src = '/plain.html';
    document.body.append(frame);
    return ['frame-src', 'child-src', 'default-src'].includes(await refused);
}"""


def open_strict_page(browser: Any, page_server: Any, name: str) -> Any:
    """A page served with policy `name`, checked to be in force there."""
    path = f"/csp-{name.replace(' ', '-')}.html"
    page_server.pages[path] = CSP_PAGE
    page_server.headers[path] = {"Content-Security-Policy": POLICIES[name]}
    page = browser.context.new_page()
    response = page.goto(page_server.url(path))
    assert response.headers["content-security-policy"] == POLICIES[name]
    assert page.evaluate(POLICY_IN_FORCE, name == "sandbox") is True
    return page


@pytest.mark.parametrize("name", list(POLICIES))
def test_a_right_click_check_shows_its_verdict_under_the_pages_policy(
    until: Any, browser: Any, stub_server: Any, page_server: Any, name: str
) -> None:
    browser.set_settings(serverUrl=stub_server.url)
    page = open_strict_page(browser, page_server, name)

    result = browser.check_image(page, page_server.url("/img/check.png"))

    assert result["ok"], result
    until(lambda: panel_text(page, ".verdict") == "Likely authentic", what="the verdict")


@pytest.mark.parametrize("name", list(POLICIES))
def test_a_feed_badges_panel_shows_under_the_pages_policy(
    until: Any, browser: Any, stub_server: Any, page_server: Any, name: str
) -> None:
    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, page_server.origin, until)
    page = open_strict_page(browser, page_server, name)
    badge = page.locator(f'fakescope-badge button[data-src="{page_server.url("/img/check.png")}"]')

    badge.click()

    until(lambda: panel_text(page, ".verdict") == "Likely authentic", what="the badge's panel")
