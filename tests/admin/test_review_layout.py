"""The review page in a narrow window (a phone, or a desktop window zoomed in) and with larger
text: a long reviewer name wraps beside **Sign out** (which stays on the page, on one line), the
cards never run wider than the window, and the queue filters stay wide enough to show their
values. Measured in real headless Chromium against a real server process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import CHROMIUM_ARGS
from sqlalchemy.ext.asyncio import async_sessionmaker
from test_review_browser import ReviewServer, _seed_flagged_items, live_server  # noqa: F401

from server.admin.roles import Role
from server.admin.token_store import create_token
from server.db.engine import create_engine

pytestmark = pytest.mark.browser

LONG_NAME = (
    "Maximiliana Alexandra Konstantinopoulou-Wolfeschlegelsteinhausen"
    " (Trust & Safety, EMEA night shift)"
)

# What runs past the window's right edge: the page's width and the elements that stick out.
OUTSIDE = """() => ({
    width: document.documentElement.scrollWidth,
    out: [...document.querySelectorAll('body *')]
      .filter((el) => !el.closest('.sr-only, .skip-link'))
      .filter((el) => el.getBoundingClientRect().right > innerWidth + 0.5)
      .map((el) => el.localName + (el.id ? '#' + el.id : '')
        + (el.className ? '.' + el.className : ''))
      .slice(0, 5),
})"""

# How many lines a button's label takes.
LABEL_LINES = """(button) => {
    const range = document.createRange();
    range.selectNodeContents(button);
    return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
}"""

# Each filter's width, and the width it needs to show the value chosen in it.
FILTER_WIDTHS = """() => [...document.querySelectorAll('.filters select')].map((select) => {
    const natural = select.cloneNode(false);
    natural.append(select.selectedOptions[0].cloneNode(true));
    natural.style.cssText = 'position: absolute; width: auto; min-width: max-content';
    select.parentElement.append(natural);
    const needed = natural.getBoundingClientRect().width;
    natural.remove();
    return [select.id, Math.round(select.getBoundingClientRect().width), Math.round(needed)];
})"""


async def _token_named(url: str, name: str) -> str:
    engine = create_engine(url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            created = await create_token(session, role=Role.REVIEWER, name=name, actor="test")
            await session.commit()
    finally:
        await engine.dispose()
    return created.secret


@contextlib.contextmanager
def _chromium(chromium_path: str, profile: Path, font_size: int = 16) -> Iterator[Any]:
    """Headless Chromium with the user's default font size set as in its settings."""
    from playwright.sync_api import sync_playwright

    preferences = {"webkit": {"webprefs": {"default_font_size": font_size}}}
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield context
        finally:
            context.close()


def _sign_in(context: Any, server: ReviewServer, token: str, width: int) -> Any:
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{server.url}/admin")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#decide-form").wait_for()
    return page


def test_a_long_reviewer_name_wraps_beside_a_whole_sign_out_button(
    live_server: ReviewServer,  # noqa: F811
    sqlite_url: str,
    chromium_path: str,
    tmp_path: Path,
) -> None:
    _seed_flagged_items(live_server)
    token = asyncio.run(_token_named(sqlite_url, LONG_NAME))
    with _chromium(chromium_path, tmp_path / "profile") as context:
        page = _sign_in(context, live_server, token, 320)
        for width in (320, 1400):
            page.set_viewport_size({"width": width, "height": 900})
            assert page.evaluate(OUTSIDE) == {"width": width, "out": []}, width
            sign_out = page.get_by_role("button", name="Sign out")
            assert sign_out.evaluate(LABEL_LINES) == 1, f"“Sign out” wrapped at {width} px"


def test_larger_text_in_a_narrow_window_keeps_the_cards_and_filters_readable(
    live_server: ReviewServer,  # noqa: F811
    chromium_path: str,
    tmp_path: Path,
) -> None:
    _seed_flagged_items(live_server)
    for font_size, width in ((16, 320), (20, 320)):
        profile = tmp_path / f"profile-{font_size}"
        with _chromium(chromium_path, profile, font_size) as context:
            page = _sign_in(context, live_server, live_server.reviewer_token, width)
            root_size = page.evaluate("getComputedStyle(document.documentElement).fontSize")
            assert root_size == f"{font_size}px", "the profile's default font size applies"

            assert page.evaluate(OUTSIDE) == {"width": width, "out": []}, (font_size, width)
            for name, shown, needed in page.evaluate(FILTER_WIDTHS):
                assert shown >= needed, f"{name}: {shown} px shows less than its {needed} px"
