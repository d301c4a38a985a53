"""The store package (`scripts/package_extension.py`): what the browser runs and nothing else,
reproducible, refused when it would lack a file; and the package itself works in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import EXTENSION_DIR, extension_id
from live_server import REPO_ROOT
from panel_helpers import panel

SCRIPT = REPO_ROOT / "scripts" / "package_extension.py"


def package(out: Path | None, source: Path = EXTENSION_DIR) -> subprocess.CompletedProcess[str]:
    """The script on `source`, writing `out` (None: its default name, made from the version)."""
    where = ["--out", str(out)] if out is not None else []
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--source", str(source), *where],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / "fakescope.zip"
    result = package(out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of the extension that a test may break."""
    copy = tmp_path / "extension"
    shutil.copytree(EXTENSION_DIR, copy)
    return copy


@pytest.fixture
def extension_dir(built: Path, tmp_path: Path) -> Path:
    """The browser loads the package, unpacked as the store would install it."""
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(unpacked)
    return unpacked


def test_the_package_holds_what_the_browser_runs_without_tests_or_the_manifest_key(
    built: Path,
) -> None:
    with zipfile.ZipFile(built) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    original = json.loads((EXTENSION_DIR / "manifest.json").read_text())
    assert "key" in original and "key" not in manifest
    assert manifest == {name: value for name, value in original.items() if name != "key"}
    runtime = {
        path.relative_to(EXTENSION_DIR).as_posix()
        for path in EXTENSION_DIR.rglob("*")
        if path.is_file()
        and path.suffix in {".js", ".html", ".css", ".png", ".json"}
        and "tests" not in path.relative_to(EXTENSION_DIR).parts
    }
    assert names == runtime
    assert {"background.js", "panel/frame-panel.html", "icons/icon128.png"} <= names


def test_the_same_tree_packages_to_the_same_bytes(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.zip"
    result = package(again)
    assert result.returncode == 0, result.stderr
    assert again.read_bytes() == built.read_bytes()
    digest = result.stdout.splitlines()[-1]
    assert digest.startswith("sha256 ") and len(digest.split()[1]) == 64


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("lib/problem.js", "lib/api.js refers to ./problem.js"),
        ("content/feed.js", "refers to content/feed.js"),
        ("panel/panel-forms.js", "panel/frame-panel.html refers to panel-forms.js"),
        ("icons/icon48.png", "the manifest names files the package lacks: icons/icon48.png"),
        ("popup/popup.html", "the manifest names files the package lacks: popup/popup.html"),
    ],
)
def test_a_tree_missing_a_file_it_loads_is_refused_and_no_package_is_left(
    tmp_path: Path, source: Path, remove: str, named: str
) -> None:
    (source / remove).unlink()
    out = tmp_path / "broken.zip"
    result = package(out, source)
    assert result.returncode == 1
    assert named in result.stderr, result.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"description": "x" * 133}, "the description must be at most 132 characters (it has 133)"),
        ({"name": "F" * 76}, "the name must be 1 to 75 characters"),
        ({"version": "1.02"}, "the version must be 1 to 4 dot-separated integers"),
        ({"version": "0.0"}, "not all zero: '0.0'"),
        ({"version": "1.65536"}, "integers 0-65535"),
        ({"version": "1.2.3.4.5"}, "the version must be 1 to 4"),
        ({"icons": {"48": "icons/icon48.png"}}, "the icons must include a 128-pixel one"),
    ],
)
def test_a_manifest_the_store_would_refuse_is_refused_here(
    tmp_path: Path, source: Path, change: dict[str, Any], named: str
) -> None:
    manifest = json.loads((source / "manifest.json").read_text())
    (source / "manifest.json").write_text(json.dumps({**manifest, **change}))
    result = package(tmp_path / "refused.zip", source)
    assert result.returncode == 1
    assert named in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("manifest", "named"),
    [
        ("{not json", "cannot read"),
        ("[1, 2]", "holds no JSON object"),
        (None, "unexpected shape (KeyError('background'))"),
    ],
)
def test_a_manifest_that_cannot_be_read_is_one_line_not_a_traceback(
    source: Path, manifest: str | None, named: str
) -> None:
    if manifest is None:  # well-formed, without its service worker
        original = json.loads((source / "manifest.json").read_text())
        manifest = json.dumps({k: v for k, v in original.items() if k != "background"})
    (source / "manifest.json").write_text(manifest)
    result = package(None, source)  # the default file name reads the manifest too
    assert result.returncode == 1
    assert named in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_extensions_manifest_keeps_the_stores_rules() -> None:
    # The description had 136 characters: the store refuses more than 132 on upload.
    manifest = json.loads((EXTENSION_DIR / "manifest.json").read_text())
    assert len(manifest["description"]) <= 132
    assert len(manifest["name"]) <= 75


def test_a_path_out_of_the_package_is_refused_and_a_bare_file_name_is_not_a_path(
    tmp_path: Path, source: Path
) -> None:
    worker = source / "worker" / "check.js"
    named = "const downloadName = 'verdict.json';\n"  # a name only: no folder, not loaded
    worker.write_text(named + worker.read_text())
    assert package(tmp_path / "named.zip", source).returncode == 0
    worker.write_text("import '../../server/static/review.js';\n" + worker.read_text())
    result = package(tmp_path / "outside.zip", source)
    assert result.returncode == 1
    assert "worker/check.js refers to ../../server/static/review.js" in result.stderr


def test_a_script_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path, source: Path) -> None:
    (source / "lib" / "verdict.js").write_bytes(b"// caf\xe9\nexport const x = 1;\n")
    result = package(tmp_path / "latin1.zip", source)
    assert result.returncode == 1
    assert "lib/verdict.js is not UTF-8" in result.stderr and "Traceback" not in result.stderr


def test_a_symbolic_link_in_the_tree_is_refused(tmp_path: Path, source: Path) -> None:
    (source / "lib" / "elsewhere.js").symlink_to("/etc/hostname")
    result = package(tmp_path / "linked.zip", source)
    assert result.returncode == 1
    assert "lib/elsewhere.js is a symbolic link" in result.stderr


@pytest.mark.browser
def test_the_unpacked_package_checks_an_image_in_chromium(
    browser: Any, fakescope_server: Any, page_server: Any
) -> None:
    # The store's copy has no key: Chromium gives it an ID of its own, and right-click check
    # still reads the image, asks the server and shows the verdict in the framed panel.
    assert browser.id != extension_id()
    browser.set_settings(serverUrl=fakescope_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/plain.html"))
    result = browser.check_image(page, page_server.url("/img/check.png"))
    assert result["ok"], result
    overlay = panel(page)
    assert overlay.locator(".verdict").inner_text() in {
        "Likely AI-generated",
        "Likely authentic",
        "Uncertain",
    }
    options = browser.context.new_page()
    options.goto(browser.extension_url("options/options.html"))
    assert options.locator("input").count() > 0
