"""Errors are shown, not swallowed: a stopped server gives a clear message in the overlay.
The options page validates what it saves and tests the connection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from panel_helpers import PANEL_ROOT, panel, panel_frame

pytestmark = pytest.mark.browser


def test_a_stopped_server_gives_a_clear_error_in_the_overlay(
    browser: Any, page_server: Any, server_factory: Any, artifacts_dir: Path
) -> None:
    server = server_factory()
    try:
        browser.set_settings(serverUrl=server.url)
        page = browser.context.new_page()
        page.goto(page_server.url("/plain.html"))
        assert browser.check_image(page, page_server.url("/img/report.png"))["ok"]
    finally:
        server.stop()

    result = browser.check_image(page, page_server.url("/img/down.png"))

    assert not result["ok"]
    alert = panel(page).locator("[role=alert]")
    assert "FakeScope server unreachable" in alert.inner_text()
    assert server.url in alert.inner_text()
    assert "running" in alert.inner_text()
    assert panel(page).get_by_role("button", name="Try again").is_visible()
    page.screenshot(path=str(artifacts_dir / "extension-overlay-server-down.png"))


def test_a_page_script_cannot_press_try_again_only_the_users_click_sends_the_image_again(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    stub_server.token = "the-right-token"
    browser.set_settings(serverUrl=stub_server.url, apiToken="a-wrong-token")
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))
    result = browser.check_image(page, page_server.url("/img/report.png"))
    assert not result["ok"]
    overlay = panel(page)
    overlay.locator("[role=alert]").wait_for()
    assert overlay.locator("[role=alert]").count() == 1
    browser.set_settings(apiToken="the-right-token")
    uploads = stub_server.requests.count("POST /v1/analyze")

    # A page script cannot press "Try again" for the user: it cannot reach the panel (a closed
    # root), and a script's click, even one run in the panel page itself, sends nothing.
    assert page.evaluate("() => document.querySelector('fakescope-overlay').shadowRoot") is None
    panel_frame(page).evaluate(f"() => {PANEL_ROOT}.querySelector('button.retry').click()")
    page.wait_for_timeout(1000)
    assert stub_server.requests.count("POST /v1/analyze") == uploads
    assert overlay.locator("[role=alert]").count() == 1, "the error is still shown"

    # The user's click sends the image again.
    overlay.get_by_role("button", name="Try again").click()
    until(lambda: overlay.locator(".verdict").count() == 1, what="the verdict after the retry")
    assert stub_server.requests.count("POST /v1/analyze") == uploads + 1


def test_a_refused_image_shows_the_servers_problem_detail(
    browser: Any, fakescope_server: Any, page_server: Any
) -> None:
    direct = httpx.post(
        f"{fakescope_server.url}/v1/analyze",
        files={"file": ("broken.png", b"these bytes are not an image at all", "image/png")},
        timeout=30,
    )
    assert 400 <= direct.status_code < 500
    detail = direct.json()["detail"]
    browser.set_settings(serverUrl=fakescope_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))

    result = browser.check_image(page, page_server.url("/img/broken.png"))

    assert not result["ok"]
    assert result["failure"]["status"] == direct.status_code
    alert = panel(page).locator("[role=alert]").inner_text()
    assert detail in alert


def test_options_page_validates_saves_and_tests_the_connection(
    until: Any, browser: Any, fakescope_server: Any, artifacts_dir: Path
) -> None:
    page = browser.context.new_page()
    page.goto(browser.extension_url("options/options.html"))
    page.wait_for_selector("body[data-ready=true]")
    stored = lambda: browser.worker.evaluate(  # noqa: E731
        "async () => (await chrome.storage.local.get('settings')).settings ?? null"
    )

    page.fill("#server-url", "ftp://127.0.0.1:1")
    page.click("#save")
    assert page.get_attribute("#server-url", "aria-invalid") == "true"
    assert "http://" in page.inner_text("#server-url-error")
    assert "Not saved" in page.inner_text("#server-status")
    page.fill("#server-url", "http://fakescope.example.org")
    page.click("#save")
    assert "https://" in page.inner_text("#server-url-error")
    page.fill("#server-url", fakescope_server.url)
    page.fill("#api-token", "has a space")
    page.click("#save")
    assert page.get_attribute("#api-token", "aria-invalid") == "true"
    assert stored() is None, "nothing invalid was saved"

    page.fill("#api-token", "")
    page.fill("#server-url", fakescope_server.url + "/")
    page.click("#save")
    until(lambda: page.inner_text("#server-status") == "Saved.", what="the saved message")
    assert stored()["serverUrl"] == fakescope_server.url
    assert page.get_attribute("#server-url", "aria-invalid") is None

    page.click("#test-connection")
    until(lambda: "Connected to" in page.inner_text("#server-status"), what="the connection test")
    page.screenshot(path=str(artifacts_dir / "extension-options.png"), full_page=True)

    page.fill("#server-url", "http://127.0.0.1:9")
    page.click("#test-connection")
    until(lambda: "unreachable" in page.inner_text("#server-status"), what="the failed test")


def open_options(browser: Any) -> Any:
    page = browser.context.new_page()
    page.goto(browser.extension_url("options/options.html"))
    page.wait_for_selector("body[data-ready=true]")
    return page


def test_test_connection_says_when_the_server_refuses_the_token(
    until: Any, browser: Any, stub_server: Any
) -> None:
    stub_server.token = "the-right-token"
    page = open_options(browser)
    page.fill("#server-url", stub_server.url)

    page.click("#test-connection")
    until(lambda: "requires an API token" in page.inner_text("#server-status"), what="no token")
    page.fill("#api-token", "a-wrong-token")
    page.click("#test-connection")
    until(lambda: "refused this API token" in page.inner_text("#server-status"), what="refused")
    assert "Connected" not in page.inner_text("#server-status")

    page.fill("#api-token", "the-right-token")
    page.click("#test-connection")
    until(lambda: "Connected to" in page.inner_text("#server-status"), what="accepted")


def test_saving_the_server_keeps_feed_sites_switched_on_elsewhere(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    page = open_options(browser)
    # Meanwhile the popup switches feed mode on for a site.
    browser.set_settings(feedSites=[page_server.origin])
    until(lambda: page.locator("#feed-sites li").count() == 1, what="the list to follow")

    page.fill("#server-url", stub_server.url)
    page.click("#save")
    until(lambda: page.inner_text("#server-status") == "Saved.", what="saved")

    stored = browser.worker.evaluate("async () => (await chrome.storage.local.get('settings'))")
    assert stored["settings"]["serverUrl"] == stub_server.url
    assert stored["settings"]["feedSites"] == [page_server.origin]


def test_an_address_that_is_not_a_fakescope_server_is_named_as_such(
    until: Any, browser: Any, page_server: Any
) -> None:
    """A web server at the configured address (the page server: HTML 404 for /readyz, 501 for
    POST) is "not a FakeScope server", not "the server does not know this image"."""
    elsewhere = f"http://127.0.0.1:{page_server.port}"
    page = open_options(browser)
    page.fill("#server-url", elsewhere)
    page.click("#test-connection")
    until(lambda: "Testing" not in page.inner_text("#server-status"), what="the test")
    status = page.inner_text("#server-status")
    assert "does not look like a FakeScope server" in status, status
    assert "does not know this image" not in status
    assert "Connected" not in status

    browser.set_settings(serverUrl=elsewhere)
    popup = browser.context.new_page()
    popup.goto(browser.extension_url("popup/popup.html"))
    until(lambda: "Checking" not in popup.inner_text("#server-status"), what="the popup status")
    assert "does not look like a FakeScope server" in popup.inner_text("#server-status")
    assert "Server ready" not in popup.inner_text("#server-status")

    pictures = browser.context.new_page()
    pictures.goto(page_server.url("/plain.html"))
    result = browser.check_image(pictures, page_server.url("/img/check.png"))
    assert not result["ok"]
    alert = panel(pictures).locator("[role=alert]").inner_text()
    assert "does not look like a FakeScope server" in alert, alert
    assert "points at a FakeScope server" in alert


def sse_route(pieces: list[bytes], chunked: bool) -> Any:
    """An answer stream that stops after `pieces`: the server went away mid-answer."""

    def route(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for piece in pieces:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            handler.wfile.flush()
            time.sleep(0.3)
        handler.close_connection = True

    return route


@pytest.mark.parametrize("chunked", [False, True], ids=["closed", "broken"])
def test_an_answer_cut_off_mid_stream_is_not_shown_as_complete(
    chunked: bool, until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))
    assert browser.check_image(page, page_server.url("/img/check.png"))["ok"]
    stub_server.routes["POST /v1/ask"] = sse_route(
        [
            b'event: token\ndata: {"text": "The shadows "}\n\n',
            b'event: token\ndata: {"text": "fall"}\n\n',
        ],
        chunked,
    )
    overlay = panel(page)

    overlay.get_by_role("button", name="Ask about the aspect").click()

    status = overlay.locator(".status.muted")
    waiting = {"", "Waiting for the answer…", "Answering…"}
    until(lambda: status.inner_text() not in waiting, what="the stream to end")
    assert "The answer was cut off" in status.inner_text(), status.inner_text()
    assert "Answer complete" not in status.inner_text()
    assert overlay.locator(".answer").inner_text() == "The shadows fall", "what came stays"
    assert overlay.get_by_role("button", name="Ask about the aspect").is_enabled()


def test_options_and_popup_are_labelled_and_keep_the_keyboard_focus(
    until: Any, browser: Any, stub_server: Any
) -> None:
    import re

    from playwright.sync_api import expect

    page = open_options(browser)
    for label in ("Server address", "API token (optional)", "Add a site", "Image site"):
        expect(page.get_by_label(label, exact=True)).to_have_count(1)
    page.get_by_label("Server address").fill("ftp://127.0.0.1:1")
    page.get_by_role("button", name="Save").click()
    # The field's error is read with the field (its description), not only shown in red.
    expect(page.get_by_label("Server address")).to_have_accessible_description(
        re.compile("http://")
    )

    # Sites added and removed by keyboard: each change is announced, and removing one moves
    # the focus to the next site's button, then back to the field, not to the top of the page.
    sites = ["http://localhost:8001", "http://localhost:8002"]
    status = page.locator("#feed-sites-status")
    expect(status).to_have_attribute("role", "status")
    for site in sites:
        page.get_by_label("Add a site").fill(site)
        page.get_by_label("Add a site").press("Enter")
        expect(status).to_have_text(f"Feed mode is on for {site}.")
    page.get_by_role("button", name=f"Turn off feed mode on {sites[0]}").focus()
    page.keyboard.press("Enter")
    expect(status).to_have_text(f"Feed mode is off on {sites[0]}.")
    expect(page.get_by_role("button", name=f"Turn off feed mode on {sites[1]}")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Add a site")).to_be_focused()

    browser.set_settings(serverUrl=stub_server.url)
    popup = browser.context.new_page()
    popup.goto(browser.extension_url("popup/popup.html"))
    expect(popup.get_by_role("main")).to_have_count(1)
    expect(popup.get_by_role("status").first).to_contain_text("Server ready at")
    expect(popup.get_by_role("checkbox", name=re.compile("^Feed mode on this site"))).to_have_count(
        1
    )
    expect(popup.get_by_role("link", name="Options and privacy")).to_have_count(1)
