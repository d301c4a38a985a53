"""A reviewer works through the queue in real headless Chromium against a real server process."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import CHROMIUM_ARGS, LiveServer
from PIL import Image, ImageDraw, PngImagePlugin
from sqlalchemy.ext.asyncio import async_sessionmaker

from server.admin.roles import Role
from server.admin.token_store import create_token
from server.analyze.image_store import ImageFiles
from server.db.engine import create_engine


@dataclass(frozen=True)
class ReviewServer:
    url: str
    reviewer_token: str
    data_dir: Path


async def _reviewer_token(url: str) -> str:
    engine = create_engine(url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            created = await create_token(
                session, role=Role.REVIEWER, name="Rita Reviewer", actor="test"
            )
            await session.commit()
    finally:
        await engine.dispose()
    return created.secret


@pytest.fixture
def live_server(sqlite_url: str, tmp_path: Path) -> Iterator[ReviewServer]:
    """`fakescope serve` on a free loopback port, provenance-only, SQLite in tmp."""
    data_dir = tmp_path / "data"
    token = asyncio.run(_reviewer_token(sqlite_url))
    env = {
        "FAKESCOPE_DATA_DIR": str(data_dir),
        "FAKESCOPE_DATABASE_URL": sqlite_url,
        "FAKESCOPE_RATE_LIMIT": "off",
        "FAKESCOPE_MODEL": "",
    }
    server = LiveServer(env, tmp_path / "server.log").start()
    try:
        yield ReviewServer(url=server.base, reviewer_token=token, data_dir=data_dir)
    finally:
        server.stop()


def _picture(
    seed: int, text_chunks: dict[str, str] | None = None, exif_camera: bool = False
) -> bytes:
    """A small drawn picture (gradient sky, sun, hills); optional generator text or camera EXIF."""
    width, height = 320 + 16 * seed, 200
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        draw.line([(0, y), (width, y)], fill=(40 + y // 3, 90 + y // 4, 200 - y // 3))
    draw.ellipse([40 + 60 * seed, 30, 100 + 60 * seed, 90], fill=(255, 214, 90))
    draw.polygon([(0, 200), (110, 110 + 10 * seed), (230, 200)], fill=(40, 120, 60))
    draw.polygon([(150, 200), (260, 120), (width, 200)], fill=(30, 100, 50))
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    for key, value in (text_chunks or {}).items():
        info.add_text(key, value)
    exif = Image.Exif()
    if exif_camera:
        exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R6"
    image.save(buffer, "PNG", pnginfo=info, exif=exif.tobytes() if exif_camera else b"")
    return buffer.getvalue()


def _seed_flagged_items(server: ReviewServer) -> list[str]:
    """Three analysed images reported by users, so three open items, oldest first."""
    pictures = [
        _picture(0, {"parameters": "a sunny valley\nSteps: 20, Sampler: Euler a, Seed: 7"}),
        _picture(1, exif_camera=True),
        _picture(2),
    ]
    reasons = ["labelled real but has SD parameters", "my own photo", "not sure"]
    shas = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for data, reason in zip(pictures, reasons, strict=True):
            analysed = client.post("/v1/analyze", files={"file": ("p.png", data, "image/png")})
            assert analysed.status_code == 200, analysed.text
            sha = analysed.json()["sha256"]
            # A provenance-only server keeps no bytes; put them where a model server keeps them.
            ImageFiles(server.data_dir / "images").save(sha, data)
            reported = client.post(
                "/v1/reports", json={"sha256": sha, "reason": reason, "suggested_label": "fake"}
            )
            assert reported.status_code == 201, reported.text
            shas.append(sha)
            time.sleep(0.01)  # distinct flag times keep the queue order deterministic
    return shas


@contextlib.contextmanager
def _chromium(chromium_path: str) -> Iterator[Any]:
    """Headless Chromium for one test, closed however the test ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.browser
