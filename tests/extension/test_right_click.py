"""Right-click "Check with FakeScope": the worker reads the image, the server analyses it,
the overlay shows the verdict; asking, reporting and the short-lived cache."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from panel_helpers import PANEL_ROOT, focused_in_panel, panel, panel_frame, press_escape_in_panel

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
    overlay = panel(plain_page)
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
    assert "recent checks" in panel(plain_page).locator(".model").inner_text()


def session_rules(browser: Any) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = browser.worker.evaluate(
        "() => chrome.declarativeNetRequest.getSessionRules()"
    )
    return rules


def test_an_image_whose_site_refuses_hotlinking_is_read_by_the_worker_with_the_pages_referer(
    browser: Any, plain_page: Any, page_server: Any
) -> None:
    """The site answers only requests with its own page as Referer (conftest: /hotlink/). The
    worker's plain request is refused; it asks again itself, as the page's <img> would: the
    page's address as Referer (a declarativeNetRequest session rule, removed afterwards) and
    the site's cookies. The content script makes no request (via 'page' is not used)."""
    browser.context.add_cookies([{"name": "session", "value": "s1", "url": page_server.origin}])
    browser.worker.evaluate(
        """() => {
            const dnr = chrome.declarativeNetRequest;
            const update = dnr.updateSessionRules.bind(dnr);
            self.addedRules = [];
            self.restoreRules = () => { dnr.updateSessionRules = update; };
            dnr.updateSessionRules = (options) => {
                self.addedRules.push(...(options.addRules ?? []));
                return update(options);
            };
        }"""
    )
    src = page_server.url("/hotlink/guarded.png")
    before = len(page_server.requests_for("/hotlink/guarded.png"))

    result = browser.check_image(plain_page, src)

    assert result["ok"], result
    assert result["via"] == "worker-referer"
    refused, accepted = page_server.requests_for("/hotlink/guarded.png")[before:]
    assert (refused.status, refused.referer) == (403, None), "the worker's own request came first"
    assert refused.cookie is None, "the worker's own request carries no cookies"
    assert (accepted.status, accepted.referer) == (200, plain_page.url)
    assert accepted.cookie == "session=s1", "asked as the page: with the site's cookies"
    assert result["sha256"] == hashlib.sha256(page_server.images["guarded.png"]).hexdigest()
    assert panel(plain_page).locator(".verdict").inner_text() in HEADLINES
    assert session_rules(browser) == [], "the Referer rule is gone after the fetch"

    # The rule it used sets the Referer for the worker's fetch of that one address, and for
    # nothing the page asks (added again here, to look).
    (rule,) = browser.worker.evaluate("() => { self.restoreRules(); return self.addedRules; }")
    assert rule["condition"]["urlFilter"] == f"|{src}|"
    assert rule["condition"]["initiatorDomains"] == [browser.extension_url("").split("/")[2]]
    assert rule["condition"]["resourceTypes"] == ["xmlhttprequest"]
    browser.worker.evaluate(
        "() => chrome.declarativeNetRequest.updateSessionRules({addRules: self.addedRules})"
    )
    try:
        by_worker = browser.worker.evaluate(
            "async (src) => (await fetch(src, {cache: 'no-store'})).status", src
        )
        by_page = plain_page.evaluate(
            "async (src) => (await fetch(src, {referrerPolicy: 'no-referrer'})).status", src
        )
        other = browser.worker.evaluate(
            "async (src) => (await fetch(src, {cache: 'no-store'})).status",
            page_server.url("/hotlink/report.png"),
        )
    finally:
        browser.worker.evaluate(
            """() => chrome.declarativeNetRequest.updateSessionRules(
                {removeRuleIds: self.addedRules.map((r) => r.id)})"""
        )
    assert (by_worker, by_page, other) == (200, 403, 403)


