"""What the extension's pages owe screen-reader and low-vision users beyond what axe-core checked
(extension/README.md, Accessibility): a field whose entry was refused is exposed as invalid, with
the error as its description, and the focus back on it; and no text of the popup, the options
page, the check-file page or the result panel falls below WCAG AA contrast (4.5:1, 3:1 for large
text), nor a text field's edge below 3:1. Read from Chromium's own accessibility tree and computed
styles."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from panel_helpers import panel, panel_text

pytestmark = pytest.mark.browser

# Each text whose contrast with the background behind it is under WCAG AA, and each text field
# whose edge is under 3:1 (WCAG 1.4.11), in the document and its open shadow roots (the panel).
# The background is the first opaque one among the element's ancestors (across shadow roots),
# with the translucent ones above it blended in; a disabled control is exempt.
LOW_CONTRAST = """() => {
    const rgba = (c) => c.match(/[\\d.]+/g).map(Number).concat(1).slice(0, 4);
    const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3]));
    const luminance = (rgb) => rgb.map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
      .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
    const contrast = (a, b) => {
      const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x);
      return (light + 0.05) / (dark + 0.05);
    };
    const up = (node) => node.parentElement ?? node.getRootNode().host ?? null;
    const behind = (el) => {
      const layers = [];
      for (let node = el; node; node = up(node)) {
        const bg = rgba(getComputedStyle(node).backgroundColor);
        if (bg[3] > 0) layers.unshift(bg);
        if (bg[3] === 1) break;
      }
      return layers.reduce((below, layer) => over(layer, below), [255, 255, 255]);
    };
    const low = [];
    const visit = (root) => {
      for (const el of root.querySelectorAll('*')) {
        if (el.shadowRoot) visit(el.shadowRoot);
        if (!el.checkVisibility() || el.closest(':disabled')) continue;
        const style = getComputedStyle(el);
        const bg = behind(el);
        const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
        if (own) {
          const size = parseFloat(style.fontSize);
          const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
          const ratio = contrast(over(rgba(style.color), bg), bg);
          if (ratio < (large ? 3 : 4.5)) low.push([el.textContent.trim().slice(0, 30), ratio]);
        }
        if (el.matches('input:not([type=checkbox], [type=radio], [type=file]), textarea, select')) {
          const edge = contrast(over(rgba(style.borderTopColor), behind(up(el))), behind(up(el)));
          if (edge < 3) low.push([`${el.localName}#${el.id} edge`, edge]);
        }
      }
    };
    visit(document);
    return low;
}"""


def _ax_node(page: Any, selector: str) -> dict[str, Any]:
    """Chromium's accessibility node of the element `selector` finds (role, name, description and
    properties such as invalid and focused), as a screen reader gets it."""
    cdp = page.context.new_cdp_session(page)
    try:
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        node_id = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        node = cdp.send("Accessibility.getPartialAXTree", {"nodeId": node_id})["nodes"][0]
    finally:
        cdp.detach()
    return {
        "role": node["role"]["value"],
        "name": node.get("name", {}).get("value"),
        "description": node.get("description", {}).get("value"),
        **{p["name"]: p["value"].get("value") for p in node.get("properties", [])},
    }


def test_an_image_site_that_is_no_address_is_an_invalid_field_with_the_focus_back_on_it(
    browser: Any,
) -> None:
    from playwright.sync_api import expect

    page = browser.context.new_page()
    page.goto(browser.extension_url("options/options.html"))
    page.wait_for_selector("body[data-ready=true]")
    field = page.get_by_label("Image site", exact=True)
    field.fill("images of my cat")
    page.get_by_role("button", name="Allow").click()

    status = page.locator("#grant-status")
    expect(status).to_have_text("Enter an address starting with http:// or https://")
    expect(field).to_be_focused()
    node = _ax_node(page, "#grant-origin")
    assert node["invalid"] == "true", node
    assert node["description"] == status.inner_text(), node

    # A site's address (one the extension may read already: no prompt) clears the mark.
    field.fill("http://localhost:8123")
    field.press("Enter")
    expect(status).to_have_text("FakeScope may now read images from http://localhost:8123.")
    assert _ax_node(page, "#grant-origin")["invalid"] == "false"


def test_no_text_of_the_extensions_pages_and_panel_is_below_aa_contrast(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    browser.set_settings(serverUrl=stub_server.url)
    for path in ("popup/popup.html", "options/options.html", "check-file/check-file.html"):
        page = browser.context.new_page()
        page.goto(browser.extension_url(path))
        page.wait_for_load_state()
        if path.startswith("popup"):
            until(lambda p=page: "Server ready" in p.inner_text("#server-status"), what="status")
        if path.startswith("options"):
            # Every error and status shown, in the colours they are shown in.
            page.wait_for_selector("body[data-ready=true]")
            page.get_by_label("Server address").fill("ftp://nowhere")
            page.get_by_role("button", name="Save").click()
            page.locator("#server-url-error").filter(has_text="http").wait_for()
        assert page.evaluate(LOW_CONTRAST) == [], path
        page.close()

    # The panel with a verdict and its report form open.
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))
    assert browser.check_image(page, page_server.url("/img/check.png"))["ok"]
    until(lambda: panel_text(page, ".verdict"), what="the verdict")
    frame = panel(page)
    frame.get_by_role("button", name="Report a wrong verdict").click()
    frame.get_by_role("button", name="Send report").click()
    frame.get_by_text("Please say why the verdict is wrong.").wait_for()
    assert frame.evaluate(LOW_CONTRAST) == []


def test_a_streaming_answer_is_busy_until_it_ends_so_it_is_read_once_whole(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    released = threading.Event()

    def answer(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        handler.wfile.write(b'event: token\ndata: {"text": "The shadows "}\n\n')
        handler.wfile.flush()
        released.wait(30)
        handler.wfile.write(b'event: token\ndata: {"text": "agree."}\n\n')
        done = (
            b'{"answer": "The shadows agree.", "sha256": "x", "created_at": "2026-11-28T00:00:00Z"}'
        )
        handler.wfile.write(b"event: done\ndata: " + done + b"\n\n")
        handler.wfile.flush()
        handler.close_connection = True

    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))
    assert browser.check_image(page, page_server.url("/img/check.png"))["ok"]
    stub_server.routes["POST /v1/ask"] = answer
    frame = panel(page)
    frame.get_by_role("button", name="Ask about the aspect").click()
    until(lambda: frame.locator(".answer").inner_text() == "The shadows ", what="the first piece")
    assert frame.locator(".answer").get_attribute("aria-busy") == "true"
    released.set()
    until(lambda: frame.locator(".status.muted").inner_text() == "Answer complete.", what="end")
    assert frame.locator(".answer").inner_text() == "The shadows agree."
    assert frame.locator(".answer").get_attribute("aria-busy") is None
