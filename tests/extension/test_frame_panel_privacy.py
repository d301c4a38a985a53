"""Every panel keeps its verdict, and what the user does in it, from the page's own scripts, and
out of their reach to change. The panel the top page shows for an image of a small cross-origin
frame (the embedding page sizes the frame, so it can force this placement) must not tell it the
verdict, explanation or evidence of an image it could not read itself, nor the question the user
types or the text they select there. The panel for the page's own image, or a feed badge's, must
not let the page read the explanation or the user's words either, nor rewrite what it says (a
forensic verdict a page could turn from "Likely AI-generated" into "Likely real"). Each panel is
the extension's own page, in an iframe inside a closed shadow root: the page finds an empty host,
and nothing it can read or change inside. The panel's fixed size is checked for the frame's image
(whose size would otherwise say something of a verdict the page cannot read: a panel about the
page's own image follows its content in coarse steps, test_panel_size.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from feed_helpers import knows_every_image, switch_feed_mode_on
from panel_helpers import in_panel, panel, panel_frame, panel_locator, panel_text
from test_embedded_frame import (
    FRAME_PAGE,
    check_in_frame,
    embedding_page,
    frame_origin,
    start_check_in_frame,
)

pytestmark = pytest.mark.browser

SECRET_EXPLANATION = "Cross-origin secret: the frame's photo is a studio capture."
SECRET_EVIDENCE = "C2PA manifest signed by Example Newsroom Ltd"
OWN_EXPLANATION = "The page's own photo: natural lighting."
QUESTION = "Was this photo staged by the newsroom?"
ANSWER = "The lighting suggests a studio."

# The embedding page's own script, in the page's main world: a hook that tries to catch every
# shadow root attached in the page, and capture-phase listeners for everything the user types,
# selects or copies (on the window and the document, before anything else can stop them).
HOOK = """<script>
  window.caughtRoots = [];
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) {
    const root = attach.call(this, init);
    window.caughtRoots.push(root);
    return root;
  };
  window.seen = [];
  const TYPES = ['keydown', 'keypress', 'keyup', 'beforeinput', 'input', 'compositionstart',
    'compositionupdate', 'compositionend', 'copy', 'cut', 'paste', 'select'];
  for (const target of [window, document]) {
    for (const type of TYPES) {
      target.addEventListener(type, (event) => window.seen.push({
        type, key: event.key ?? null, data: event.data ?? null,
        target: event.target.localName ?? null,
      }), true);
    }
  }
  window.selections = [];
  document.addEventListener('selectionchange', () => {
    window.selections.push(String(document.getSelection()));
  }, true);
