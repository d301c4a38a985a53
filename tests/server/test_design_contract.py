"""/work/shared/DESIGN.md, claim by claim: the claims no other test pinned yet.

Each test is named after the DESIGN.md claim it pins. Claims other tests already cover are
listed, with those tests, in the report that came with this file. A test marked
`xfail(strict=True)` pins a claim the code does not honour yet (its reason says where).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import io
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from local_http import serve_site
from PIL import Image
from server_helpers import (
    AppClient,
    CountingModel,
    count_rows,
    problem,
    running,
    until,
    upload,
    wait_until_ready,
)

from server.app import create_app
from server.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION = REPO_ROOT / "extension"
HEX64 = re.compile(r"[0-9a-f]{64}")
_seeds = iter(range(10_000, 20_000))


def png(width: int, height: int) -> bytes:
    """A PNG nobody has analysed before, `width` x `height` (not square: the axes differ)."""
    rng = np.random.default_rng(next(_seeds))
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB").save(
        buffer, "PNG"
    )
    return buffer.getvalue()


class GatedModel(CountingModel):
    """The tiny model, counting its calls; generation waits at `gate` until it is opened.

    `decodes_continuously = False`: every answer goes through generate_batch (the gate).
    """

    decodes_continuously = False

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.generate_calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def generate_batch(self, *args: Any, **kwargs: Any) -> list[str]:
        self.generate_calls += 1
        self.gate.wait(30)
        return list(self.inner.generate_batch(*args, **kwargs))


@pytest.fixture
def model_settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        max_new_tokens=4,
        allow_private_urls=True,  # the URL test serves its image on loopback
    )


@pytest.fixture
def gated(tiny_model: Any) -> GatedModel:
    return GatedModel(tiny_model)


@pytest.fixture
async def model_client(model_settings: Settings, gated: GatedModel) -> AsyncIterator[AppClient]:
    async with running(create_app(model_settings, model_loader=lambda: gated)) as client:
        await wait_until_ready(client)
        yield client


# --- §2 "An analysis carries at least: ..." ---------------------------------------------------


async def test_an_analysis_carries_every_field_design_lists_and_reads_back_the_same(
    model_client: AppClient, tiny_model: Any
) -> None:
    data = png(40, 24)
    response = await model_client.post("/v1/analyze?explain=true", **upload(data))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["label"] in {"fake", "real", "uncertain"}
    assert body["decided_by"] == "model"  # no metadata in these bytes: the model decided
    assert isinstance(body["p_fake"], float) and 0.0 <= body["p_fake"] <= 1.0
    assert body["evidence"] == []
    assert isinstance(body["explanation"], str)
    info = tiny_model.info
    model = body["model"]
    assert (model["id"], model["revision"], model["quantization"], model["untrained"]) == (
        info.id,
        info.revision,
        "none",
        True,
    )
    image = body["image"]
    assert (image["format"], image["width"], image["height"]) == ("PNG", 40, 24)
    assert HEX64.fullmatch(image["pdq"])
    assert body["created_at"].endswith("Z")
    datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))

    sha = body["sha256"]
    got = (await model_client.get(f"/v1/analyses/{sha}")).json()
    looked_up = (await model_client.post("/v1/lookup", json={"sha256": [sha]})).json()
    assert got == body and looked_up["results"][sha] == body


# --- §2 "POST /v1/analyze ... JSON {"url": ...}; optional explain (query or field)" -----------


async def test_analyze_takes_explain_as_a_json_member_next_to_the_url(
    model_client: AppClient,
) -> None:
    with serve_site(png(32, 32)) as site:
        plain = await model_client.post(
            "/v1/analyze", json={"url": site.base + "/image", "explain": False}
        )
        explained = await model_client.post(
            "/v1/analyze", json={"url": site.base + "/image", "explain": True}
        )
    assert plain.status_code == explained.status_code == 200, explained.text
    assert plain.json()["explanation"] is None
    assert isinstance(explained.json()["explanation"], str)
    assert explained.json()["sha256"] == plain.json()["sha256"]


# --- §2 "POST /v1/lookup ... cached work only, never runs the model" ----------------------------


async def test_lookup_of_unknown_and_near_keys_never_runs_the_model_and_writes_nothing(
    model_client: AppClient, gated: GatedModel, model_settings: Settings
) -> None:
    stored = (await model_client.post("/v1/analyze", **upload(png(32, 32)))).json()
    calls = (len(gated.score_calls), gated.generate_calls)
    rows = await count_rows(model_settings.database_url)
    unknown = [f"{i:064x}" for i in range(1, 40)]
    response = await model_client.post(
        "/v1/lookup",
        json={"sha256": [*unknown, stored["sha256"]], "pdq": [stored["image"]["pdq"], "f" * 64]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["results"]) == {stored["sha256"]}
    assert {"pdq": stored["image"]["pdq"], "sha256": stored["sha256"], "distance": 0} in body[
        "near"
    ]
    assert (len(gated.score_calls), gated.generate_calls) == calls
    assert await count_rows(model_settings.database_url) == rows


# --- §2 "503 queue full (with Retry-After)" on /v1/ask, JSON and event stream -----------------


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
async def test_ask_on_a_full_queue_is_a_503_problem_with_retry_after(
    model_settings: Settings, gated: GatedModel, accept: str
) -> None:
    settings = replace(model_settings, queue_size=1, batch_size=1, batch_wait_ms=0.0)
    async with running(create_app(settings, model_loader=lambda: gated)) as client:
        await wait_until_ready(client)
        sha = (await client.post("/v1/analyze", **upload(png(32, 32)))).json()["sha256"]
        gated.gate.clear()  # the first answer holds the model; the queue fills behind it
        asks = [
            asyncio.ensure_future(
                client.post(
                    "/v1/ask",
                    json={"sha256": sha, "question": f"Is detail {i} consistent?"},
                    headers={"Accept": accept},
                )
            )
            for i in range(6)
        ]
        try:
            await until(lambda: sum(task.done() for task in asks) >= 2, within_s=20)
        finally:
            gated.gate.set()
        responses = await asyncio.gather(*asks)
    assert {r.status_code for r in responses} == {200, 503}
    for refused in (r for r in responses if r.status_code == 503):
        assert int(refused.headers["retry-after"]) >= 1
        assert problem(refused)["type"].endswith(":overloaded")


# --- §2 "Errors are RFC 9457 problem+json with a clear `detail`: ... 413 too large" ------------


async def test_a_multipart_body_over_the_upload_limit_says_it_is_too_large(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        max_upload_bytes=100_000,
    )
    async with running(create_app(settings)) as client:
        response = await client.post(
            "/v1/analyze", **upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 300_000)
        )
    assert response.status_code == 413
    detail = problem(response)["detail"]
    assert "part" not in detail, detail  # one part, no long header: the body is too large
    assert re.search(r"\d", detail), detail  # and the limit it is over


@pytest.mark.parametrize("path", ["/v1/lookup", "/v1/ask", "/v1/reports"])
async def test_a_json_body_over_its_limit_says_which_limit(
    sqlite_url: str, tmp_path: Path, path: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None)
    body = {"sha256": ["a" * 64] * 20_000} if path == "/v1/lookup" else {"reason": "x" * 70_000}
    async with running(create_app(settings)) as client:
        response = await client.post(path, json={"sha256": "a" * 64, **body})
    assert response.status_code == 413
    detail = problem(response)["detail"]
    assert detail.lower() != "request entity too large"
    assert re.search(r"\d", detail), detail


# --- §1 "p_fake ... must come from one forward pass (no generation)" ---------------------------


def test_detect_scoring_is_one_forward_pass_without_generation(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwards: list[int] = []
    hook = tiny_model.model.register_forward_hook(lambda *_: forwards.append(1))

    def no_generation(*_: Any, **__: Any) -> Any:
        raise AssertionError("scoring generated tokens")

    monkeypatch.setattr(tiny_model.model, "generate", no_generation)
    monkeypatch.setattr(tiny_model, "generate_batch", no_generation)
    try:
        scores = tiny_model.score([Image.new("RGB", (48, 32), c) for c in ("red", "blue", "gray")])
    finally:
        hook.remove()
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert len(forwards) == 1


# --- "Dependencies flow one way: extension → server → fakescope" -------------------------------


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_the_core_library_never_imports_the_server_only_its_command_may() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT)): name
        for path in (REPO_ROOT / "fakescope").rglob("*.py")
        if path.name != "cli.py" or path.parent.name != "fakescope"
        for name in imported_modules(path)
        if name == "server" or name.startswith("server.")
    }
    assert offenders == {}


def test_the_server_holds_no_ml_code_beyond_the_cores_public_api() -> None:
    ml = ("torch", "transformers", "bitsandbytes", "accelerate", "tokenizers", "safetensors")
    offenders = {
        f"{path.relative_to(REPO_ROOT)}: {name}"
        for path in (REPO_ROOT / "server").rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in ml
        or (name.startswith("fakescope.") and name.split(".")[-1].startswith("_"))
    }
    assert offenders == set()


# --- §3 The extension (static checks of its sources; behaviour is in tests/extension) ----------


def js_source(path: Path) -> str:
    """The file's code without its comments (block comments, and lines that are comments)."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(encoding="utf-8"), flags=re.S)
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))


