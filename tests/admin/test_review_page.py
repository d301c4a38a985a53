"""The /admin page over HTTP: sign-in, cookie attributes, CSRF refusals, deciding from a form."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from admin_helpers import Tokens, bearer, reported_image, unique_png
from litestar.testing import AsyncTestClient

from server.admin.csrf import LOGIN_CSRF_COOKIE
from server.analyze.image_rows import DatabaseImageStore
from server.analyze.image_store import FileImageStore, ImageFiles, ImageStore
from server.app import create_app
from server.db.database import Database
from server.db.engine import create_engine
from server.settings import Settings

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def sign_in(client, token: str):
    login_page = await client.get("/admin")
    return await client.post(
        "/admin/login",
        data={"token": token, "csrf_token": csrf_of(login_page.text)},
        follow_redirects=False,
    )


async def test_the_page_without_a_session_shows_the_sign_in_form(client) -> None:
    page = await client.get("/admin")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'action="/admin/login"' in page.text and 'type="password"' in page.text
    assert (
        "HttpOnly" in page.headers["set-cookie"] and LOGIN_CSRF_COOKIE in page.headers["set-cookie"]
    )
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_signing_in_sets_an_httponly_strict_cookie_and_the_page_never_holds_the_token(
    client, tokens: Tokens
) -> None:
    sha = await reported_image(client)
    response = await sign_in(client, tokens.reviewer)
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "admin_session" in c)
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/admin" in cookie
    page = await client.get("/admin")
    assert page.status_code == 200
    assert sha in page.text and "User report" in page.text and "Rita Reviewer" in page.text
    assert tokens.reviewer not in page.text
    assert csrf_of(page.text) != tokens.reviewer


async def test_sign_in_refuses_a_missing_csrf_token_a_wrong_token_and_a_client_token(
    client, tokens: Tokens
) -> None:
    await client.get("/admin")
    no_csrf = await client.post("/admin/login", data={"token": tokens.reviewer})
    assert no_csrf.status_code == 403 and "admin_session" not in str(no_csrf.headers)
    wrong = await sign_in(client, "fs_not-a-token")
    assert wrong.status_code == 401 and "not valid" in wrong.text
    as_client = await sign_in(client, tokens.client)
    assert as_client.status_code == 403 and "client role" in as_client.text
    assert (await client.get("/admin")).text.count('action="/admin/login"') == 1


async def test_repeated_wrong_sign_ins_are_refused_with_429_even_for_a_good_token(
    client, tokens: Tokens
) -> None:
    for _ in range(10):
        assert (await sign_in(client, "fs_wrong")).status_code == 401
    limited = await sign_in(client, tokens.reviewer)
    assert limited.status_code == 429 and "too many failed" in limited.text


async def test_a_decision_form_without_the_right_csrf_token_is_refused_and_records_nothing(
    client, tokens: Tokens
) -> None:
    sha = await reported_image(client)
    await sign_in(client, tokens.reviewer)
    path = f"/admin/items/{sha}/decision"
    missing = await client.post(path, data={"label": "fake"})
    assert missing.status_code == 403 and "CSRF" in missing.text
    forged = await client.post(path, data={"label": "fake", "csrf_token": "0" * 64})
    assert forged.status_code == 403
    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.admin))).json()
    assert item["decisions"] == [] and item["status"] == "open"


async def test_deciding_from_the_page_serves_the_label_and_shrinks_the_queue(
    client, tokens: Tokens
) -> None:
    first, second = await reported_image(client), await reported_image(client)
    await sign_in(client, tokens.reviewer)
    page = await client.get(f"/admin/items/{first}")
    assert "2 open" in page.text
    decided = await client.post(
        f"/admin/items/{first}/decision",
        data={"label": "real", "note": "camera original", "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert decided.status_code == 303
    assert decided.headers["location"].startswith("/admin?")
    after = await client.get(decided.headers["location"])
    assert "1 open" in after.text and "Saved:" in after.text
    queue_list = after.text.split('id="queue-list"', 1)[1].split("</ol>", 1)[0]
    assert f'href="/admin/items/{first}"' not in queue_list
    # The saved notice links back to the decided item, to change the decision.
    assert 'id="saved-change"' in after.text and f"/admin/items/{first}" in after.text
    assert "Item <code" in after.text and second[:16] in after.text
    served = (await client.get(f"/v1/analyses/{first}")).json()
    assert served["label"] == "real" and served["decided_by"] == "review"
    assert served["review"]["note"] == "camera original"


async def test_a_note_from_the_page_keeps_its_line_breaks_as_newlines_and_its_whole_text(
    client, tokens: Tokens
) -> None:
    """Browsers send a textarea's line breaks as CRLF: notes from the page were stored with
    CR characters (unlike the API's), and a note at the textarea's 2,000-character limit
    lost its last characters, one per line break, without a word."""
    sha = await reported_image(client)
    await sign_in(client, tokens.reviewer)
    page = (await client.get(f"/admin/items/{sha}")).text
    lines = ["x" * 199] * 10  # 2,000 characters as the textarea counts them (LF = 1)
    posted = await client.post(
        f"/admin/items/{sha}/decision",
        data={"label": "fake", "note": "\r\n".join(lines) + "\r\n", "csrf_token": csrf_of(page)},
        follow_redirects=False,
    )
    assert posted.status_code == 303, posted.text
    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.admin))).json()
    assert item["decisions"][-1]["note"] == "\n".join(lines)


async def test_an_unknown_item_says_so_without_claiming_the_queue_is_empty(
    client, tokens: Tokens
) -> None:
    await reported_image(client)
    await sign_in(client, tokens.reviewer)
    page = await client.get("/admin/items/" + "0" * 64)
    assert page.status_code == 404
    assert "No image with this SHA-256 is known" in page.text
    assert "1 open" in page.text
    assert "All caught up" not in page.text and "No item is waiting" not in page.text


async def test_an_item_reported_thousands_of_times_shows_the_newest_reports_and_the_count(
    client, tokens: Tokens
) -> None:
    """Anyone may file reports: 600 reports of 4,000 characters made one item's page 2.5 MB
    (every report, every view), and the page grew without bound with more."""
    sha = await reported_image(client, reason="report 0")
    for number in range(1, 60):
        filed = await client.post(
            "/v1/reports", json={"sha256": sha, "reason": f"report {number}", "note": "n" * 100}
        )
        assert filed.status_code == 201, filed.text
    await sign_in(client, tokens.reviewer)
    page = (await client.get(f"/admin/items/{sha}")).text
    assert "User reports (60)" in page and 'id="reports-more"' in page
    assert "report 59<" in page and "report 10<" in page and "report 9<" not in page
    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.reviewer))).json()
    assert len(item["reports"]) == item["reports_total"] == 60  # a page of 100 holds them all
    assert item["reports_next_before"] is None


async def test_the_review_api_pages_an_items_reports_from_the_newest_back(
    client, tokens: Tokens
) -> None:
    """The API answered every report of an item at once: anyone may file them, 4,000
    characters each at the public rate, so one image's answer could grow to gigabytes."""
    sha = await reported_image(client, reason="report 0")
    for number in range(1, 25):
        filed = await client.post("/v1/reports", json={"sha256": sha, "reason": f"report {number}"})
        assert filed.status_code == 201, filed.text
    url, auth = f"/v1/admin/items/{sha}", bearer(tokens.reviewer)
    seen: list[str] = []
    before = None
    while True:
        params = {"reports": 10} | ({"reports_before": before} if before else {})
        answer = await client.get(url, params=params, headers=auth)
        assert answer.status_code == 200, answer.text
        item = answer.json()
        assert item["reports_total"] == 25 and 0 < len(item["reports"]) <= 10
        seen = [report["reason"] for report in item["reports"]] + seen  # each page oldest first
        before = item["reports_next_before"]
        if before is None:
            break
    assert seen == [f"report {number}" for number in range(25)]  # all, in order, once each
    default = (await client.get(url, headers=auth)).json()
    assert len(default["reports"]) == 25 and default["reports_next_before"] is None
    for bad in ({"reports": 0}, {"reports": 1001}, {"reports_before": 0}, {"reports": "x"}):
        refused = await client.get(url, params=bad, headers=auth)
        assert refused.status_code in (400, 422), (bad, refused.status_code)
        assert refused.headers["content-type"].startswith("application/problem+json")


async def test_user_supplied_text_is_escaped_in_the_page(client, tokens: Tokens) -> None:
    sha = await reported_image(client, reason='<script>alert("x")</script>')
    await sign_in(client, tokens.reviewer)
    page = (await client.get(f"/admin/items/{sha}")).text
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;alert(" in page
    assert page.count("<script") == 1  # only the page's own external script


async def test_a_revoked_token_ends_the_page_session(client, tokens: Tokens) -> None:
    created = await client.post(
        "/v1/admin/tokens", json={"role": "reviewer"}, headers=bearer(tokens.admin)
    )
    await sign_in(client, created.json()["token"])
    assert "Sign out" in (await client.get("/admin")).text
    await client.delete(f"/v1/admin/tokens/{created.json()['id']}", headers=bearer(tokens.admin))
    page = await client.get("/admin")
    assert page.status_code == 401 and "revoked" in page.text
    assert 'action="/admin/login"' in page.text


@pytest.mark.parametrize("image_store", ["files", "database"])
async def test_the_page_shows_stored_image_bytes_only_to_a_signed_in_reviewer(
    settings: Settings, tokens: Tokens, image_store: str
) -> None:
    app = create_app(replace(settings, image_store=image_store))
    # The app runs on the test client's own loop: the test keeps bytes through its own store.
    if image_store == "files":
        store: ImageStore = FileImageStore(settings.image_store_dir)
        db = None
    else:
        db = Database(create_engine(settings.database_url))
        store = DatabaseImageStore(db)
    try:
        async with AsyncTestClient(app=app, timeout=60) as client:
            await _shows_stored_bytes_only_to_a_reviewer(client, tokens, store)
    finally:
        if db is not None:
            await db.dispose()


async def _shows_stored_bytes_only_to_a_reviewer(
    client: Any, tokens: Tokens, store: ImageStore
) -> None:
    data = unique_png()
    response = await client.post("/v1/analyze", files={"file": ("x.png", data)})
    sha = response.json()["sha256"]
    # A provenance-only server keeps no bytes; put them where a model server keeps them.
    await store.save(sha, data)
    await client.post("/v1/reports", json={"sha256": sha, "reason": "check"})
    assert (await client.get(f"/admin/items/{sha}/image")).status_code == 401
    await sign_in(client, tokens.reviewer)
    page = await client.get(f"/admin/items/{sha}")
    assert f'src="/admin/items/{sha}/image"' in page.text
    image = await client.get(f"/admin/items/{sha}/image")
    assert image.status_code == 200 and image.content == data
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"


async def test_without_stored_bytes_the_page_says_so_and_shows_facts_and_pdq(
    client, tokens: Tokens, settings: Settings
) -> None:
    sha = await reported_image(client)
    ImageFiles(settings.image_store_dir)._path(sha).unlink(missing_ok=True)
    await sign_in(client, tokens.reviewer)
    page = (await client.get(f"/admin/items/{sha}")).text
    assert 'id="no-image-bytes"' in page and "<img" not in page
    assert "PDQ perceptual hash drawn" in page and "48 \u00d7 48 px" in page
    assert (await client.get(f"/admin/items/{sha}/image")).status_code == 404


async def test_signing_out_needs_the_csrf_token_and_clears_the_session(
    client, tokens: Tokens
) -> None:
    await sign_in(client, tokens.reviewer)
    page = await client.get("/admin")
    assert (await client.post("/admin/logout", data={})).status_code == 403
    out = await client.post(
        "/admin/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    assert 'action="/admin/login"' in (await client.get("/admin")).text
