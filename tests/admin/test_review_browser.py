"""A reviewer works through the queue in real headless Chromium against a real server process."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw, PngImagePlugin
from sqlalchemy.ext.asyncio import async_sessionmaker

from server.admin.roles import Role
from server.admin.token_store import create_token
from server.analyze.image_store import ImageStore
from server.db.engine import create_engine
from server.db.migrate import upgrade_async

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LiveServer:
    url: str
    reviewer_token: str
    data_dir: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _prepare_database(url: str) -> str:
    await upgrade_async(url)
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


def _wait_healthy(url: str, process: subprocess.Popen[bytes], within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become healthy")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """`uvicorn server.app:create_app` on a free loopback port, provenance-only, SQLite in tmp."""
    data_dir = tmp_path / "data"
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'fakescope.db'}"
    token = asyncio.run(_prepare_database(database_url))
    port = _free_port()
    env = {
        **os.environ,
        "FAKESCOPE_DATA_DIR": str(data_dir),
        "FAKESCOPE_DATABASE_URL": database_url,
        "FAKESCOPE_RATE_LIMIT": "off",
    }
    env.pop("FAKESCOPE_MODEL", None)
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "server.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield LiveServer(url=url, reviewer_token=token, data_dir=data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


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


def _seed_flagged_items(server: LiveServer) -> list[str]:
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
            ImageStore(server.data_dir / "images").save(sha, data)
            reported = client.post(
                "/v1/reports", json={"sha256": sha, "reason": reason, "suggested_label": "fake"}
            )
            assert reported.status_code == 201, reported.text
            shas.append(sha)
            time.sleep(0.01)  # distinct flag times keep the queue order deterministic
    return shas


@pytest.mark.browser
def test_a_reviewer_signs_in_and_decides_by_click_and_by_keyboard_in_chromium(
    live_server: LiveServer, chromium_path: str, artifacts_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    shas = _seed_flagged_items(live_server)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
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

            # Decide with the keyboard: r = Real.
            page.keyboard.press("r")
            expect(count).to_have_text("1 open")
            expect(page.locator("h1")).to_contain_text(shas[2][:16])
            assert page.locator("a[data-queue-link]").count() == 1
            context.close()
        finally:
            browser.close()

    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        first = client.get(f"/v1/analyses/{shas[0]}").json()
        second = client.post("/v1/lookup", json={"sha256": [shas[1]]}).json()["results"][shas[1]]
        untouched = client.get(f"/v1/analyses/{shas[2]}").json()
    assert (first["label"], first["decided_by"]) == ("fake", "review")
    assert first["review"]["note"] == "SD WebUI parameters in the file"
    assert (second["label"], second["decided_by"]) == ("real", "review")
    assert untouched["decided_by"] != "review"
