"""Right-click "Check with FakeScope": the worker reads the image, the server analyses it,
the overlay shows the verdict; asking, reporting and the short-lived cache."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

HEADLINES = {"Likely AI-generated", "Likely authentic", "Uncertain"}


@pytest.fixture
def plain_page(browser: Any, fakescope_server: Any, page_server: Any) -> Any:
    browser.set_settings(serverUrl=fakescope_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))
    return page


def test_menu_check_shows_verdict_score_and_explanation_and_stores_the_analysis(
    browser: Any,
    plain_page: Any,
    fakescope_server: Any,
    page_server: Any,
    artifacts_dir: Path,
) -> None:
    src = page_server.url("/img/check.png")
    result = browser.check_image(plain_page, src)

    assert result["ok"], result
    assert result["via"] == "worker"
    overlay = plain_page.locator("fakescope-overlay")
    assert overlay.locator(".verdict").inner_text() in HEADLINES
    assert "% likelihood of AI generation" in overlay.locator(".score").inner_text()
    meter = overlay.locator("[role=meter]")
    assert 0 <= int(meter.get_attribute("aria-valuenow")) <= 100
    assert overlay.locator(".decided").inner_text().startswith("Decided by")
    explanation = overlay.locator(".explanation").inner_text()
    assert explanation and explanation != "The server gave no explanation for this image."
    assert "Untrained demo model" in overlay.locator(".warning").inner_text()
    assert overlay.locator("select option").count() == 14
    plain_page.screenshot(path=str(artifacts_dir / "extension-overlay.png"))

    sha = hashlib.sha256(page_server.images["check.png"]).hexdigest()
    assert result["sha256"] == sha
    rows = fakescope_server.analyses_in_db(sha)
    assert len(rows) == 1
    label, p_fake, decided_by, stored_explanation = rows[0]
    assert label in {"fake", "real", "uncertain"} and 0.0 <= p_fake <= 1.0
    assert decided_by == "model"
    assert stored_explanation


def test_checking_the_same_image_again_is_answered_from_the_extension_cache(
    browser: Any, plain_page: Any, fakescope_server: Any, page_server: Any
) -> None:
    src = page_server.url("/img/check.png")
    first = browser.check_image(plain_page, src)
    assert first["ok"], first
    uploads = fakescope_server.request_count("POST", "/v1/analyze")
    image_fetches = len(page_server.requests_for("/img/check.png"))

    again = browser.check_image(plain_page, src)

    assert again == {**first, "cached": True, "via": "cache"}
    assert fakescope_server.request_count("POST", "/v1/analyze") == uploads
    assert len(page_server.requests_for("/img/check.png")) == image_fetches
    assert "recent checks" in plain_page.locator("fakescope-overlay .model").inner_text()


def test_an_image_whose_site_refuses_hotlinking_is_read_by_the_page_instead(
    browser: Any, plain_page: Any, page_server: Any
) -> None:
    src = page_server.url("/hotlink/guarded.png")
    result = browser.check_image(plain_page, src)

    assert result["ok"], result
    assert result["via"] == "page"
    statuses = [r.status for r in page_server.requests_for("/hotlink/guarded.png")]
    assert 403 in statuses, "the worker's own request was refused first"
    assert result["sha256"] == hashlib.sha256(page_server.images["guarded.png"]).hexdigest()
    assert plain_page.locator("fakescope-overlay .verdict").inner_text() in HEADLINES


def test_asking_about_an_aspect_streams_an_answer_into_the_overlay(
    until: Any, browser: Any, plain_page: Any, page_server: Any
) -> None:
    assert browser.check_image(plain_page, page_server.url("/img/check.png"))["ok"]
    overlay = plain_page.locator("fakescope-overlay")
    overlay.locator("select").select_option("light_and_shadow")
    # Each "Ask" button has its own accessible name, so a screen reader tells them apart.
    assert overlay.get_by_role("button", name="Ask your question").count() == 1
    overlay.get_by_role("button", name="Ask about the aspect").click()

    status = overlay.locator(".status.muted")
    until(lambda: status.inner_text() == "Answer complete.", 60, "the streamed answer")


def test_reporting_a_wrong_verdict_puts_the_image_in_the_review_queue(
    admin_token: str,
    until: Any,
    browser: Any,
    plain_page: Any,
    fakescope_server: Any,
    page_server: Any,
) -> None:
    result = browser.check_image(plain_page, page_server.url("/img/report.png"))
    assert result["ok"], result
    overlay = plain_page.locator("fakescope-overlay")

    overlay.get_by_role("button", name="Report a wrong verdict").click()
    overlay.get_by_role("button", name="Send report").click()
    assert "say why" in overlay.locator(".report-status").inner_text()
    overlay.get_by_label("Why is the verdict wrong?").fill("The sky is painted, this is a render.")
    overlay.get_by_role("button", name="Send report").click()
    until(
        lambda: "sent to human review" in overlay.locator(".report-status").inner_text(),
        what="the report confirmation",
    )

    queue = httpx.get(
        f"{fakescope_server.url}/v1/admin/queue",
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=10,
    )
    assert queue.status_code == 200, queue.text
    items = {item["sha256"]: item for item in queue.json()["items"]}
    assert result["sha256"] in items
    assert "user_report" in items[result["sha256"]]["reasons"]


def test_escape_closes_the_overlay(browser: Any, plain_page: Any, page_server: Any) -> None:
    assert browser.check_image(plain_page, page_server.url("/img/check.png"))["ok"]
    overlay = plain_page.locator("fakescope-overlay")
    assert overlay.locator("section[role=dialog]").evaluate(
        "(el) => el.getRootNode().activeElement === el"
    ), "the panel takes focus when it opens"
    plain_page.keyboard.press("Escape")
    assert overlay.count() == 0


def test_popup_shows_server_status_and_recent_checks(
    until: Any,
    browser: Any,
    plain_page: Any,
    fakescope_server: Any,
    page_server: Any,
    artifacts_dir: Path,
) -> None:
    src = page_server.url("/img/check.png")
    result = browser.check_image(plain_page, src)
    assert result["ok"], result

    popup = browser.context.new_page()
    popup.set_viewport_size({"width": 360, "height": 480})
    popup.goto(browser.extension_url("popup/popup.html"))
    until(lambda: "Server ready at" in popup.inner_text("#server-status"), what="the status")
    assert fakescope_server.url in popup.inner_text("#server-status")
    recent = popup.locator("#recent li")
    assert recent.count() == 1
    assert src in recent.first.inner_text()
    assert recent.first.locator("span").inner_text().split(" (")[0] in HEADLINES
    popup.screenshot(path=str(artifacts_dir / "extension-popup.png"))
