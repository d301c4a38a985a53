"""**Check an image file…**: the popup opens check-file/check-file.html in a tab; a file picked
there (or dropped) goes to the server through the service worker like any check, and the page
shows the verdict in the panel's own words and controls (panel/panel.js). Bad input gets the
same failures as any check."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from conftest import make_png
from live_server import free_port

pytestmark = pytest.mark.browser

HEADLINES = {"Likely AI-generated", "Likely authentic", "Uncertain"}


def open_check_file_page(browser: Any) -> Any:
    page = browser.context.new_page()
    page.goto(browser.extension_url("check-file/check-file.html"))
    return page


def pick(page: Any, name: str, data: bytes, mime: str = "image/png") -> None:
    page.get_by_label("Image file").set_input_files(
        {"name": name, "mimeType": mime, "buffer": data}
    )


def dialog(page: Any) -> Any:
    return page.get_by_role("dialog", name="FakeScope")


def test_the_popup_opens_the_check_file_page_in_a_tab(browser: Any) -> None:
    popup = browser.context.new_page()
    popup.goto(browser.extension_url("popup/popup.html"))

    with browser.context.expect_page() as opened:
        popup.get_by_role("button", name="Check an image file…").click()

    page = opened.value
    page.wait_for_load_state()
    assert page.url == browser.extension_url("check-file/check-file.html")
    assert page.get_by_role("heading", name="Check an image file").is_visible()
    assert page.get_by_label("Image file").get_attribute("type") == "file"


def test_a_picked_file_is_checked_by_the_server_and_its_verdict_shown(
    until: Any, browser: Any, fakescope_server: Any
) -> None:
    browser.set_settings(serverUrl=fakescope_server.url)
    page = open_check_file_page(browser)
    image = make_png(41)
    sha256 = hashlib.sha256(image).hexdigest()

    pick(page, "beach.png", image)

    verdict = dialog(page).locator(".verdict")
    # The real server writes an explanation with its verdict: 10-18 s on two busy cores.
    until(lambda: verdict.count() == 1, timeout_s=60, what="the verdict")
    assert verdict.inner_text() in HEADLINES
    meter = dialog(page).get_by_role("meter", name="Likelihood of AI generation")
    assert meter.get_attribute("aria-valuetext") == dialog(page).locator(".score").inner_text()
    assert dialog(page).locator(".decided").inner_text().strip() != ""
    assert dialog(page).get_by_role("heading", name="Explanation").is_visible()
    assert dialog(page).get_by_role("heading", name="Evidence").is_visible()
    assert dialog(page).get_by_role("button", name="Ask about the aspect").is_visible()
    # The file's own bytes reached the server, and the check is in the popup's recent checks.
    assert fakescope_server.analyses_in_db(sha256)
    recent = browser.worker.evaluate(
        "async () => (await chrome.storage.local.get('recentChecks')).recentChecks"
    )
    assert recent[0]["sha256"] == sha256
    assert recent[0]["imageUrl"] == "File: beach.png"
    # The dialog has the focus; Escape closes it and gives the focus back to the file field.
    focused_role = (
        "() => document.querySelector('fakescope-panel').shadowRoot"
        ".activeElement?.getAttribute('role')"
    )
    assert page.evaluate(focused_role) == "dialog"
    page.keyboard.press("Escape")
    until(lambda: not dialog(page).is_visible(), what="the panel to close")
    assert page.evaluate("() => document.activeElement.id") == "file"


def test_a_file_that_is_not_an_image_is_not_sent_and_a_broken_image_gets_the_servers_failure(
    until: Any, browser: Any, fakescope_server: Any
) -> None:
    browser.set_settings(serverUrl=fakescope_server.url)
    page = open_check_file_page(browser)
    posted = fakescope_server.request_count("POST", "/v1/analyze")

    # A document dropped or picked by mistake (the picker's image filter is only a default).
    pick(page, "notes.pdf", b"%PDF-1.7 these are notes, not a picture\n" * 10, "image/png")
    alert = dialog(page).get_by_role("alert")
    until(lambda: alert.count() == 1, what="the failure")
    assert alert.locator(".error-title").inner_text() == "This file is not an image"
    assert "nothing was sent" in alert.inner_text()
    assert fakescope_server.request_count("POST", "/v1/analyze") == posted

    # An image file the server cannot decode: its answer, in the panel's words.
    pick(page, "broken.png", make_png(41)[:40], "image/png")
    until(lambda: "broken.png" in page.locator("#chosen").inner_text(), what="the second file")
    until(lambda: alert.count() == 1, what="the server's failure")
    title = alert.locator(".error-title").inner_text()
    assert title in {"Unsupported image format", "The server could not read this image"}, title
    assert dialog(page).get_by_role("button", name="Try again").is_visible()
    assert fakescope_server.request_count("POST", "/v1/analyze") == posted + 1


def test_a_file_over_25_mib_is_refused_without_sending_it(
    until: Any, browser: Any, stub_server: Any, tmp_path: Path
) -> None:
    browser.set_settings(serverUrl=stub_server.url)
    page = open_check_file_page(browser)
    big = tmp_path / "huge.png"
    with big.open("wb") as out:
        out.write(make_png(42))
        out.truncate(25 * 1024 * 1024 + 1)

    page.get_by_label("Image file").set_input_files(big)

    alert = dialog(page).get_by_role("alert")
    until(lambda: alert.count() == 1, what="the failure")
    assert alert.locator(".error-title").inner_text() == "This image is too large"
    assert "Use a smaller copy" in alert.inner_text()
    assert not [r for r in stub_server.requests if r.startswith("POST /v1/analyze")]


def test_server_down_then_try_again_uses_the_current_server_and_token(
    until: Any, browser: Any, stub_server: Any
) -> None:
    browser.set_settings(serverUrl=f"http://127.0.0.1:{free_port()}")
    page = open_check_file_page(browser)
    pick(page, "pier.png", make_png(43))
    alert = dialog(page).get_by_role("alert")
    until(lambda: alert.count() == 1, what="the failure")
    assert alert.locator(".error-title").inner_text() == "FakeScope server unreachable"

    stub_server.token = "fs-file-check-token"
    browser.set_settings(serverUrl=stub_server.url, apiToken="fs-file-check-token")
    dialog(page).get_by_role("button", name="Try again").click()

    verdict = dialog(page).locator(".verdict")
    until(lambda: verdict.count() == 1, what="the verdict")
    assert verdict.inner_text() == "Likely authentic"
    assert "POST /v1/analyze" in stub_server.requests


def test_a_dropped_file_is_checked(until: Any, browser: Any, stub_server: Any) -> None:
    browser.set_settings(serverUrl=stub_server.url)
    page = open_check_file_page(browser)

    page.evaluate(
        """async (bytes) => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'}));
            document.getElementById('drop').dispatchEvent(
              new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        list(make_png(44)),
    )

    verdict = dialog(page).locator(".verdict")
    until(lambda: verdict.count() == 1, what="the verdict")
    assert verdict.inner_text() == "Likely authentic"
    assert page.locator("#chosen").inner_text().startswith("dropped.png")


