"""Reaching into the result panel as the user sees it. Every panel is the extension page
panel/frame-panel.html in an iframe inside a closed shadow root of its host
(`fakescope-overlay`): no page script can reach it, and Playwright's selectors do not pierce a
closed root either. The tests reach the panel page as one of the frames of its host document
(`panel_frame`: the page's main frame by default, or the frame given as `within`), read it there
(an extension page: the test may, the page may not) and click and type into it as the user does."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout_s: float = 15.0, what: str = "it") -> Any:
    """Polls `condition` until it returns something truthy (and returns that), or fails."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


PANEL_PAGE = re.compile(r"^chrome-extension://[a-p]{32}/panel/frame-panel\.html#")

# The panel page's panel, read in the panel page, once the page has drawn it (or found it has
# nothing to draw).
IN_PANEL = """async ([selector, text]) => {
    if (await window.fakescopeFramePanel !== 'shown') return null;
    const root = document.querySelector('fakescope-panel').shadowRoot;
    const all = [...root.querySelectorAll(selector)]
      .filter((el) => text === null || el.textContent.trim() === text);
    const focused = document.hasFocus() ? root.activeElement : null;
    const found = {count: all.length,
      focused: focused && {tag: focused.localName, role: focused.getAttribute('role'),
        name: focused.getAttribute('aria-label')}};
    const el = all[0];
    if (!el) return found;
    return {...found, text: el.innerText, label: el.dataset.label ?? null};
}"""

# In the panel page: its panel's shadow root, for tests that read it with a script of their own.
PANEL_ROOT = "document.querySelector('fakescope-panel').shadowRoot"


def panel_frame(page: Any, within: Any = None) -> Any:
    """The panel page hosted by `within` (a frame of `page`; its main frame by default), or None."""
    # A round trip first: the sync API takes in frames attached meanwhile only while it waits.
    page.evaluate("() => 0")
    host = within if within is not None else page.main_frame
    frames = [f for f in host.child_frames if PANEL_PAGE.match(f.url)]
    assert len(frames) <= 1, [f.url for f in frames]
    return frames[0] if frames else None


def panel(page: Any, within: Any = None, timeout_s: float = 15.0) -> Any:
    """The panel page hosted by `within` (see panel_frame), waiting for it to be there."""
    return wait_until(lambda: panel_frame(page, within), timeout_s, what="the panel page")


def in_panel(
    page: Any, selector: str, text: str | None = None, *, within: Any = None
) -> dict[str, Any] | None:
    """The first element of the panel matching `selector` (and `text`): its text, data-label and
    how many match, with the element focused in the panel (while the panel page has the focus);
    None when the host shows no panel page (or it is not drawn yet)."""
    frame = panel_frame(page, within)
    if frame is None:
        return None
    found: dict[str, Any] | None = frame.evaluate(IN_PANEL, [selector, text])
    return found


def panel_text(page: Any, selector: str, *, within: Any = None) -> str:
    """The text of the panel's first element matching `selector`; "" when there is none (yet)."""
    found = in_panel(page, selector, within=within)
    return str(found["text"]) if found and found["count"] else ""


def panel_locator(page: Any, selector: str, text: str | None = None, *, within: Any = None) -> Any:
    """A Playwright locator in the panel page (`text`: the element's whole text)."""
    locator = panel(page, within).locator(selector)
    if text is None:
        return locator
    exact = re.compile(rf"^\s*{re.escape(text)}\s*$")
    return locator.filter(has_text=exact).first


def click_in_panel(page: Any, selector: str, text: str, *, within: Any = None) -> None:
    """A real (trusted) click on a control of the panel, as the user makes it."""
    panel_locator(page, selector, text, within=within).click()


def focused_in_panel(page: Any, *, within: Any = None) -> dict[str, Any] | None:
    """What has the focus in the panel (tag, role, aria-label), when the panel page has it."""
    found = in_panel(page, "*", within=within)
    return found["focused"] if found else None


def press_escape_in_panel(page: Any, *, within: Any = None) -> None:
    """Escape, pressed as the user does once the panel has taken the focus (it takes it when it
    opens, a moment after it is drawn); the caller then checks that the panel closed.

    The press is a real key press, but bounded: closing the panel removes the frame that had
    the focus, and twice in CI (once with the focus there for certain) the browser never
    acknowledged that key press to Playwright, whose press then hung until the test's timeout.
    A user's key press waits for no acknowledgement; what the test checks is what the key did."""
    wait_until(lambda: focused_in_panel(page, within=within), what="the focus in the panel")
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    dialog = panel(page, within).locator("section[role=dialog]")
    # Delivered or not, the caller's check of the panel closing decides.
    with contextlib.suppress(PlaywrightTimeoutError):
        dialog.press("Escape", timeout=10_000)
