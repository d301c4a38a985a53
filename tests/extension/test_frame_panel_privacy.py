"""The panel the top page shows for an image of a small cross-origin frame keeps what it says
about that image from the top page's own scripts: its shadow root is closed, and nothing of it
is in the host's attributes or the page's DOM. The embedding page sizes the frame, so it can
force this placement; it must not learn the verdict, explanation or evidence of an image it
could not read itself. A panel for the page's own image stays open, as before."""

from __future__ import annotations

from typing import Any

import pytest
from test_embedded_frame import (
    FRAME_PAGE,
    check_in_frame,
    embedding_page,
    frame_origin,
    in_top_panel,
    panel_text,
)

pytestmark = pytest.mark.browser

SECRET_EXPLANATION = "Cross-origin secret: the frame's photo is a studio capture."
SECRET_EVIDENCE = "C2PA manifest signed by Example Newsroom Ltd"
OWN_EXPLANATION = "The page's own photo: natural lighting."

# The embedding page's own script, in the page's main world, with a hook that tries to catch
# every shadow root attached in the page.
HOOK = """<script>
  window.caughtRoots = [];
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) {
    const root = attach.call(this, init);
    window.caughtRoots.push(root);
    return root;
  };
</script>"""

OWN_IMAGE = '<img id="own" src="/img/report.png" width="240" height="180" alt="own">'

# What the embedding page's script can find out about the panel.
PAGE_SCRIPT_VIEW = """() => {
    const hosts = [...document.querySelectorAll('fakescope-overlay')];
    const host = hosts[0];
    if (!host) return {hosts: 0};
    const root = host.shadowRoot;
    return {
      hosts: hosts.length,
      rootText: root ? root.textContent : null,
      hostText: host.textContent,
      attributes: host.getAttributeNames(),
      serialized: host.getHTML ? host.getHTML({serializableShadowRoots: true}) : host.innerHTML,
      page: document.documentElement.outerHTML + document.documentElement.innerText,
      liveRegions: document.querySelectorAll('[aria-live], [role=status]').length,
      caught: window.caughtRoots.map((r) => r.textContent).join(' '),
    };
}"""


@pytest.fixture
def hostile_embedding(browser: Any, page_server: Any, stub_server: Any) -> tuple[Any, str]:
    """A page on localhost, with its own image and the hook, embedding a 300x200 frame from
    127.0.0.1 (too small for the panel): the page, the frame's URL."""
    page_server.pages["/frame.html"] = FRAME_PAGE
    frame_url = f"{frame_origin(page_server)}/frame.html"
    page_server.pages["/frame-privacy.html"] = embedding_page(
        frame_url, 300, 200, extra=HOOK + OWN_IMAGE
    )
    browser.set_settings(serverUrl=stub_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/frame-privacy.html"))
    page.frame_locator("#embed").locator("#pic").wait_for()
    page.locator("#own").wait_for()
    return page, frame_url


def check_frame_image(browser: Any, page: Any, page_server: Any, stub_server: Any) -> None:
    stub_server.analysis = {
        "explanation": SECRET_EXPLANATION,
        "evidence": [{"kind": "c2pa", "summary": SECRET_EVIDENCE, "strength": "strong"}],
    }
    src = f"{frame_origin(page_server)}/img/check.png"
    result = check_in_frame(browser, page, f"{frame_origin(page_server)}/frame.html", src)
    assert result["ok"], result


def check_own_image(browser: Any, page: Any, page_server: Any, stub_server: Any) -> None:
    stub_server.analysis = {"explanation": OWN_EXPLANATION}
    result = browser.check_image(page, page_server.url("/img/report.png"))
    assert result["ok"], result


def assert_page_learns_nothing(view: dict[str, Any]) -> None:
    assert view["hosts"] == 1
    assert view["rootText"] is None, "the page reads the panel through host.shadowRoot"
    assert view["hostText"] == ""
    assert set(view["attributes"]) <= {"popover"}, view["attributes"]
    for secret in ("Likely authentic", SECRET_EXPLANATION, SECRET_EVIDENCE, "embedded frame"):
        for where in ("serialized", "page", "caught"):
            assert secret not in view[where], (secret, where)
    assert view["liveRegions"] == 0, "announcements live inside the panel's root"


def test_the_embedding_page_cannot_read_the_panel_for_an_image_of_its_frame(
    browser: Any, stub_server: Any, page_server: Any, hostile_embedding: tuple[Any, str]
) -> None:
    page, _ = hostile_embedding

    check_frame_image(browser, page, page_server, stub_server)

    # The user sees the whole verdict (read from the extension's isolated world)...
    assert panel_text(browser, page, ".verdict") == "Likely authentic"
    assert panel_text(browser, page, ".explanation") == SECRET_EXPLANATION
    assert SECRET_EVIDENCE in panel_text(browser, page, ".evidence")
    assert "embedded frame from" in panel_text(browser, page, ".frame-note")
    # ...and the embedding page's script finds only an empty, closed host.
    assert_page_learns_nothing(page.evaluate(PAGE_SCRIPT_VIEW))


def test_the_panel_is_rebuilt_closed_for_a_frame_image_and_open_for_the_pages_own(
    browser: Any, stub_server: Any, page_server: Any, hostile_embedding: tuple[Any, str]
) -> None:
    page, _ = hostile_embedding

    # The page's own image: the panel stays open (the page has that image anyway).
    check_own_image(browser, page, page_server, stub_server)
    own = page.evaluate(PAGE_SCRIPT_VIEW)
    assert own["hosts"] == 1 and OWN_EXPLANATION in own["rootText"]
    assert page.locator("fakescope-overlay .verdict").inner_text() == "Likely authentic"

    # Then an image of the small frame, while that panel is open: a closed panel replaces it.
    check_frame_image(browser, page, page_server, stub_server)
    assert panel_text(browser, page, ".explanation") == SECRET_EXPLANATION
    assert_page_learns_nothing(page.evaluate(PAGE_SCRIPT_VIEW))
    dialog = in_top_panel(browser, page, "section[role=dialog]")
    assert dialog is not None
    assert dialog["focused"]["role"] == "dialog", "the new panel has the focus"

    # And the page's own image again: an open panel, without the frame's note.
    check_own_image(browser, page, page_server, stub_server)
    again = page.evaluate(PAGE_SCRIPT_VIEW)
    assert again["hosts"] == 1 and OWN_EXPLANATION in again["rootText"]
    assert SECRET_EXPLANATION not in again["page"] + again["serialized"]
    assert page.locator("fakescope-overlay .frame-note").count() == 0
