"""Feed mode set up for a browser test: a stub server that knows every image, and feed mode
switched on for a site without going through the options page."""

from __future__ import annotations

import json
from typing import Any


def knows_every_image(stub_server: Any) -> None:
    """The stub server answers every lookup with a verdict for each SHA-256 asked about."""

    def lookup(handler: Any) -> None:
        asked = json.loads(handler.body).get("sha256", [])
        handler.reply(200, {"results": {s: stub_server.answer(s) for s in asked}, "near": []})

    stub_server.routes["POST /v1/lookup"] = lookup


def switch_feed_mode_on(browser: Any, site: str, until: Any) -> None:
    """Feed mode on for `site` (an origin), once its content script is registered."""
    browser.set_settings(feedSites=[site])
    until(
        lambda: browser.worker.evaluate(
            "async () => (await chrome.scripting.getRegisteredContentScripts()).length"
        ),
        what="the feed content script registration",
    )