def test_an_image_refused_even_with_the_pages_referer_fails_and_leaves_no_rule(
    browser: Any, plain_page: Any, page_server: Any
) -> None:
    before = len(page_server.requests_for("/refused/never.png"))

    result = browser.check_image(plain_page, page_server.url("/refused/never.png"))

    assert not result["ok"]
    assert result["failure"]["title"] == "This image could not be read"
    requests = page_server.requests_for("/refused/never.png")[before:]
    assert [(r.status, r.referer) for r in requests] == [(403, None), (403, plain_page.url)]
    assert session_rules(browser) == []


def test_concurrent_checks_of_hotlinked_images_each_get_their_referer(
    browser: Any, plain_page: Any, page_server: Any
) -> None:
    """Three checks at once, two of the same address: unique rule ids, one rule per address
    at a time, all removed at the end."""
    sources = [page_server.url(p) for p in ("/hotlink/guarded.png", "/hotlink/report.png")]
    results: list[dict[str, Any]] = browser.worker.evaluate(
        """async ([pageUrl, sources]) => {
            const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
            return Promise.all(sources.map((srcUrl) => self.fakescopeHandleMenuClick(
              {menuItemId: 'fakescope-check', srcUrl, frameId: 0, pageUrl}, tab)));
        }""",
        [plain_page.url, [sources[0], sources[1], sources[0]]],
    )

    assert [r["ok"] for r in results] == [True, True, True], results
    assert {r["via"] for r in results} <= {"worker-referer", "cache"}
    expected = [
        hashlib.sha256(page_server.images[n]).hexdigest() for n in ("guarded.png", "report.png")
    ]
    assert [r["sha256"] for r in results] == [expected[0], expected[1], expected[0]]
    assert session_rules(browser) == []


def test_a_blob_image_the_page_made_is_read_in_the_page(
    until: Any, browser: Any, plain_page: Any, page_server: Any
) -> None:
    """A blob: URL lives in the page: the content script reads it (a local read, no request)."""
    page_server.pages["/blob.html"] = """<!doctype html><body><img id="made" alt="made"><script>
      fetch('/img/check.png').then((r) => r.blob()).then((b) => {
        document.getElementById('made').src = URL.createObjectURL(b);
      });
    </script></body>"""
    plain_page.goto(page_server.url("/blob.html"))
    src = until(
        lambda: plain_page.evaluate(
            "() => { const i = document.getElementById('made'); return i.complete && i.src; }"
        ),
        what="the page's blob: image",
    )
    assert src.startswith("blob:")
    fetches = len(page_server.requests_for("/img/check.png"))

    result = browser.check_image(plain_page, src)

    assert result["ok"], result
    assert result["via"] == "page"
    assert result["sha256"] == hashlib.sha256(page_server.images["check.png"]).hexdigest()
    assert len(page_server.requests_for("/img/check.png")) == fetches, "no request was made"


def test_asking_about_an_aspect_streams_an_answer_into_the_overlay(
    until: Any, browser: Any, plain_page: Any, page_server: Any
) -> None:
    assert browser.check_image(plain_page, page_server.url("/img/check.png"))["ok"]
    overlay = panel(plain_page)
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
    overlay = panel(plain_page)

    overlay.get_by_role("button", name="Report a wrong verdict").click()
    overlay.get_by_role("button", name="Send report").click()
    assert "say why" in overlay.locator(".report-status").inner_text()
    overlay.get_by_label("Why is the verdict wrong?").fill("The sky is painted, this is a render.")
    # A script cannot send a report (or a question) under the user's token: the page's finds
    # no panel to reach (a closed root), and even a script in the panel page itself sends nothing.
    reports = fakescope_server.request_count("POST", "/v1/reports")
    asks = fakescope_server.request_count("POST", "/v1/ask")
    assert (
        plain_page.evaluate("() => document.querySelector('fakescope-overlay').shadowRoot") is None
    )
    panel_frame(plain_page).evaluate(
        f"""() => {{
          const root = {PANEL_ROOT};
          root.querySelector('form').requestSubmit();
          for (const button of root.querySelectorAll('button[aria-label^="Ask"]')) button.click();
        }}"""
    )
    plain_page.wait_for_timeout(500)
    assert fakescope_server.request_count("POST", "/v1/reports") == reports
    assert fakescope_server.request_count("POST", "/v1/ask") == asks
    # The user's Enter on a choice submits the form (implicit submission), as a click would.
    overlay.get_by_role("radio").first.press("Enter")
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


