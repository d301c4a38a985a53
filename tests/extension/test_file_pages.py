"""Right-click checks on `file:` pages (a local HTML file, where the user switched on "Allow
access to file URLs" for FakeScope): the panel page may be framed there (manifest), matches its
host although a file page calls itself "null" (panel/frame-panel.js), and the worker reads the
image file's own bytes (worker/image-bytes.js; a canvas re-encode is refused there).

The menu click's `activeTab` grant (which, with file access on, covers `file:///*` for that tab)
cannot be given by automation: the extension under test is a copy whose host permissions add
`file:///*` in its stead. Nothing else differs from the real manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import EXTENSION_DIR, make_png
from panel_helpers import panel_text

pytestmark = pytest.mark.browser

HEADLINES = {"Likely AI-generated", "Likely authentic", "Uncertain"}


@pytest.fixture
def extension_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "ext"
    shutil.copytree(EXTENSION_DIR, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["host_permissions"].append("file:///*")  # what the menu click's activeTab grants
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def open_file_page(browser: Any, tmp_path: Path, image: bytes) -> tuple[Any, Path]:
    site = tmp_path / "site"
    site.mkdir()
    picture = site / "holiday photo.png"
    picture.write_bytes(image)
    page_file = site / "page.html"
    page_file.write_text(
        "<!doctype html><html><head><title>Local</title></head><body><h1>A local page</h1>"
        '<img id="pic" src="holiday%20photo.png" width="240" height="180" alt="pic"></body></html>'
    )
    allowed = browser.worker.evaluate(
        "() => new Promise((resolve) => chrome.extension.isAllowedFileSchemeAccess(resolve))"
    )
    assert allowed is True, "the test needs file access for the extension"
    page = browser.context.new_page()
    page.goto(page_file.as_uri())
    assert page.evaluate("() => document.getElementById('pic').naturalWidth") == 240
    return page, picture


def test_a_right_click_check_on_a_file_page_sends_the_files_bytes_and_shows_the_verdict(
    until: Any, browser: Any, fakescope_server: Any, tmp_path: Path
) -> None:
    browser.set_settings(serverUrl=fakescope_server.url)
    image = make_png(31)
    page, picture = open_file_page(browser, tmp_path, image)

    result = browser.check_image(page, picture.as_uri())

    # The file's own bytes (not a canvas re-encode, which the page refuses anyway) went to the
    # server.
    assert result["ok"], result
    assert result["via"] == "worker"
    assert result["sha256"] == hashlib.sha256(image).hexdigest()
    until(lambda: panel_text(page, ".verdict") in HEADLINES, what="the verdict in the panel")
    assert panel_text(page, ".warning").startswith("Untrained demo model")


def test_a_file_that_is_gone_gets_a_clear_failure_pointing_to_check_an_image_file(
    until: Any, browser: Any, stub_server: Any, tmp_path: Path
) -> None:
    browser.set_settings(serverUrl=stub_server.url)
    page, picture = open_file_page(browser, tmp_path, make_png(32))
    picture.unlink()  # still shown by the page, no longer on disk

    result = browser.check_image(page, picture.as_uri())

    assert not result["ok"]
    until(
        lambda: panel_text(page, ".error-title") == "This image file could not be read",
        what="the failure in the panel",
    )
    assert "holiday photo.png" in panel_text(page, "[role=alert]")
    assert "Check an image file…" in panel_text(page, "[role=alert] .muted")
    assert not any(r.startswith("POST /v1/analyze") for r in stub_server.requests)


def test_a_local_file_that_is_not_an_image_never_leaves_the_computer(
    until: Any, browser: Any, stub_server: Any, tmp_path: Path
) -> None:
    # A local page is any HTML file (a saved page keeps its scripts): it may lay an <img> of
    # another local file over its picture, and the user right-clicks "the picture".
    browser.set_settings(serverUrl=stub_server.url)
    page, picture = open_file_page(browser, tmp_path, make_png(33))
    secret = picture.with_name("id_ed25519")
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot for anyone\n")

    result = browser.check_image(page, secret.as_uri())

    assert not result["ok"]
    until(
        lambda: panel_text(page, ".error-title") == "This file is not an image",
        what="the failure in the panel",
    )
    assert "nothing was sent" in panel_text(page, "[role=alert]")
    assert not any(r.startswith("POST /v1/analyze") for r in stub_server.requests)
