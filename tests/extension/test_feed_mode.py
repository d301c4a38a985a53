"""Feed mode: switched on per site in the options, badges only on images the server already
knows, looked up by hash in batches; no image is uploaded. Re-encoded copies of a checked
image get a hint badge (PDQ near match), never that image's verdict; mirrored copies get a
hint that says they look mirrored (near match of the extension's mirror hash), and rotated
copies one that says they look rotated (near match of one of its rotation hashes); copies
flipped upside down, or mirrored and turned a quarter turn (a diagonal flip), one that says so
(near match of one of its flip hashes)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from feed_helpers import knows_every_image
from panel_helpers import PANEL_ROOT, focused_in_panel, panel, panel_frame, press_escape_in_panel
from pictures import encoded, textured_picture
from PIL import Image, ImageOps

from fakescope.images import decode_image, pdq_distance

pytestmark = pytest.mark.browser


def enable_feed_mode_in_options(browser: Any, site: str, until: Any) -> None:
    options = browser.context.new_page()
    options.goto(browser.extension_url("options/options.html"))
    options.wait_for_selector("body[data-ready=true]")
    assert options.locator("#feed-empty").is_visible(), "feed mode starts off everywhere"
    options.fill("#feed-site", site + "/some/page")
    options.click("#add-site")
    until(lambda: options.locator("#feed-sites li").count() == 1, what="the site in the list")
    assert options.locator("#feed-sites li span").inner_text() == site
    options.close()
    until(
        lambda: browser.worker.evaluate(
            "async () => (await chrome.scripting.getRegisteredContentScripts()).length"
        ),
        what="the feed content script registration",
    )


def badge_labels(page: Any) -> dict[str, str]:
    """Verdict badges by image address (hint badges carry no data-label)."""
    badges = page.locator("fakescope-badge button[data-src][data-label]")
    return {
        badges.nth(i).get_attribute("data-src"): badges.nth(i).get_attribute("data-label")
        for i in range(badges.count())
    }


def test_feed_mode_badges_only_known_images_without_uploading_any(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any, artifacts_dir: Path
) -> None:
    known = fakescope_server.analyze(page_server.images["known.png"], "known.png")
    lazy = fakescope_server.analyze(page_server.images["lazy.png"], "lazy.png")
    later = fakescope_server.analyze(page_server.images["later.png"], "later.png")
    uploads_before = fakescope_server.request_count("POST", "/v1/analyze")
    lookups_before = fakescope_server.request_count("POST", "/v1/lookup")
    browser.set_settings(serverUrl=fakescope_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)

    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    known_url = page_server.url("/img/known.png")
    until(lambda: known_url in badge_labels(page), what="a badge on the known image")
    page.wait_for_timeout(1500)  # let every lookup of the first screen finish
    labels = badge_labels(page)
    assert labels[known_url] == known["label"]
    assert page_server.url("/img/unknown.png") not in labels, "unknown images get no badge"
    assert page_server.url("/hotlink/guarded.png") not in labels
    assert page_server.url("/img/lazy.png") not in labels, "not looked up before it is visible"
    page.screenshot(path=str(artifacts_dir / "extension-feed-badges.png"))

    page.locator("#lazy").scroll_into_view_if_needed()
    lazy_url = page_server.url("/img/lazy.png")
    until(lambda: badge_labels(page).get(lazy_url) == lazy["label"], what="the lazy image badge")

    page.evaluate("window.appendImage('/img/later.png', 'later')")
    page.locator("#later").scroll_into_view_if_needed()
    later_url = page_server.url("/img/later.png")
    until(
        lambda: badge_labels(page).get(later_url) == later["label"],
        what="a badge on an image added by infinite scroll",
    )

    assert fakescope_server.request_count("POST", "/v1/analyze") == uploads_before, "no uploads"
    lookups = fakescope_server.request_count("POST", "/v1/lookup") - lookups_before
    assert 1 <= lookups <= 4, f"lookups are batched, got {lookups} requests"

    badge = page.locator(f'fakescope-badge button[data-src="{known_url}"]')
    assert "FakeScope:" in badge.get_attribute("aria-label")
    page.locator("#known").scroll_into_view_if_needed()
    badge.click()
    overlay = panel(page)
    assert overlay.locator(".verdict").get_attribute("data-label") == known["label"]

    # Overlay and badge live in document coordinates: they scroll with the image.
    dialog = overlay.frame_element()
    offsets = lambda: [  # noqa: E731
        dialog.bounding_box()["y"] - page.locator("#known").bounding_box()["y"],
        badge.bounding_box()["y"] - page.locator("#known").bounding_box()["y"],
    ]
    before = offsets()
    scroll_before = page.evaluate("window.scrollY")
    page.evaluate("window.scrollBy(0, 120)")
    assert page.evaluate("window.scrollY") == scroll_before + 120
    until(lambda: offsets() == pytest.approx(before, abs=1), 5, "the panel and badge to follow")
    assert offsets() == pytest.approx(before, abs=1)
    assert known["sha256"] == hashlib.sha256(page_server.images["known.png"]).hexdigest()


def test_feed_mode_is_off_until_a_site_is_switched_on(
    browser: Any, fakescope_server: Any, page_server: Any
) -> None:
    fakescope_server.analyze(page_server.images["known.png"], "known.png")
    lookups_before = fakescope_server.request_count("POST", "/v1/lookup")
    browser.set_settings(serverUrl=fakescope_server.url)
    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    page.wait_for_timeout(1500)
    assert page.locator("fakescope-badge").count() == 0
    assert fakescope_server.request_count("POST", "/v1/lookup") == lookups_before


def test_switching_feed_mode_off_stops_lookups_on_pages_already_open(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any
) -> None:
    fakescope_server.analyze(page_server.images["known.png"], "known.png")
    fakescope_server.analyze(page_server.images["lazy.png"], "lazy.png")
    browser.set_settings(serverUrl=fakescope_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    until(lambda: page_server.url("/img/known.png") in badge_labels(page), what="a badge")

    options = browser.context.new_page()
    options.goto(browser.extension_url("options/options.html"))
    options.wait_for_selector("body[data-ready=true]")
    options.get_by_role("button", name=f"Turn off feed mode on {page_server.origin}").click()
    until(lambda: options.locator("#feed-empty").is_visible(), what="feed mode off")
    lookups_before = fakescope_server.request_count("POST", "/v1/lookup")

    page.bring_to_front()
    page.locator("#lazy").scroll_into_view_if_needed()
    page.evaluate("window.appendImage('/img/later.png', 'later')")
    page.locator("#later").scroll_into_view_if_needed()
    page.wait_for_timeout(2000)

    assert fakescope_server.request_count("POST", "/v1/lookup") == lookups_before, "no lookups"
    assert badge_labels(page) == {}, "the badges went with feed mode"


def test_a_badge_leaves_an_image_whose_source_changes(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any
) -> None:
    known = fakescope_server.analyze(page_server.images["known.png"], "known.png")
    browser.set_settings(serverUrl=fakescope_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    known_url = page_server.url("/img/known.png")
    until(lambda: badge_labels(page).get(known_url) == known["label"], what="the badge")

    # A carousel (or a recycled row of a virtual list) shows another image in the same <img>.
    page.evaluate("document.getElementById('known').src = '/img/unknown.png'")
    page.wait_for_function("document.getElementById('known').currentSrc.endsWith('unknown.png')")
    page.wait_for_timeout(1200)

    assert known_url not in badge_labels(page), "the old image's verdict left with it"
    assert page.locator("fakescope-badge button").count() == 0

    page.evaluate("document.getElementById('known').src = '/img/known.png'")
    until(lambda: badge_labels(page).get(known_url) == known["label"], what="the badge again")


# --- near-duplicate hints (PDQ) -------------------------------------------------------


HINT_PAGE = """<!doctype html><html><head><title>Hints</title>
<style>body { font-family: sans-serif; margin: 20px; } img { display: block; margin: 16px 0; }
</style>
</head><body><h1>Shared pictures</h1>
<img id="copy" src="/img/hint-copy.jpg" width="400" height="300" alt="a re-shared copy">
<img id="unrelated" src="/img/hint-unrelated.png" width="320" height="240" alt="another picture">
<img id="known" src="/img/known.png" width="240" height="180" alt="known image">
</body></html>"""

HEADLINES = {"fake": "Likely AI-generated", "real": "Likely authentic", "uncertain": "Uncertain"}


def hint_badges(page: Any) -> dict[str, dict[str, str | None]]:
    badges = page.locator("fakescope-badge button[data-kind=hint]")
    return {
        badges.nth(i).get_attribute("data-src"): {
            "hint": badges.nth(i).get_attribute("data-hint"),
            "distance": badges.nth(i).get_attribute("data-distance"),
            "label": badges.nth(i).get_attribute("data-label"),
            "text": badges.nth(i).inner_text(),
            "aria": badges.nth(i).get_attribute("aria-label"),
            "mirrored": badges.nth(i).get_attribute("data-mirrored"),
            "rotated": badges.nth(i).get_attribute("data-rotated"),
            "flipped": badges.nth(i).get_attribute("data-flipped"),
        }
        for i in range(badges.count())
    }


def test_a_resized_reencoded_copy_gets_a_hint_badge_not_a_verdict(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any, artifacts_dir: Path
) -> None:
    picture = textured_picture(640, 480, seed=21)
    original_bytes = encoded(picture, "PNG")
    copy_bytes = encoded(picture.resize((400, 300), Image.Resampling.LANCZOS), "JPEG", quality=70)
    unrelated_bytes = encoded(textured_picture(640, 480, seed=22), "PNG")
    original_pdq, copy_pdq = decode_image(original_bytes), decode_image(copy_bytes)
    assert original_pdq.pdq_quality >= 50 and copy_pdq.pdq_quality >= 50
    assert pdq_distance(original_pdq.pdq, copy_pdq.pdq) <= 10, "the copy is a near duplicate"
    assert pdq_distance(original_pdq.pdq, decode_image(unrelated_bytes).pdq) > 31

    original = fakescope_server.analyze(original_bytes, "original.png")
    known = fakescope_server.analyze(page_server.images["known.png"], "known.png")
    page_server.images["hint-copy.jpg"] = copy_bytes
    page_server.images["hint-unrelated.png"] = unrelated_bytes
    page_server.pages["/hints.html"] = HINT_PAGE
    uploads_before = fakescope_server.request_count("POST", "/v1/analyze")
    browser.set_settings(serverUrl=fakescope_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)

    page = browser.context.new_page()
    page.goto(page_server.url("/hints.html"))
    copy_url = page_server.url("/img/hint-copy.jpg")
    known_url = page_server.url("/img/known.png")
    until(lambda: copy_url in hint_badges(page), what="a hint badge on the copy")
    until(lambda: known_url in badge_labels(page), what="the verdict badge on the known image")
    page.wait_for_timeout(1000)  # every lookup of the page has answered

    hint = hint_badges(page)[copy_url]
    assert hint["hint"] == original["label"], "the hint names the similar image's label"
    assert hint["label"] is None, "a hint is not a verdict badge"
    assert hint["text"].startswith("≈")
    assert 0 <= int(hint["distance"] or -1) <= 31
    assert "Not checked" in (hint["aria"] or "") and "of 256 bits differ" in (hint["aria"] or "")
    assert hint["mirrored"] == "false" and "mirror" not in (hint["aria"] or "")
    assert hint["rotated"] is None and "rotated" not in (hint["aria"] or "")
    labels = badge_labels(page)
    assert copy_url not in labels, "the copy gets no verdict of its own"
    assert labels[known_url] == known["label"], "an exact SHA-256 hit keeps its verdict badge"
    unrelated_url = page_server.url("/img/hint-unrelated.png")
    assert unrelated_url not in labels and unrelated_url not in hint_badges(page)
    assert fakescope_server.request_count("POST", "/v1/analyze") == uploads_before, "no uploads"
    page.screenshot(path=str(artifacts_dir / "extension-feed-hint-badge.png"))

    # The hint's panel: not checked, the similar image's verdict and the distance, a check button.
    page.locator(f'fakescope-badge button[data-src="{copy_url}"]').click()
    overlay = panel(page)
    title = overlay.locator(".hint-title")
    assert title.get_attribute("data-hint") == original["label"]
    body = overlay.locator(".body").inner_text()
    assert "has not checked this image itself" in body
    assert HEADLINES[original["label"]] in body
    assert f"{hint['distance']} of 256 bits" in body
    assert "not a verdict on this image" in body
    assert overlay.locator(".verdict").count() == 0, "no verdict is shown for the copy"
    page.screenshot(path=str(artifacts_dir / "extension-feed-hint-panel.png"))

    # A page script cannot press "Check this image" for the user: it cannot reach the panel (a
    # closed root), and a script's click, even one run in the panel page itself, sends nothing.
    assert page.evaluate("() => document.querySelector('fakescope-overlay').shadowRoot") is None
    panel_frame(page).evaluate(f"() => {PANEL_ROOT}.querySelector('button.check').click()")
    page.wait_for_timeout(1000)
    assert fakescope_server.request_count("POST", "/v1/analyze") == uploads_before

    # The user's click runs the normal check: the copy is sent and gets its own verdict.
    overlay.get_by_role("button", name="Check this image").click()
    # Counted once the server has answered, with the explanation the model writes for a check
    # (18 s once on two busy cores): as long a wait as the verdict's below.
    until(
        lambda: fakescope_server.request_count("POST", "/v1/analyze") == uploads_before + 1,
        timeout_s=60,
        what="the copy sent for a check",
    )
    copy_sha = hashlib.sha256(copy_bytes).hexdigest()
    until(lambda: overlay.locator(".verdict").count() == 1, timeout_s=60, what="the copy's verdict")
    checked = httpx.get(f"{fakescope_server.url}/v1/analyses/{copy_sha}", timeout=10).json()
    assert overlay.locator(".verdict").get_attribute("data-label") == checked["label"]
    until(
        lambda: badge_labels(page).get(copy_url) == checked["label"],
        what="the hint badge replaced by the copy's own verdict",
    )
    assert copy_url not in hint_badges(page)


MIRROR_PAGE = """<!doctype html><html><head><title>Mirrored</title>
<style>body { font-family: sans-serif; margin: 20px; } img { display: block; margin: 16px 0; }
</style>
</head><body><h1>Reposted pictures</h1>
<img id="mirrored" src="/img/mirror-copy.jpg" width="400" height="300" alt="a mirrored repost">
<img id="unrelated" src="/img/mirror-unrelated.png" width="320" height="240" alt="another picture">
</body></html>"""


def test_a_mirrored_copy_gets_a_mirrored_hint_badge_not_a_verdict(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any, artifacts_dir: Path
) -> None:
    """A left-right mirrored, resized, re-encoded repost: its own PDQ hash is ~128 bits from
    the checked original's (no plain hint), but the extension's mirror hash (the hash of the
    repost flipped back) is near it: the badge and the panel say it looks like a mirrored copy."""
    picture = textured_picture(640, 480, seed=33)
    original_bytes = encoded(picture, "PNG")
    mirror = ImageOps.mirror(picture).resize((400, 300), Image.Resampling.LANCZOS)
    copy_bytes = encoded(mirror, "JPEG", quality=80)
    unrelated_bytes = encoded(textured_picture(640, 480, seed=34), "PNG")
    original_pdq, copy_pdq = decode_image(original_bytes), decode_image(copy_bytes)
    assert original_pdq.pdq_quality >= 50 and copy_pdq.pdq_quality >= 50
    assert pdq_distance(original_pdq.pdq, copy_pdq.pdq) > 64, "a mirror hashes far away"
    flipped_back = decode_image(encoded(ImageOps.mirror(copy_pdq.rgb)))
    assert pdq_distance(original_pdq.pdq, flipped_back.pdq) <= 20, "flipped back, it is near"

    original = fakescope_server.analyze(original_bytes, "mirror-original.png")
    page_server.images["mirror-copy.jpg"] = copy_bytes
    page_server.images["mirror-unrelated.png"] = unrelated_bytes
    page_server.pages["/mirrored.html"] = MIRROR_PAGE
    uploads_before = fakescope_server.request_count("POST", "/v1/analyze")
    browser.set_settings(serverUrl=fakescope_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)

    page = browser.context.new_page()
    page.goto(page_server.url("/mirrored.html"))
    copy_url = page_server.url("/img/mirror-copy.jpg")
    until(lambda: copy_url in hint_badges(page), what="a hint badge on the mirrored copy")
    page.wait_for_timeout(1000)  # every lookup of the page has answered

    hint = hint_badges(page)[copy_url]
    assert hint["mirrored"] == "true", hint
    assert hint["rotated"] is None, hint
    assert hint["hint"] == original["label"], "the hint names the checked image's label"
    assert hint["label"] is None, "a hint is not a verdict badge"
    assert (hint["text"] or "").startswith("≈⇆")
    assert 0 <= int(hint["distance"] or -1) <= 31
    aria = hint["aria"] or ""
    assert "Not checked" in aria and "mirrored copy of an image" in aria, aria
    assert copy_url not in badge_labels(page), "the mirrored copy gets no verdict of its own"
    unrelated_url = page_server.url("/img/mirror-unrelated.png")
    assert unrelated_url not in badge_labels(page) and unrelated_url not in hint_badges(page)
    assert fakescope_server.request_count("POST", "/v1/analyze") == uploads_before, "no uploads"
    page.screenshot(path=str(artifacts_dir / "extension-feed-mirrored-hint-badge.png"))

    # The panel: not checked, a mirrored copy of an image with that verdict, still a hint.
    page.locator(f'fakescope-badge button[data-src="{copy_url}"]').click()
    overlay = panel(page)
    title = overlay.locator(".hint-title")
    assert title.get_attribute("data-hint") == original["label"]
    assert title.get_attribute("data-mirrored") == "true"
    assert "mirrored copy" in title.inner_text()
    body = overlay.locator(".body").inner_text()
    assert "has not checked this image itself" in body
    assert "mirrored (flipped left to right) copy" in body
    assert HEADLINES[original["label"]] in body
    assert f"{hint['distance']} of 256 bits" in body
    assert "not a verdict on this image" in body
    assert overlay.locator(".verdict").count() == 0, "no verdict is shown for the copy"
    page.screenshot(path=str(artifacts_dir / "extension-feed-mirrored-hint-panel.png"))


ROTATION_PAGE = """<!doctype html><html><head><title>Rotated</title>
<style>body { font-family: sans-serif; margin: 20px; } img { display: block; margin: 16px 0; }
</style>
</head><body><h1>Reposted pictures, turned</h1>
<img id="clockwise" src="/img/turned-clockwise.jpg" width="300" height="400" alt="turned right">
<img id="half" src="/img/turned-halfTurn.jpg" width="400" height="300" alt="upside down">
<img id="counter" src="/img/turned-counterclockwise.jpg" width="300" height="400" alt="turned left">
</body></html>"""

# How each repost is turned from the original (PIL's transpose), its size, and how it turns back.
TURNS = {
    "clockwise": (Image.Transpose.ROTATE_270, (300, 400), Image.Transpose.ROTATE_90),
    "halfTurn": (Image.Transpose.ROTATE_180, (400, 300), Image.Transpose.ROTATE_180),
    "counterclockwise": (Image.Transpose.ROTATE_90, (300, 400), Image.Transpose.ROTATE_270),
}
TURN_WORDS = {
    "clockwise": "a quarter turn clockwise",
    "halfTurn": "a half turn",
    "counterclockwise": "a quarter turn counterclockwise",
}


def copies_in_a_feed(
    until: Any,
    browser: Any,
    fakescope_server: Any,
    page_server: Any,
    *,
    seed: int,
    copies: dict[str, tuple[Any, tuple[int, int], Any]],
    prefix: str,
    page: tuple[str, str],
) -> tuple[dict[str, Any], Any, dict[str, str], dict[str, Any], float]:
    """A checked picture and its copies (name: how it is transformed, its size, how it goes
    back), resized and re-encoded, each far from the original by its own hash and near once
    turned back, on a feed page (`page`: path, HTML) whose hint badges have all come. Returns
    the original's analysis, the page, each copy's address, the hint badges and the uploads
    counted before the page loaded."""
    picture = textured_picture(640, 480, seed=seed)
    original_bytes = encoded(picture, "PNG")
    original_pdq = decode_image(original_bytes)
    for name, (transform, size, back) in copies.items():
        copy_bytes = encoded(
            picture.transpose(transform).resize(size, Image.Resampling.LANCZOS), "JPEG"
        )
        copy_pdq = decode_image(copy_bytes)
        assert copy_pdq.pdq_quality >= 50
        assert pdq_distance(original_pdq.pdq, copy_pdq.pdq) > 64, "a copy hashes far away"
        back_again = decode_image(encoded(copy_pdq.rgb.transpose(back)))
        assert pdq_distance(original_pdq.pdq, back_again.pdq) <= 20, "turned back, it is near"
        page_server.images[f"{prefix}-{name}.jpg"] = copy_bytes

    original = fakescope_server.analyze(original_bytes, f"{prefix}-original.png")
    path, html = page
    page_server.pages[path] = html
    uploads_before = fakescope_server.request_count("POST", "/v1/analyze")
    browser.set_settings(serverUrl=fakescope_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)

    feed = browser.context.new_page()
    feed.goto(page_server.url(path))
    urls = {name: page_server.url(f"/img/{prefix}-{name}.jpg") for name in copies}
    until(
        lambda: all(url in hint_badges(feed) for url in urls.values()),
        what=f"a hint badge on each {prefix} copy",
    )
    return original, feed, urls, hint_badges(feed), uploads_before


def test_a_rotated_copy_gets_a_rotated_hint_badge_not_a_verdict(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any, artifacts_dir: Path
) -> None:
    """Reposts turned a quarter turn either way or a half turn, resized and re-encoded: their
    own PDQ hashes are ~128 bits from the checked original's (no plain hint), but the
    extension's rotation hash for their turn is near it: each badge says it looks like a
    rotated copy ("≈↻"), and the panel says which way it looks turned."""
    original, page, urls, hints, uploads_before = copies_in_a_feed(
        until,
        browser,
        fakescope_server,
        page_server,
        seed=35,
        copies=TURNS,
        prefix="turned",
        page=("/rotated.html", ROTATION_PAGE),
    )
    for name, url in urls.items():
        hint = hints[url]
        assert hint["rotated"] == name, hint
        assert hint["mirrored"] == "false", hint
        assert hint["hint"] == original["label"], "the hint names the checked image's label"
        assert hint["label"] is None, "a hint is not a verdict badge"
        assert (hint["text"] or "").startswith("≈↻"), hint
        assert 0 <= int(hint["distance"] or -1) <= 31
        aria = hint["aria"] or ""
        assert "Not checked" in aria and "rotated copy of an image" in aria, aria
        assert url not in badge_labels(page), "a turned copy gets no verdict of its own"
    assert fakescope_server.request_count("POST", "/v1/analyze") == uploads_before, "no uploads"
    page.screenshot(path=str(artifacts_dir / "extension-feed-rotated-hint-badge.png"))

    # The panel: not checked, a rotated copy (turned which way) of an image with that verdict.
    url = urls["clockwise"]
    page.locator(f'fakescope-badge button[data-src="{url}"]').click()
    overlay = panel(page)
    title = overlay.locator(".hint-title")
    assert title.get_attribute("data-hint") == original["label"]
    assert title.get_attribute("data-rotated") == "clockwise"
    assert title.get_attribute("data-mirrored") == "false"
    assert "rotated copy" in title.inner_text()
    body = overlay.locator(".body").inner_text()
    assert "has not checked this image itself" in body
    assert f"rotated copy (turned {TURN_WORDS['clockwise']})" in body
    assert HEADLINES[original["label"]] in body
    assert f"{hints[url]['distance']} of 256 bits" in body
    assert "not a verdict on this image" in body
    assert overlay.locator(".verdict").count() == 0, "no verdict is shown for the copy"
    page.screenshot(path=str(artifacts_dir / "extension-feed-rotated-hint-panel.png"))


FLIP_PAGE = """<!doctype html><html><head><title>Flipped</title>
<style>body { font-family: sans-serif; margin: 20px; } img { display: block; margin: 16px 0; }
</style>
</head><body><h1>Reposted pictures, flipped</h1>
<img id="upside-down" src="/img/flipped-upsideDown.jpg" width="400" height="300" alt="upside down">
<img id="transposed" src="/img/flipped-transposed.jpg" width="300" height="400" alt="turned">
<img id="transversed" src="/img/flipped-transversed.jpg" width="300" height="400" alt="turned">
</body></html>"""

# How each repost is flipped from the original (PIL's transpose; each flip undoes itself), its
# size, its badge's glyph and how its hint names it.
FLIPS = {
    "upsideDown": (Image.Transpose.FLIP_TOP_BOTTOM, (400, 300), "≈⇅", "copy flipped upside down"),
    "transposed": (Image.Transpose.TRANSPOSE, (300, 400), "≈⇆↻", "mirrored and turned copy"),
    "transversed": (Image.Transpose.TRANSVERSE, (300, 400), "≈⇆↻", "mirrored and turned copy"),
}


def test_a_flipped_copy_gets_a_flipped_hint_badge_not_a_verdict(
    until: Any, browser: Any, fakescope_server: Any, page_server: Any, artifacts_dir: Path
) -> None:
    """Reposts flipped upside down, or across a diagonal (mirrored and turned a quarter turn),
    resized and re-encoded: their own PDQ hashes are far from the checked original's, but the
    extension's flip hash for their flip is near it: each badge says how it looks flipped
    ("≈⇅", "≈⇆↻"), and the panel says so in words."""
    original, page, urls, hints, uploads_before = copies_in_a_feed(
        until,
        browser,
        fakescope_server,
        page_server,
        seed=36,
        # Each flip undoes itself.
        copies={name: (flip, size, flip) for name, (flip, size, _, _) in FLIPS.items()},
        prefix="flipped",
        page=("/flipped.html", FLIP_PAGE),
    )
    for name, url in urls.items():
        _flip, _size, glyph, words = FLIPS[name]
        hint = hints[url]
        assert hint["flipped"] == name, hint
        assert hint["mirrored"] == "false" and hint["rotated"] is None, hint
        assert hint["hint"] == original["label"], "the hint names the checked image's label"
        assert hint["label"] is None, "a hint is not a verdict badge"
        assert (hint["text"] or "").startswith(f"{glyph} "), hint
        assert 0 <= int(hint["distance"] or -1) <= 31
        aria = hint["aria"] or ""
        assert "Not checked" in aria and f"{words} of an image" in aria, aria
        assert url not in badge_labels(page), "a flipped copy gets no verdict of its own"
    assert fakescope_server.request_count("POST", "/v1/analyze") == uploads_before, "no uploads"
    page.screenshot(path=str(artifacts_dir / "extension-feed-flipped-hint-badge.png"))

    # The panels: not checked, flipped upside down / mirrored and turned, with that verdict.
    expected = {
        "upsideDown": "looks like a copy flipped upside down (top to bottom)",
        "transposed": "a mirrored copy that was also turned a quarter turn (flipped left to right, "
        "then turned a quarter turn counterclockwise)",
    }
    for name, sentence in expected.items():
        url = urls[name]
        page.locator(f'fakescope-badge button[data-src="{url}"]').click()
        overlay = panel(page)
        title = overlay.locator(".hint-title")
        assert title.get_attribute("data-hint") == original["label"]
        assert title.get_attribute("data-flipped") == name
        assert title.get_attribute("data-mirrored") == "false"
        assert title.get_attribute("data-rotated") == ""
        assert FLIPS[name][3] in title.inner_text()
        body = overlay.locator(".body").inner_text()
        assert "has not checked this image itself" in body
        assert sentence in body, body
        assert HEADLINES[original["label"]] in body
        assert f"{hints[url]['distance']} of 256 bits" in body
        assert "not a verdict on this image" in body
        assert overlay.locator(".verdict").count() == 0, "no verdict is shown for the copy"
        page.screenshot(path=str(artifacts_dir / f"extension-feed-{name}-hint-panel.png"))
        press_escape_in_panel(page)
        until(lambda: page.locator("fakescope-overlay").count() == 0, what="the panel closes")


def test_a_badge_opens_its_panel_by_keyboard_and_gets_the_focus_back_on_escape(
    until: Any, browser: Any, stub_server: Any, page_server: Any
) -> None:
    from playwright.sync_api import expect

    knows_every_image(stub_server)
    browser.set_settings(serverUrl=stub_server.url)
    enable_feed_mode_in_options(browser, page_server.origin, until)
    page = browser.context.new_page()
    page.goto(page_server.url("/feed.html"))
    known_url = page_server.url("/img/known.png")
    until(lambda: known_url in badge_labels(page), what="a badge on the known image")

    badge = page.locator(f'fakescope-badge button[data-src="{known_url}"]')
    # The verdict is in the badge's words and name, not only in its colour.
    expect(badge).to_have_text("Real")
    expect(badge).to_have_accessible_name("Real, FakeScope: Likely authentic (12%). Show details")
    badge.focus()
    page.keyboard.press("Enter")
    expect(panel(page).get_by_role("dialog", name="FakeScope")).to_be_focused()
    until(lambda: focused_in_panel(page), what="the focus in the panel page")
    assert focused_in_panel(page)["role"] == "dialog"
    press_escape_in_panel(page)
    expect(page.locator("fakescope-overlay")).to_have_count(0)
    expect(badge).to_be_focused()