def test_a_reviewer_signs_in_and_decides_by_click_and_by_keyboard_in_chromium(
    live_server: ReviewServer, chromium_path: str, artifacts_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    shas = _seed_flagged_items(live_server)
    with _chromium(chromium_path) as browser:
        context = browser.new_context(viewport={"width": 1360, "height": 1000})
        page = context.new_page()
        page.goto(f"{live_server.url}/admin")
        expect(page.get_by_role("heading", name="Sign in to review")).to_be_visible()
        page.screenshot(path=str(artifacts_dir / "admin-login.png"))
        page.get_by_label("API token").fill(live_server.reviewer_token)
        page.get_by_role("button", name="Sign in").click()

        count = page.locator("#queue-count")
        expect(count).to_have_text("3 open")
        expect(page.locator("h1")).to_contain_text(shas[0][:16])
        expect(page.locator(".reasons")).to_contain_text("User report")
        expect(page.locator(".evidence")).to_contain_text("generator_parameters")
        expect(page.locator("#item-image")).to_be_visible()
        assert live_server.reviewer_token not in page.content()
        assert "admin_session" not in page.evaluate("document.cookie")  # HttpOnly
        session = next(c for c in context.cookies() if c["name"].endswith("admin_session"))
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert live_server.reviewer_token not in session["value"]  # a session secret only

        # j moves down the queue, k back up, without deciding anything.
        page.keyboard.press("j")
        expect(page.locator("h1")).to_contain_text(shas[1][:16])
        page.keyboard.press("k")
        expect(page.locator("h1")).to_contain_text(shas[0][:16])

        # Decide by clicking, with a note.
        page.get_by_label("Note (optional)").fill("SD WebUI parameters in the file")
        page.get_by_role("button", name="Fake").click()
        expect(count).to_have_text("2 open")
        expect(page.get_by_role("status")).to_contain_text("is fake")
        expect(page.locator("h1")).to_contain_text(shas[1][:16])
        expect(page.locator(".evidence")).to_contain_text("camera_exif")
        page.screenshot(path=str(artifacts_dir / "admin-review.png"), full_page=True)

        # Decide with the keyboard: r = Real, whatever the case (as with Caps Lock on).
        page.keyboard.press("R")
        expect(count).to_have_text("1 open")
        expect(page.locator("h1")).to_contain_text(shas[2][:16])
        assert page.locator("a[data-queue-link]").count() == 1
        context.close()

    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        first = client.get(f"/v1/analyses/{shas[0]}").json()
        second = client.post("/v1/lookup", json={"sha256": [shas[1]]}).json()["results"][shas[1]]
        untouched = client.get(f"/v1/analyses/{shas[2]}").json()
    assert (first["label"], first["decided_by"]) == ("fake", "review")
    assert first["review"]["note"] == "SD WebUI parameters in the file"
    assert (second["label"], second["decided_by"]) == ("real", "review")
    assert untouched["decided_by"] != "review"


def _seed_queue(server: ReviewServer, count: int) -> list[str]:
    """`count` reported images, oldest first; the first report's reason is a hostile string."""
    hostile = "<img src=x onerror=alert(1)>" + "x" * 1500  # one long unbroken word
    shas = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for seed in range(count):
            image = Image.new("RGB", (40, 30), (seed % 256, (seed * 7) % 256, (seed * 13) % 256))
            ImageDraw.Draw(image).rectangle([seed % 30, 5, seed % 30 + 8, 20], fill=(255, 255, 0))
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            analysed = client.post("/v1/analyze", files={"file": ("q.png", buffer.getvalue())})
            assert analysed.status_code == 200, analysed.text
            sha = analysed.json()["sha256"]
            reason = hostile if seed == 0 else f"report {seed}"
            reported = client.post("/v1/reports", json={"sha256": sha, "reason": reason})
            assert reported.status_code == 201, reported.text
            shas.append(sha)
    return shas


@pytest.mark.browser
def test_two_reviewers_conflict_long_queues_page_and_hostile_text_stays_inside_in_chromium(
    live_server: ReviewServer, sqlite_url: str, chromium_path: str, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    shas = _seed_queue(live_server, 103)
    second_token = asyncio.run(_reviewer_token(sqlite_url))
    alerts: list[str] = []
    with _chromium(chromium_path) as browser:
        pages = []
        for token in (live_server.reviewer_token, second_token):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
            page.goto(f"{live_server.url}/admin")
            page.get_by_label("API token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#queue-count")).to_have_text("103 open")
            pages.append(page)
        rita, bob = pages

        # The hostile, 1,500-character report is escaped and wraps inside its card.
        expect(rita.locator("h1")).to_contain_text(shas[0][:16])
        expect(rita.locator(".user-text")).to_contain_text("<img src=x onerror=alert(1)>")
        assert rita.evaluate("document.documentElement.scrollWidth") <= 1280
        rita.screenshot(path=str(artifacts_dir / "admin-long-text.png"), full_page=True)

        # Both look at the first item; Rita decides first, Bob's stale page must not
        # overwrite her decision without showing it to him.
        rita.get_by_label("Note (optional)").fill("flat colours, generated")
        bob.get_by_label("Note (optional)").fill("looks like a scan")
        rita.keyboard.press("Escape")
        rita.keyboard.press("f")
        expect(rita.locator("#saved-notice")).to_contain_text("is fake")
        bob.get_by_role("button", name="Real").click()
        conflict = bob.get_by_role("alert")
        expect(conflict).to_contain_text("someone else decided this item")
        expect(conflict).to_contain_text("flat colours, generated")
        expect(bob.get_by_label("Note (optional)")).to_have_value("looks like a scan")
        bob.screenshot(path=str(artifacts_dir / "admin-conflict.png"))
        with httpx.Client(base_url=live_server.url, timeout=30) as client:
            served = client.get(f"/v1/analyses/{shas[0]}").json()
        assert (served["label"], served["review"]["note"]) == (
            "fake",
            "flat colours, generated",
        )
        # Having seen it, Bob overrides on purpose.
        bob.get_by_role("button", name="Real").click()
        expect(bob.locator("#saved-notice")).to_contain_text("is real")

        # 102 open items: the first page shows 100 and links to the rest; j past the
        # last item of the page goes on to the next page.
        expect(rita.locator("#queue-range")).to_contain_text("Items 1\u2013100 of 102")
        rita.locator("a[data-queue-link]").last.click()
        expect(rita.locator("h1")).to_contain_text(shas[100][:16])
        rita.keyboard.press("j")
        expect(rita.locator("#queue-range")).to_contain_text("Items 101\u2013102 of 102")
        # k on the first item of a page steps back to the end of the page before.
        rita.keyboard.press("k")
        expect(rita.locator("h1")).to_contain_text(shas[100][:16])
        expect(rita.locator("#queue-range")).to_contain_text("Items 1\u2013100 of 102")
        rita.keyboard.press("j")
        expect(rita.locator("#queue-range")).to_contain_text("Items 101\u2013102 of 102")
        expect(rita.locator("a[data-queue-link]")).to_have_count(2)
        last = rita.locator("a[data-queue-link]").last
        target = str(last.get_attribute("href")).split("/admin/items/")[1][:16]
        last.click()
        # The key goes to the item's page once it has loaded, not to the page it leaves.
        expect(rita.locator("h1")).to_contain_text(target)
        rita.keyboard.press("r")
        expect(rita.locator("#saved-notice")).to_contain_text("is real")
        expect(rita.locator("#queue-range")).to_contain_text("Items 101\u2013101 of 101")
        expect(rita.locator("#queue-first")).to_be_visible()

        # In a phone-sized window the item and its buttons come first, not after a
        # hundred queue entries.
        bob.set_viewport_size({"width": 390, "height": 844})
        bob.goto(f"{live_server.url}/admin")
        expect(bob.locator("#queue-range")).to_contain_text("Items 1\u2013100")
        box = bob.locator("#decide-fake").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 844, box
        assert bob.evaluate("document.documentElement.scrollWidth") <= 390
        bob.screenshot(path=str(artifacts_dir / "admin-narrow.png"))
    assert alerts == []


@pytest.mark.browser
def test_the_review_page_is_labelled_and_its_shortcuts_leave_typing_alone_in_chromium(
    live_server: ReviewServer, chromium_path: str
) -> None:
    """What keyboard and screen-reader users depend on (checked with axe-core by hand)."""
    from playwright.sync_api import expect

    shas = _seed_flagged_items(live_server)
    with _chromium(chromium_path) as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{live_server.url}/admin")
        page.get_by_label("API token").fill("fs_not-a-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_be_visible()
        expect(page.get_by_label("API token")).to_have_accessible_description(
            page.get_by_role("alert").inner_text()
        )
        page.get_by_label("API token").fill(live_server.reviewer_token)
        page.get_by_role("button", name="Sign in").click()
        count = page.locator("#queue-count")
        expect(count).to_have_text("3 open")

        # The skip link comes first and leads to the item.
        page.keyboard.press("Tab")
        skip = page.get_by_role("link", name="Skip to content")
        expect(skip).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()

        # Named controls, labelled fields; the shortcuts are exposed to assistive technology.
        expect(page.get_by_label("Reason")).to_have_count(1)
        expect(page.get_by_label("Status")).to_have_count(1)
        expect(page.get_by_role("group", name="Decide")).to_be_visible()
        expect(page.get_by_role("button", name="Fake")).to_have_attribute("aria-keyshortcuts", "f")
        expect(page.get_by_role("button", name="Real")).to_have_attribute("aria-keyshortcuts", "r")
        # Labels carry their words, not only a colour.
        expect(page.locator("a[data-queue-link] .label").first).not_to_be_empty()

        # Typing in a field never fires a shortcut: f, r, s, j, k, n are just letters there.
        note = page.get_by_label("Note (optional)")
        note.click()
        page.keyboard.type("fresh jpeg, skin looks n k")
        expect(note).to_have_value("fresh jpeg, skin looks n k")
        expect(count).to_have_text("3 open")
        expect(page.locator("h1")).to_contain_text(shas[0][:16])
        page.get_by_label("Reason").focus()
        page.keyboard.press("f")
        expect(count).to_have_text("3 open")

        # Escape leaves the field; then the shortcut decides, and the outcome, which comes
        # with the next page, is said through a live region.
        note.focus()
        page.keyboard.press("Escape")
        page.keyboard.press("f")
        expect(count).to_have_text("2 open")
        announcer = page.locator("#announcer")
        expect(announcer).to_have_attribute("aria-live", "polite")
        expect(announcer).to_contain_text("is fake")

        # A page without an item still has its heading.
        page.goto(f"{live_server.url}/admin/items/{'0' * 64}")
        expect(page.get_by_role("heading", level=1)).to_have_count(1)