</script>"""

OWN_IMAGE = '<img id="own" src="/img/report.png" width="240" height="180" alt="own">'

# What the embedding page's script can find out about the panel.
PAGE_SCRIPT_VIEW = """() => {
    const hosts = [...document.querySelectorAll('fakescope-overlay')];
    const host = hosts[0];
    if (!host) return {hosts: 0};
    const root = host.shadowRoot;
    const frames = [];
    for (let i = 0; i < window.length; i += 1) {
      try {
        frames.push(window[i].document.documentElement.outerHTML);
      } catch {
        frames.push('unreadable');
      }
    }
    return {
      hosts: hosts.length,
      rootText: root ? root.textContent : null,
      hostText: host.textContent,
      attributes: host.getAttributeNames(),
      serialized: host.getHTML ? host.getHTML({serializableShadowRoots: true}) : host.innerHTML,
      page: document.documentElement.outerHTML + document.documentElement.innerText,
      iframes: document.querySelectorAll('iframe').length,
      frames,
      liveRegions: document.querySelectorAll('[aria-live], [role=status]').length,
      caught: window.caughtRoots.map((r) => r.textContent).join(' '),
      selection: String(document.getSelection()),
    };
}"""

# The host as the extension's own content script sees it (chrome.dom.openOrClosedShadowRoot
# opens even a closed root): more than any page script can, and still no verdict.
HOST_FROM_THE_EXTENSION = """async (pageUrl) => {
    const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
    const [injection] = await chrome.scripting.executeScript({
      target: {tabId: tab.id, frameIds: [0]}, world: 'ISOLATED',
      func: () => {
        const root = chrome.dom.openOrClosedShadowRoot(document.querySelector('fakescope-overlay'));
        const frame = root.querySelector('iframe');
        return {
          mode: root.mode,
          children: [...root.children].map((el) => el.localName),
          text: [...root.children].filter((el) => el.localName !== 'style')
            .map((el) => el.textContent).join(''),
          src: new URL(frame.src).protocol,
          readable: frame.contentDocument !== null,
        };
      }});
    return injection.result;
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


def check_frame_image(
    until: Any, browser: Any, page: Any, page_server: Any, stub_server: Any
) -> None:
    stub_server.analysis = {
        "explanation": SECRET_EXPLANATION,
        "evidence": [{"kind": "c2pa", "summary": SECRET_EVIDENCE, "strength": "strong"}],
    }
    src = f"{frame_origin(page_server)}/img/check.png"
    result = check_in_frame(browser, page, f"{frame_origin(page_server)}/frame.html", src)
    assert result["ok"], result
    until(
        lambda: panel_text(page, ".explanation") == SECRET_EXPLANATION,
        what="the verdict in the panel page",
    )


# The page frames a URL itself, directly or (`nested`) inside a frame of its own.
FRAME_IT = """([url, nested, name]) => {
    const frame = document.createElement('iframe');
    frame.name = name;
    if (nested) frame.srcdoc = `<iframe src="${url}"></iframe>`;
    else frame.src = url;
    document.body.append(frame);
}"""


def loaded_frame(page: Any, name: str) -> Any:
    """The frame FRAME_IT made under `name` (the inner one, when nested), once it has left
    about:blank; else None."""
    page.evaluate("() => 0")  # a round trip: the sync API takes in new frames while it waits
    outer = page.frame(name=name)
    if outer is None:
        return None
    frame = outer.child_frames[0] if outer.url == "about:srcdoc" and outer.child_frames else outer
    return frame if frame.url not in ("", "about:blank", "about:srcdoc") else None


def check_own_image(browser: Any, page: Any, page_server: Any, stub_server: Any) -> None:
    stub_server.analysis = {"explanation": OWN_EXPLANATION}
    result = browser.check_image(page, page_server.url("/img/report.png"))
    assert result["ok"], result


FRAME_VERDICT = ("Likely authentic", SECRET_EXPLANATION, SECRET_EVIDENCE, "embedded frame")


def assert_page_learns_nothing(
    view: dict[str, Any], *secrets: str, verdict: tuple[str, ...] = FRAME_VERDICT, embeds: int = 1
) -> None:
    """What the page's script found (PAGE_SCRIPT_VIEW): an empty host, and none of `verdict` and
    `secrets` anywhere it can reach; `embeds`: the page's own iframes (cross-origin)."""
    assert view["hosts"] == 1
    assert view["rootText"] is None, "the page reads the panel through host.shadowRoot"
    assert view["hostText"] == ""
    assert set(view["attributes"]) <= {"popover"}, view["attributes"]
    assert view["iframes"] == embeds, "the page's DOM holds only its own iframes"
    assert view["frames"] == ["unreadable"] * embeds, "the only frames it reaches are its own"
    for secret in (*verdict, *secrets):
        for where in ("serialized", "page", "caught", "selection"):
            assert secret not in view[where], (secret, where)
    assert view["liveRegions"] == 0, "announcements live inside the panel page"


def test_the_embedding_page_cannot_read_the_panel_for_an_image_of_its_frame(
    until: Any,
    browser: Any,
    stub_server: Any,
    page_server: Any,
    hostile_embedding: tuple[Any, str],
) -> None:
    page, _ = hostile_embedding

    check_frame_image(until, browser, page, page_server, stub_server)

    # The user sees the whole verdict (in the panel page)...
    assert panel_text(page, ".verdict") == "Likely authentic"
    assert SECRET_EVIDENCE in panel_text(page, ".evidence")
    assert "embedded frame from" in panel_text(page, ".frame-note")
    # ...the embedding page's script finds only an empty, closed host...
    assert_page_learns_nothing(page.evaluate(PAGE_SCRIPT_VIEW))
    # ...and even opened, the host holds no verdict: only an extension page it cannot read.
    host = browser.worker.evaluate(HOST_FROM_THE_EXTENSION, page.url)
    assert host == {
        "mode": "closed",
        "children": ["style", "iframe"],
        "text": "",
        "src": "chrome-extension:",
        "readable": False,
    }


def test_what_the_user_types_and_selects_in_the_panel_never_reaches_the_embedding_page(
    until: Any,
    browser: Any,
    stub_server: Any,
    page_server: Any,
    hostile_embedding: tuple[Any, str],
) -> None:
    from playwright.sync_api import expect

    page, _ = hostile_embedding
    asked: list[dict[str, Any]] = []

    def ask(handler: Any) -> None:
        asked.append(json.loads(handler.body))
        handler.reply(200, {"answer": ANSWER})

    stub_server.routes["POST /v1/ask"] = ask
    check_frame_image(until, browser, page, page_server, stub_server)
    page.evaluate("() => { window.seen.length = 0; window.selections.length = 0; }")

    # The user types a question into the panel, selects it, copies it and sends it with Enter...
    question = panel_frame(page).get_by_label("Or your own question")
    question.click()
    expect(question).to_be_focused()  # the keys go where the focus is: in the panel page
    page.keyboard.type(QUESTION)
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+c")
    page.keyboard.press("Enter")
    until(lambda: ANSWER in panel_text(page, ".answer"), what="the answer")
    # ...and selects the explanation with the mouse.
    panel_frame(page).locator("fakescope-panel .explanation").click(click_count=3)

    # The panel got all of it: the question went to the server, the text is selected there.
    assert [a.get("question") for a in asked] == [QUESTION]
    selected = panel_frame(page).evaluate("() => String(document.getSelection())")
    assert SECRET_EXPLANATION in selected
    # The embedding page saw no key, no input, no copy, and no selection at all.
    assert page.evaluate("() => window.seen") == []
    assert set(page.evaluate("() => window.selections")) <= {""}
    assert_page_learns_nothing(page.evaluate(PAGE_SCRIPT_VIEW), QUESTION, ANSWER)


def test_the_panel_frame_keeps_one_size_whatever_it_shows(
    until: Any,
    browser: Any,
    stub_server: Any,
    page_server: Any,
    hostile_embedding: tuple[Any, str],
) -> None:
    """The embedding page can hit-test where the panel is; its size must say nothing of what
    the panel shows (a loading state, a long explanation, an open form, an answer)."""
    page, _ = hostile_embedding
    answering(stub_server)
    stub_server.hold()
    start_check_in_frame(
        browser,
        page,
        f"{frame_origin(page_server)}/frame.html",
        f"{frame_origin(page_server)}/img/check.png",
    )
    until(lambda: "Checking this image" in panel_text(page, ".body"), what="loading")
    loading = panel_frame(page).frame_element().bounding_box()

    stub_server.analysis = {"explanation": "A long explanation. " * 80}
    stub_server.release()
    until(lambda: panel_text(page, ".verdict"), what="the verdict")
    result = panel_frame(page).frame_element().bounding_box()
    panel_locator(page, "button", "Report a wrong verdict").click()
    with_form = panel_frame(page).frame_element().bounding_box()
    ask_in_the_panel(until, page)
    answered = panel_frame(page).frame_element().bounding_box()

    assert loading == result == with_form == answered
    assert loading["height"] == 640, "min(80vh, 640 px): the one size, whatever it shows"


# In a panel page: it tells the worker its content is `height` px tall (panel/frame-panel.js).
SEND_SIZE = """(height) => chrome.runtime.sendMessage(
    {type: 'fakescope:panel-size', panel: location.hash.slice(1), height})"""


def test_the_worker_refuses_a_size_for_the_panel_of_a_frames_image(
    until: Any,
    browser: Any,
    stub_server: Any,
    page_server: Any,
    hostile_embedding: tuple[Any, str],
) -> None:
    """Only a panel about its host's own image follows its content: a size message for the
    panel of the small frame's image, even from that panel's own page, changes nothing."""
    page, _ = hostile_embedding
    check_frame_image(until, browser, page, page_server, stub_server)
    before = panel_frame(page).frame_element().bounding_box()

    assert panel(page).evaluate(SEND_SIZE, 40) == {"ok": False, "height": None}
    assert panel_frame(page).frame_element().bounding_box() == before
    assert before["height"] == 640

    # The same message from the panel of the page's own image is taken (rounded up to 80 px).
    check_own_image(browser, page, page_server, stub_server)
    until(lambda: panel_text(page, ".explanation") == OWN_EXPLANATION, what="the own panel")
    # The panel page sends its own size as its content lays out (160, then 640 px seen): a late
    # one would undo the message below. The test's message goes once the panel has settled.
    heights: list[float] = []

    def settled() -> bool:
        heights.append(panel_frame(page).frame_element().bounding_box()["height"])
        return len(heights) >= 3 and heights[-1] == heights[-2] == heights[-3] != 80

    until(settled, what="the own panel's height to settle")
    assert panel(page).evaluate(SEND_SIZE, 40) == {"ok": True, "height": 80}
    until(lambda: panel_frame(page).frame_element().bounding_box()["height"] == 80, what="80 px")


def test_a_page_that_frames_the_panel_page_itself_gets_an_empty_page(
    until: Any,
    browser: Any,
    stub_server: Any,
    page_server: Any,
    hostile_embedding: tuple[Any, str],
) -> None:
    """The page's address changes every session (use_dynamic_url), so a page cannot find it;
    given it, a page still gets nothing without the id of a panel of its own tab, placed
    directly in its top frame (a panel of another tab, or nested deeper, stays empty)."""
    page, _ = hostile_embedding
    check_frame_image(until, browser, page, page_server, stub_server)
    dynamic_url = browser.worker.evaluate("() => chrome.runtime.getURL('panel/frame-panel.html')")
    static_url = browser.extension_url("panel/frame-panel.html")
    assert dynamic_url != static_url
    panel_id = browser.worker.evaluate(
        """async (pageUrl) => {
            const tab = (await chrome.tabs.query({})).find((t) => t.url === pageUrl);
            const key = `framePanelOfTab:${tab.id}`;
            return (await chrome.storage.session.get(key))[key]?.[0];
        }""",
        page.url,
    )
    assert isinstance(panel_id, str)

    other = browser.context.new_page()
    other.goto(page_server.url("/plain.html"))
    framings = {
        "no id": (other, dynamic_url),
        "an unknown id": (other, f"{dynamic_url}#{uuid.uuid4()}"),
        "another tab's panel": (other, f"{dynamic_url}#{panel_id}"),
        "nested in its own tab": (page, f"{dynamic_url}#{panel_id}"),
        "the fixed address": (other, f"{static_url}#{panel_id}"),
    }
    for name, (framer, url) in framings.items():
        framer.evaluate(FRAME_IT, [url, name.startswith("nested"), name])

    for name, (framer, _) in framings.items():
        frame = until(lambda n=name, f=framer: loaded_frame(f, n), what=name)
        if name == "the fixed address":
            # Refused outright (use_dynamic_url): no page of the extension loads there at all.
            assert frame.url.startswith("chrome-error:"), frame.url
            continue
        assert frame.url.startswith("chrome-extension://"), (name, frame.url)
        frame.wait_for_load_state()
        made = frame.evaluate("() => window.fakescopeFramePanel")
        body = frame.evaluate("() => [document.body.children.length, document.body.innerText]")
        assert (made, body) == ("inert", [0, ""]), name
    # The real panel, in the right place, still shows.
    assert panel_text(page, ".explanation") == SECRET_EXPLANATION


def test_the_panel_is_framed_for_a_frame_image_and_for_the_pages_own_image_alike(
    until: Any,
    browser: Any,
    stub_server: Any,
    page_server: Any,
    hostile_embedding: tuple[Any, str],
) -> None:
    page, _ = hostile_embedding
    own_verdict = ("Likely authentic", OWN_EXPLANATION)

    # The page's own image: a framed panel over it, nothing of it in the page.
    check_own_image(browser, page, page_server, stub_server)
    until(lambda: panel_text(page, ".explanation") == OWN_EXPLANATION, what="the own panel")
    assert_page_learns_nothing(page.evaluate(PAGE_SCRIPT_VIEW), verdict=own_verdict)
    assert panel_text(page, ".frame-note") == ""

    # Then an image of the small frame, while that panel is open: a new framed panel replaces it.
    check_frame_image(until, browser, page, page_server, stub_server)
    assert_page_learns_nothing(page.evaluate(PAGE_SCRIPT_VIEW), OWN_EXPLANATION)
    until(
        lambda: (in_panel(page, "section[role=dialog]") or {}).get("focused"),
        what="the focus in the new panel",
    )
    dialog = in_panel(page, "section[role=dialog]")
    assert dialog is not None
    assert dialog["focused"]["role"] == "dialog", "the new panel has the focus"

    # And the page's own image again: without the frame's note or verdict.
    check_own_image(browser, page, page_server, stub_server)
    until(lambda: panel_text(page, ".explanation") == OWN_EXPLANATION, what="the own panel again")
    assert panel_text(page, ".frame-note") == ""
    assert_page_learns_nothing(page.evaluate(PAGE_SCRIPT_VIEW), verdict=own_verdict)


# The page's script trying to change what the panel says: through the host (a second shadow
# root, its light DOM), every element it can reach, every shadow root it caught, every frame.
REWRITE_THE_PANEL = """() => {
    const host = document.querySelector('fakescope-overlay');
    const tried = {};
    try {
        host.attachShadow({mode: 'open'}).innerHTML = '<p>Likely real</p>';
        tried.attach = 'attached';
    } catch {
        tried.attach = 'refused';
    }
    host.innerHTML = '<p class="verdict">Likely real</p>';
    for (const el of document.querySelectorAll('*')) {
        if (el.children.length === 0 && el.textContent.includes('AI-generated')) {
            el.textContent = 'Likely real';
        }
    }
    for (const root of window.caughtRoots) root.innerHTML = '<p>Likely real</p>';
    tried.frames = [];
    for (let i = 0; i < window.length; i += 1) {
        try {
            window[i].document.body.textContent = 'Likely real';
            tried.frames.push('changed');
        } catch {
            tried.frames.push('unreadable');
        }
    }
    tried.shadowRoot = host.shadowRoot === null ? null : 'open';
    return tried;
}"""

FAKE_VERDICT = {"label": "fake", "p_fake": 0.93, "explanation": OWN_EXPLANATION}


def ask_in_the_panel(until: Any, page: Any) -> None:
    """The user types QUESTION into the panel, selects and copies it, and sends it with Enter."""
    from playwright.sync_api import expect

    question = panel(page).get_by_label("Or your own question")
    question.click()
    expect(question).to_be_focused()  # the keys go where the focus is: in the panel page
    page.keyboard.type(QUESTION)
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+c")
    page.keyboard.press("Enter")
    until(lambda: ANSWER in panel_text(page, ".answer"), what="the answer")


def answering(stub_server: Any) -> list[dict[str, Any]]:
    asked: list[dict[str, Any]] = []

    def ask(handler: Any) -> None:
        asked.append(json.loads(handler.body))
        handler.reply(200, {"answer": ANSWER})

    stub_server.routes["POST /v1/ask"] = ask
    return asked


def assert_the_page_cannot_rewrite_the_panel(browser: Any, page: Any, headline: str) -> None:
    tried = page.evaluate(REWRITE_THE_PANEL)

    assert tried["attach"] == "refused" and tried["shadowRoot"] is None, tried
    assert "changed" not in tried["frames"], tried
    # What the user sees, read on the extension's side: unchanged, and the host still holds only
    # the panel page (its light DOM, where the page wrote, is not drawn: no slot shows it).
    assert panel_text(page, ".verdict") == headline
    assert panel_text(page, ".explanation") == OWN_EXPLANATION
    host = browser.worker.evaluate(HOST_FROM_THE_EXTENSION, page.url)
    assert (host["mode"], host["children"], host["text"]) == ("closed", ["style", "iframe"], "")
    written = "() => document.querySelector('fakescope-overlay > p').getClientRects().length"
    assert page.evaluate(written) == 0, "the page's text in the host's light DOM is not drawn"


def test_the_page_can_neither_read_nor_change_the_panel_for_its_own_image(
    until: Any,
    browser: Any,
    stub_server: Any,
    page_server: Any,
    hostile_embedding: tuple[Any, str],
) -> None:
    page, _ = hostile_embedding
    asked = answering(stub_server)
    stub_server.analysis = FAKE_VERDICT
    assert browser.check_image(page, page_server.url("/img/report.png"))["ok"]
    until(lambda: panel_text(page, ".verdict") == "Likely AI-generated", what="the verdict")
    page.evaluate("() => { window.seen.length = 0; window.selections.length = 0; }")

    ask_in_the_panel(until, page)

    assert [a.get("question") for a in asked] == [QUESTION]
    assert page.evaluate("() => window.seen") == [], "no key, input or copy reached the page"
    assert set(page.evaluate("() => window.selections")) <= {""}
    assert_page_learns_nothing(
        page.evaluate(PAGE_SCRIPT_VIEW),
        QUESTION,
        ANSWER,
        verdict=("Likely AI-generated", "93% likelihood", OWN_EXPLANATION),
    )
    assert_the_page_cannot_rewrite_the_panel(browser, page, "Likely AI-generated")


FEED_PAGE_WITH_HOOK = (
    "<!doctype html><html><head><title>Feed with a hook</title></head><body>"
    + HOOK
    + '<h1>A feed</h1><img id="post" src="/img/known.png" width="240" height="180" alt="post">'
    + "</body></html>"
)


def test_the_page_can_neither_read_nor_change_a_feed_badges_panel(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    """The badge itself is the page's to read (its word and short verdict: a documented limit);
    the panel it opens, with the explanation, the evidence and the user's question, is not."""
    knows_every_image(stub_server)
    stub_server.analysis = {
        **FAKE_VERDICT,
        "evidence": [{"kind": "c2pa", "summary": SECRET_EVIDENCE, "strength": "strong"}],
    }
    asked = answering(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    switch_feed_mode_on(browser, page_server.origin, until)
    page_server.pages["/feed-hook.html"] = FEED_PAGE_WITH_HOOK
    page = browser.context.new_page()
    page.goto(page_server.url("/feed-hook.html"))
    badge = page.locator(f'fakescope-badge button[data-src="{page_server.url("/img/known.png")}"]')
    badge.click()
    until(lambda: panel_text(page, ".verdict") == "Likely AI-generated", what="the badge's panel")
    assert SECRET_EVIDENCE in panel_text(page, ".evidence")
    page.evaluate("() => { window.seen.length = 0; window.selections.length = 0; }")

    ask_in_the_panel(until, page)

    assert [a.get("question") for a in asked] == [QUESTION]
    assert page.evaluate("() => window.seen") == [], "no key, input or copy reached the page"
    assert_page_learns_nothing(
        page.evaluate(PAGE_SCRIPT_VIEW),
        QUESTION,
        ANSWER,
        verdict=(OWN_EXPLANATION, SECRET_EVIDENCE),
        embeds=0,
    )
    assert_the_page_cannot_rewrite_the_panel(browser, page, "Likely AI-generated")


# The page's own definition of the host's element name, made before any content script runs
# (or, `#late`, as soon as the host is in the page: an upgrade). Its constructor keeps the
# element's ElementInternals, whose shadowRoot gives even a closed root of a custom element;
# `#takes-root` also attaches a root of its own first, so that the extension could attach none.
DEFINES_THE_HOST = """<script>
  window.internals = [];
  window.constructed = 0;
  const define = () => customElements.define('fakescope-overlay', class extends HTMLElement {
    constructor() {
      super();
      window.constructed += 1;
      window.internals.push(this.attachInternals());
      if (location.hash === '#takes-root') {
        this.attachShadow({mode: 'open'}).innerHTML = '<p>Likely real</p>';
      }
    }
  });
  if (location.hash === '#late') {
    new MutationObserver((_, observer) => {
      if (!document.querySelector('fakescope-overlay')) return;
      observer.disconnect();
      define();
    }).observe(document.documentElement, {childList: true});
  } else {
    define();
  }
</script>"""

# What the page's script gets through the internals it kept: the panel's root, the panel page's
# address (with the panel's id), and the root's content to rewrite.
REACH_THROUGH_INTERNALS = """() => window.internals.map((internals) => {
    const root = internals.shadowRoot;
    if (!root) return null;
    const src = root.querySelector('iframe')?.src ?? null;
    root.replaceChildren(Object.assign(document.createElement('p'), {textContent: 'Likely real'}));
    return {mode: root.mode, src};
})"""


@pytest.mark.parametrize("mode", ["first", "takes-root", "late"])
def test_a_page_that_defines_the_hosts_element_gets_no_reach_into_the_panel(
    mode: str, until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    page_server.pages["/defines-host.html"] = (
        "<!doctype html><html><head>" + DEFINES_THE_HOST + HOOK + "</head><body>" + OWN_IMAGE
    ) + "</body></html>"
    browser.set_settings(serverUrl=stub_server.url)
    stub_server.analysis = FAKE_VERDICT
    page = browser.context.new_page()
    page.goto(page_server.url(f"/defines-host.html#{mode}"))
    page.locator("#own").wait_for()

    assert browser.check_image(page, page_server.url("/img/report.png"))["ok"]
    until(lambda: panel_text(page, ".verdict") == "Likely AI-generated", what="the verdict")

    # The page's class did take the host (its constructor ran), and got nothing of the panel.
    assert page.evaluate("() => window.constructed") == 1
    assert page.evaluate(REACH_THROUGH_INTERNALS) == [None]
    assert_the_page_cannot_rewrite_the_panel(browser, page, "Likely AI-generated")