NETWORK_APIS = re.compile(
    r"\bfetch\s*\(|XMLHttpRequest|new\s+WebSocket\b|new\s+EventSource\b|sendBeacon|\bimport\s*\("
)
IMPORT_FROM = re.compile(r"""^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]""", re.M)
IMPORT_BARE = re.compile(r"""^\s*import\s*['"]([^'"]+)['"]""", re.M)


def js_imports(path: Path) -> list[str]:
    source = js_source(path)
    return IMPORT_FROM.findall(source) + IMPORT_BARE.findall(source)


def module_closure(entry: Path) -> set[Path]:
    """`entry` and every module it imports, transitively."""
    seen: set[Path] = set()
    todo = [entry.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [(path.parent / spec).resolve() for spec in js_imports(path)]
    return seen


def test_the_extension_is_manifest_v3_plain_modules_with_no_bundler() -> None:
    manifest = json.loads((EXTENSION / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["manifest_version"] == 3
    assert manifest["background"] == {"service_worker": "background.js", "type": "module"}
    for bundler in ("package.json", "webpack.config.js", "rollup.config.js", "vite.config.js"):
        assert not (EXTENSION / bundler).exists(), bundler
    for path in EXTENSION.rglob("*.js"):
        for spec in js_imports(path):
            assert spec.startswith(("./", "../")), f"{path.name} imports the bare {spec!r}"
            assert (path.parent / spec).is_file(), f"{path.name} imports missing {spec!r}"


def test_right_clicking_an_image_offers_check_with_fakescope() -> None:
    source = js_source(EXTENSION / "background.js")
    created = re.findall(r"chrome\.contextMenus\.create\(\s*(\{.*?\})\s*\)", source, flags=re.S)
    assert len(created) == 1, created
    assert re.search(r"""title:\s*['"]Check with FakeScope['"]""", created[0])
    assert re.search(r"""contexts:\s*\[\s*['"]image['"]\s*\]""", created[0])


def test_extension_pages_make_no_network_calls_of_their_own() -> None:
    """The options page, the popup and the check-file page ask the service worker (their
    connection test and a picked file's check too)."""
    api = (EXTENSION / "lib" / "api.js").resolve()
    for page in ("options/options.js", "popup/popup.js", "check-file/check-file.js"):
        modules = module_closure(EXTENSION / page)
        assert api not in modules, page
        for module in modules:
            assert not NETWORK_APIS.search(js_source(module)), f"{page}: {module.name}"


# The one fetch() a content script may make: of a URL passed through the file's own guard,
# which lets only blob: and data: URLs through (their bytes are already in the page: reading
# them is not a network request).
LOCAL_FETCH = re.compile(r"\bfetch\s*\(\s*localOnly\s*\(")
LOCAL_GUARD = re.compile(
    r"function localOnly\(url\) \{\s*"
    r"if \(!/\^\(blob\|data\):/i\.test\(url\)\) throw new Error\([^()]*\);\s*"
    r"return url;\s*\}"
)


def test_content_scripts_make_no_network_calls_and_only_talk_to_the_service_worker() -> None:
    """No content script calls a network API; the page reader (content/page-image.js) may
    fetch() only blob:/data: URLs, through a `localOnly(url)` guard this test reads: it throws
    for any other URL. Every request to a site (the page's Referer included) is the worker's."""
    offenders = []
    for path in sorted((EXTENSION / "content").glob("*.js")):
        source = js_source(path)
        if LOCAL_FETCH.search(source):
            assert len(LOCAL_GUARD.findall(source)) == 1, f"{path.name}: fetch without its guard"
            assert len(re.findall(r"\blocalOnly\b", source)) == 1 + len(
                LOCAL_FETCH.findall(source)
            ), f"{path.name}: localOnly is defined once and used only inside fetch()"
            source = LOCAL_FETCH.sub("localOnly(", source)
        if NETWORK_APIS.search(source):
            offenders.append(path.name)
    assert offenders == []