def test_escape_closes_the_overlay(
    until: Any, browser: Any, plain_page: Any, page_server: Any
) -> None:
    assert browser.check_image(plain_page, page_server.url("/img/check.png"))["ok"]
    overlay = plain_page.locator("fakescope-overlay")
    until(lambda: focused_in_panel(plain_page), what="the focus in the panel")
    assert focused_in_panel(plain_page)["role"] == "dialog", "the panel takes focus when it opens"
    press_escape_in_panel(plain_page)
    until(lambda: overlay.count() == 0, what="the panel to close")


def test_popup_shows_server_status_and_recent_checks(
    until: Any,
    browser: Any,
    plain_page: Any,
    fakescope_server: Any,
    page_server: Any,
    artifacts_dir: Path,
) -> None:
    from playwright.sync_api import expect

    src = page_server.url("/img/check.png")
    result = browser.check_image(plain_page, src)
    assert result["ok"], result

    popup = browser.context.new_page()
    popup.set_viewport_size({"width": 360, "height": 480})
    popup.goto(browser.extension_url("popup/popup.html"))
    until(lambda: "Server ready at" in popup.inner_text("#server-status"), what="the status")
    assert fakescope_server.url in popup.inner_text("#server-status")
    # The popup reads its recent checks and the server's status at once: either may come first.
    recent = popup.locator("#recent li")
    expect(recent).to_have_count(1)
    assert src in recent.first.inner_text()
    assert recent.first.locator("span").first.inner_text().split(" (")[0] in HEADLINES
    popup.screenshot(path=str(artifacts_dir / "extension-popup.png"))


# How many lines the time of each recent check takes in the popup: a Range over the text
# after the " · " that follows the address, however the line is split into elements.
TIME_LINES = """() => [...document.querySelectorAll('#recent li .hint')].map((hint) => {
    const walker = document.createTreeWalker(hint, NodeFilter.SHOW_TEXT);
    const texts = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) texts.push(node);
    const range = document.createRange();
    let skip = hint.textContent.lastIndexOf(' · ') + 3;
    for (const node of texts) {
      if (skip <= node.textContent.length) { range.setStart(node, skip); break; }
      skip -= node.textContent.length;
    }
    const last = texts[texts.length - 1];
    range.setEnd(last, last.textContent.length);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0);
    return new Set(rects.map((r) => Math.round(r.top))).size;
})"""


def test_the_popup_breaks_a_long_image_address_but_never_the_time_of_a_check(
    browser: Any,
) -> None:
    # The address and the time shared one line that broke anywhere: "4:25:54 P" / "M".
    at = 1764347154000  # an afternoon, so the time has a day-period in 12-hour locales
    checks = [
        {
            "sha256": f"{n:064x}",
            "imageUrl": "https://img.example/" + "a" * n + ".png",
            "pageUrl": None,
            "verdict": "Likely authentic (12%)",
            "label": "real",
            "at": at,
        }
        for n in range(10, 10 + 10 * 5, 5)
    ]
    browser.worker.evaluate("(list) => chrome.storage.local.set({recentChecks: list})", checks)
    popup = browser.context.new_page()
    popup.set_viewport_size({"width": 360, "height": 480})
    popup.goto(browser.extension_url("popup/popup.html"))
    popup.locator("#recent li").nth(len(checks) - 1).wait_for()
    assert popup.evaluate(TIME_LINES) == [1] * len(checks)
