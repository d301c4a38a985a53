"""Build the browser extension's store package: a ZIP of what the browser runs, nothing else.

    python scripts/package_extension.py                 # dist/fakescope-extension-<version>.zip
    python scripts/package_extension.py --out some.zip

What it leaves out of `extension/`: the tests, the README and any dotfile. What it changes:
the manifest loses its `key`. The key only pins the ID of an unpacked copy (the one the
server's CORS examples name); the Chrome Web Store signs the package itself, gives it its own
ID and refuses an upload whose manifest carries a key ("key field is not allowed in
manifest").

Before writing, it checks the manifest against the rules the store checks on upload (name,
description and version lengths and shapes, a 128-pixel icon), that every file the manifest
names is in the package (the service worker, popup, options page, icons, the framed panel),
and that no file in it refers to a path left out. The ZIP is reproducible: entries sorted,
fixed timestamps and permissions, so the same tree gives the same bytes (the SHA-256 printed
at the end can be compared with a rebuild). Prints the file count, size and digest; exits 1
with the reason when a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
EXTENSION_DIR = REPO_ROOT / "extension"
LEFT_OUT_DIRS = frozenset({"tests", "node_modules"})
LEFT_OUT_SUFFIXES = frozenset({".md", ".mjs"})  # the README; Node's test helpers (.mjs)
MAX_NAME_CHARS = 75  # the Chrome Web Store's limits
MAX_DESCRIPTION_CHARS = 132
VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,4})(\.(0|[1-9][0-9]{0,4})){0,3}")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a ZIP can say: no build time in the bytes
FILE_MODE = 0o100644 << 16  # a regular file, rw-r--r--
# Paths the shipped scripts and pages load: a quoted string naming a file with one of these
# suffixes (an import, a src or href attribute, a getURL or executeScript argument). Comments
# name files in parentheses or bare, and are not read.
REFERENCE_RE = re.compile(r"""(["'`])([\w./-]+\.(?:js|mjs|html|css|png|json))(?:[?#][^"'`]*)?\1""")


class PackageError(Exception):
    """The extension cannot be packaged as it stands (the message says why)."""


def shipped_files(source: Path) -> list[PurePosixPath]:
    """Paths (relative to `source`) of the files the package holds, sorted."""
    files = []
    for path in source.rglob("*"):
        relative = PurePosixPath(path.relative_to(source).as_posix())
        if path.is_symlink():
            raise PackageError(f"{relative} is a symbolic link; the package holds files only")
        if not path.is_file():
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        if relative.parts[0] in LEFT_OUT_DIRS or relative.suffix in LEFT_OUT_SUFFIXES:
            continue
        files.append(relative)
    return sorted(files)


def store_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the store takes it: without the `key` that pins an unpacked copy's ID."""
    return {name: value for name, value in manifest.items() if name != "key"}


def store_rule_problems(manifest: dict[str, Any]) -> list[str]:
    """Where the manifest breaks a rule the Chrome Web Store checks on upload: a name of at
    most 75 characters, a description of at most 132, a version of one to four integers
    0-65535 without leading zeros and not all zero, and a 128-pixel icon."""
    problems = []
    name, description = manifest.get("name"), manifest.get("description", "")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        problems.append(f"the name must be 1 to {MAX_NAME_CHARS} characters: {name!r}")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        problems.append(
            f"the description must be at most {MAX_DESCRIPTION_CHARS} characters "
            f"(it has {len(description)})"
        )
    version = manifest.get("version")
    parts = version.split(".") if isinstance(version, str) else []
    if not (
        VERSION_RE.fullmatch(str(version))
        and all(int(part) <= 65535 for part in parts)
        and any(int(part) for part in parts)
    ):
        problems.append(
            f"the version must be 1 to 4 dot-separated integers 0-65535, without leading "
            f"zeros and not all zero: {version!r}"
        )
    if "128" not in manifest.get("icons", {}):
        problems.append("the icons must include a 128-pixel one")
    return problems


def manifest_paths(manifest: dict[str, Any]) -> Iterator[str]:
    """Every file the manifest names."""
    yield manifest["background"]["service_worker"]
    action = manifest.get("action", {})
    if "default_popup" in action:
        yield action["default_popup"]
    yield from action.get("default_icon", {}).values()
    yield from manifest.get("icons", {}).values()
    if "options_ui" in manifest:
        yield manifest["options_ui"]["page"]
    for entry in manifest.get("web_accessible_resources", []):
        yield from entry["resources"]
    for script in manifest.get("content_scripts", []):
        yield from script.get("js", [])
        yield from script.get("css", [])


def _resolve(referrer: PurePosixPath, reference: str) -> PurePosixPath | None:
    """The package path `reference` names from the file `referrer`, or None for a URL.
    A path that climbs out of the package comes back starting with `..` (never held)."""
    if "://" in reference or reference.startswith("//"):
        return None
    base = "" if reference.startswith("/") else str(referrer.parent)
    return PurePosixPath(posixpath.normpath(posixpath.join(base, reference.lstrip("/"))))


def missing_references(source: Path, files: list[PurePosixPath]) -> list[str]:
    """References in the shipped scripts and pages to files the package lacks.

    A script may name a path relative to itself (an import) or to the extension's root
    (`chrome.runtime.getURL`, `executeScript` files): a reference is missing when neither
    reading finds it. In scripts and style sheets only paths with a folder in them count
    (module imports always have one: `./`, `../`), so that a quoted file name that is only a
    name (a download's, say) is not taken for one; a page's every quoted path counts.
    """
    held = set(files)
    problems = []
    for relative in files:
        if relative.suffix not in {".js", ".html", ".css"}:
            continue
        try:
            text = (source / relative).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:  # Chrome refuses to load such a script or page too
            raise PackageError(f"{relative} is not UTF-8 ({exc.reason})") from exc
        references = {match[1] for match in REFERENCE_RE.findall(text)}
        if relative.suffix != ".html":
            references = {reference for reference in references if "/" in reference}
        for reference in sorted(references):
            readings = {_resolve(relative, reference), _resolve(PurePosixPath("x"), reference)}
            readings.discard(None)
            if readings and not readings & held:
                problems.append(f"{relative} refers to {reference}, which the package lacks")
    return problems


def read_manifest(source: Path) -> dict[str, Any]:
    """`source`'s manifest, once it keeps the store's rules (else PackageError says how not)."""
    path = source / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PackageError(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise PackageError(f"{path} holds no JSON object")
    rules = store_rule_problems(manifest)
    if rules:
        raise PackageError("; ".join(rules))
    return manifest


def build(source: Path, out: Path) -> tuple[int, int, str]:
    """Write the package of `source` to `out`; returns (files, bytes, SHA-256 hex)."""
    manifest = read_manifest(source)
    files = shipped_files(source)
    held = {str(path) for path in files}
    try:
        named = set(manifest_paths(manifest))
    except (KeyError, TypeError, AttributeError) as exc:
        raise PackageError(
            f"the manifest names its files in an unexpected shape ({exc!r})"
        ) from exc
    absent = sorted(str(path) for path in named if path not in held)
    if absent:
        raise PackageError(f"the manifest names files the package lacks: {', '.join(absent)}")
    problems = missing_references(source, files)
    if problems:
        raise PackageError("; ".join(problems))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for relative in files:
            data = (source / relative).read_bytes()
            if relative == PurePosixPath("manifest.json"):
                data = (json.dumps(store_manifest(manifest), indent=2) + "\n").encode("utf-8")
            entry = zipfile.ZipInfo(str(relative), date_time=ZIP_TIME)
            entry.external_attr = FILE_MODE
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data, compresslevel=9)
    partial.replace(out)  # a failed build leaves no package behind that looks finished
    data = out.read_bytes()
    return len(files), len(data), hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", type=Path, default=EXTENSION_DIR, help="extension folder")
    parser.add_argument("--out", type=Path, help="ZIP to write (default: dist/…-<version>.zip)")
    args = parser.parse_args(argv)
    try:
        version = read_manifest(args.source)["version"]  # a checked version: digits and dots
        out = args.out or REPO_ROOT / "dist" / f"fakescope-extension-{version}.zip"
        count, size, digest = build(args.source, out)
    except (PackageError, OSError) as exc:
        print(f"package_extension: {exc}", file=sys.stderr)
        return 1
    print(f"{out}: {count} files, {size:,} bytes, version {version}")
    print(f"sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
