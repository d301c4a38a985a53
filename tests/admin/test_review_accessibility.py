"""What the sign-in and review pages owe keyboard, screen-reader, speech-input and low-vision users
beyond what axe-core checks: a field whose sign-in failed is exposed as invalid, a text field's
edge can be seen (3:1 against its card, WCAG 1.4.11), and the single-key shortcuts can be turned
off and stay off (WCAG 2.1.4). Read from Chromium's own accessibility tree and computed styles,
in real headless Chromium against a real server process."""

from __future__ import annotations

from typing import Any

import pytest
from test_review_browser import (  # noqa: F401
    ReviewServer,
    _chromium,
    _seed_flagged_items,
    live_server,
)

pytestmark = pytest.mark.browser

# The contrast of an element's top border against the first opaque background behind it (WCAG's
# relative luminance; a border with some transparency is blended over that background first).
EDGE_CONTRAST = """(el) => {
    const rgba = (c) => c.match(/[\\d.]+/g).map(Number).concat(1).slice(0, 4);
    const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3]));
    const luminance = (rgb) => rgb.map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
      .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
    let behind = [255, 255, 255];
    for (let node = el.parentElement; node; node = node.parentElement) {
      const bg = rgba(getComputedStyle(node).backgroundColor);
      if (bg[3] === 1) { behind = bg.slice(0, 3); break; }
    }
    const edge = over(rgba(getComputedStyle(el).borderTopColor), behind);
    const [light, dark] = [luminance(edge), luminance(behind)].sort((a, b) => b - a);
    return (light + 0.05) / (dark + 0.05);
}"""


# Counts what a shortcut does to the page (the click it makes, the form it submits).
COUNT_CLICKS = """() => {
    window.shortcutEffects = 0;
    for (const type of ['click', 'submit']) {
        document.addEventListener(type, () => { window.shortcutEffects += 1; }, true);
    }
}"""


def _ax_node(page: Any, selector: str) -> dict[str, Any]:
    """Chromium's accessibility node of the element `selector` finds: its role, name,
    description and properties (invalid, required, ...), as a screen reader gets them."""
    cdp = page.context.new_cdp_session(page)
    try:
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        node_id = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        nodes = cdp.send("Accessibility.getPartialAXTree", {"nodeId": node_id})["nodes"]
    finally:
        cdp.detach()
    node = nodes[0]
    return {
        "role": node["role"]["value"],
        "name": node.get("name", {}).get("value"),
        "description": node.get("description", {}).get("value"),
        **{p["name"]: p["value"].get("value") for p in node.get("properties", [])},
    }


def _sign_in(page: Any, server: ReviewServer) -> None:
    page.goto(f"{server.url}/admin")
    page.get_by_label("API token").fill(server.reviewer_token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#decide-form").wait_for()


def test_a_failed_sign_in_is_read_as_an_invalid_field_and_the_field_can_be_seen(
    live_server: ReviewServer,  # noqa: F811
    chromium_path: str,
) -> None:
    from playwright.sync_api import expect

    with _chromium(chromium_path) as browser:
        page = browser.new_page()
        page.goto(f"{live_server.url}/admin")
        field = page.get_by_label("API token")
        assert _ax_node(page, "#token")["invalid"] == "false"
        # The field's edge is what shows where to type, on the white card it sits on.
        assert field.evaluate(EDGE_CONTRAST) >= 3, field.evaluate(EDGE_CONTRAST)

        field.fill("fs_not-a-token")
        page.get_by_role("button", name="Sign in").click()
        alert = page.get_by_role("alert")
        expect(alert).to_be_visible()
        # Read as the screen reader reads it: the field is invalid and the error describes it.
        node = _ax_node(page, "#token")
        assert node["invalid"] == "true", node
        assert node["description"] == alert.inner_text().strip(), node


def test_the_note_field_can_be_seen_against_its_card(
    live_server: ReviewServer,  # noqa: F811
    chromium_path: str,
) -> None:
    _seed_flagged_items(live_server)
    with _chromium(chromium_path) as browser:
        page = browser.new_page()
        _sign_in(page, live_server)
        note = page.get_by_label("Note (optional)")
        assert note.evaluate(EDGE_CONTRAST) >= 3, note.evaluate(EDGE_CONTRAST)


def test_single_key_shortcuts_can_be_turned_off_and_stay_off(
    live_server: ReviewServer,  # noqa: F811
    chromium_path: str,
) -> None:
    from playwright.sync_api import expect

    _seed_flagged_items(live_server)
    with _chromium(chromium_path) as browser:
        page = browser.new_page()
        _sign_in(page, live_server)
        count = page.locator("#queue-count")
        expect(count).to_have_text("3 open")
        switch = page.get_by_role("checkbox", name="Single-key shortcuts")
        expect(switch).to_be_checked()

        # Off: a stray f (speech input typing a word, a slip of the hand) decides nothing, and
        # the buttons no longer announce keys that do nothing. A shortcut clicks its button or
        # link (and a decision submits the form) within the key's own event: counted here.
        switch.uncheck()
        page.evaluate(COUNT_CLICKS)
        page.locator("main").focus()
        for key in ("f", "r", "s"):
            page.keyboard.press(key)
        assert page.evaluate("() => window.shortcutEffects") == 0
        fake = page.locator("#decide-fake")
        expect(fake).not_to_have_attribute("aria-keyshortcuts", "f")
        expect(fake).to_have_accessible_name("Fake")

        # The choice stays with this browser, on the next page too.
        page.reload()
        switch = page.get_by_role("checkbox", name="Single-key shortcuts")
        expect(switch).not_to_be_checked()
        page.evaluate(COUNT_CLICKS)
        page.locator("main").focus()
        page.keyboard.press("f")
        assert page.evaluate("() => window.shortcutEffects") == 0
        expect(count).to_have_text("3 open")

        # On again: the key decides, as before.
        switch.check()
        expect(fake).to_have_attribute("aria-keyshortcuts", "f")
        page.locator("main").focus()
        page.keyboard.press("f")
        expect(count).to_have_text("2 open")