def test_the_same_file_again_is_checked_again_and_of_several_the_first_is_said(
    until: Any, browser: Any, stub_server: Any
) -> None:
    browser.set_settings(serverUrl=stub_server.url)
    page = open_check_file_page(browser)
    image = make_png(45)

    pick(page, "same.png", image)
    until(lambda: dialog(page).locator(".verdict").count() == 1, what="the verdict")
    dialog(page).get_by_role("button", name="Close").click()
    assert page.locator("#result").is_hidden()
    # Chosen again after the result was closed: a browser sends no change event for the file
    # the field already holds, so the field lets go of it once taken.
    pick(page, "same.png", image)
    until(lambda: page.locator("#result").is_visible(), what="the result shown again")
    until(lambda: dialog(page).locator(".verdict").count() == 1, what="the verdict again")
    assert page.locator("#chosen").inner_text().startswith("same.png")

    page.get_by_label("Image file").evaluate("(input) => input.setAttribute('multiple', '')")
    page.get_by_label("Image file").set_input_files(
        [
            {"name": "first.png", "mimeType": "image/png", "buffer": make_png(46)},
            {"name": "second.png", "mimeType": "image/png", "buffer": make_png(47)},
        ]
    )
    until(lambda: page.locator("#chosen").inner_text().startswith("first.png"), what="the first")
    assert "only the first, first.png, was checked" in page.locator("#more").inner_text()
    assert page.locator("#more").get_attribute("role") == "status"
    until(lambda: dialog(page).locator(".verdict").count() == 1, what="its verdict")


def test_a_slow_result_leaves_the_focus_where_the_user_moved_it(
    until: Any, browser: Any, stub_server: Any
) -> None:
    browser.set_settings(serverUrl=stub_server.url)
    page = open_check_file_page(browser)
    stub_server.hold()
    try:
        pick(page, "slow.png", make_png(48))
        until(lambda: "POST /v1/analyze" in stub_server.requests, what="the upload")
        page.focus("#options")  # the user moved on while the check ran
    finally:
        stub_server.release()
    until(lambda: dialog(page).locator(".verdict").count() == 1, what="the verdict")
    assert page.evaluate("document.activeElement.id") == "options"
