"""Review API and page under pressure: hostile values, two reviewers at once, big queues.

Each test pins a defect found by driving a real server: out-of-range numbers and control
characters answered 500, a second reviewer silently overwrote the first one's decision (or
got a 500 on PostgreSQL when both decided at once), the page showed only the first 100
items, the export was built in memory and could not be filtered, and near duplicates were
never shown to the reviewer.
"""

from __future__ import annotations

import asyncio
import io
import json
import re

import numpy as np
import pytest
from admin_helpers import Tokens, analysed_image, bearer, problem, reported_image
from PIL import Image, ImageDraw
from test_review_page import csrf_of, sign_in

from server.admin.page import QUEUE_SHOWN
from server.admin.principal import Principal
from server.admin.review_items import DecisionConflictError, RecordedDecision, record_decision
from server.admin.roles import Role
from server.db.database import Database
from server.db.engine import create_engine
from server.settings import Settings

DASH = "\u2013"  # the en dash of the page's "Items 101-200"


async def test_out_of_range_numbers_are_422_or_404_never_500(client, tokens: Tokens) -> None:
    headers = bearer(tokens.admin)
    for params in ({"min_age_hours": "1e308"}, {"max_age_hours": "inf"}, {"max_age_hours": 1e20}):
        problem(await client.get("/v1/admin/queue", params=params, headers=headers), 422)
    huge = "9" * 25
    problem(await client.get("/v1/admin/audit", params={"before_id": huge}, headers=headers), 422)
    problem(await client.delete(f"/v1/admin/tokens/{huge}", headers=headers), 404)
    sha = await analysed_image(client)
    body = {"label": "fake", "expected_decision_id": int(huge)}
    response = await client.post(f"/v1/admin/items/{sha}/decision", json=body, headers=headers)
    problem(response, 422)


async def test_an_unknown_queue_cursor_is_an_error_not_an_empty_last_page(
    client, tokens: Tokens
) -> None:
    await reported_image(client)
    response = await client.get(
        "/v1/admin/queue", params={"cursor": "ab" * 32}, headers=bearer(tokens.reviewer)
    )
    assert problem(response, 422)["type"].endswith("unknown-cursor")


async def test_control_characters_in_notes_and_token_names_are_refused_clearly(
    client, tokens: Tokens
) -> None:
    """NUL cannot be stored in PostgreSQL text: it was a 500 there, and junk on SQLite."""
    sha = await reported_image(client)
    path = f"/v1/admin/items/{sha}/decision"
    refused = await client.post(
        path, json={"label": "fake", "note": "a\x00b"}, headers=bearer(tokens.reviewer)
    )
    assert "control characters" in problem(refused, 422)["detail"]
    named = await client.post(
        "/v1/admin/tokens", json={"role": "reviewer", "name": "x\x00"}, headers=bearer(tokens.admin)
    )
    problem(named, 422)
    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.admin))).json()
    assert item["decisions"] == []
    # Tabs and newlines are text, not control noise.
    kept = await client.post(
        path, json={"label": "fake", "note": "line 1\n\tline 2"}, headers=bearer(tokens.reviewer)
    )
    assert kept.status_code == 201 and kept.json()["note"] == "line 1\n\tline 2"

    # The page strips them from a crafted form rather than failing.
    page = await sign_in(client, tokens.reviewer)
    form = (await client.get(f"/admin/items/{sha}")).text
    posted = await client.post(
        path.replace("/v1/admin", "/admin"),
        data={"label": "real", "note": "ok\x00!", "csrf_token": csrf_of(form)},
        follow_redirects=False,
    )
    assert page.status_code == 303 and posted.status_code == 303, posted.text
    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.admin))).json()
    assert item["decisions"][-1]["note"] == "ok!"


async def test_a_decision_someone_made_meanwhile_is_a_conflict_not_a_silent_overwrite(
    client, tokens: Tokens
) -> None:
    sha = await reported_image(client)
    path = f"/v1/admin/items/{sha}/decision"
    # Both reviewers opened the item while it had no decision (expected id 0).
    first = await client.post(
        path,
        json={"label": "fake", "note": "hands", "expected_decision_id": 0},
        headers=bearer(tokens.reviewer),
    )
    assert first.status_code == 201, first.text
    second = await client.post(
        path, json={"label": "real", "expected_decision_id": 0}, headers=bearer(tokens.admin)
    )
    body = problem(second, 409)
    assert body["type"].endswith("decision-conflict") and "fake" in body["detail"]
    assert body["latest_decision"]["id"] == first.json()["id"]
    assert body["latest_decision"]["reviewer"] == tokens.reviewer_name
    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.admin))).json()
    assert [d["label"] for d in item["decisions"]] == ["fake"]

    # Having seen the first decision, the admin may override it on purpose.
    override = await client.post(
        path,
        json={"label": "real", "expected_decision_id": first.json()["id"]},
        headers=bearer(tokens.admin),
    )
    assert override.status_code == 201 and override.json()["previous_label"] == "fake"
    # Without expected_decision_id the API appends as before.
    plain = await client.post(path, json={"label": "fake"}, headers=bearer(tokens.admin))
    assert plain.status_code == 201 and plain.json()["previous_label"] == "real"


async def test_a_misspelt_decision_field_is_refused_not_silently_ignored(
    client, tokens: Tokens
) -> None:
    """`expected_decison_id` was dropped without a word: the decision was appended with no
    conflict check, overwriting a decision the reviewer had never seen."""
    sha = await reported_image(client)
    path = f"/v1/admin/items/{sha}/decision"
    first = await client.post(path, json={"label": "fake"}, headers=bearer(tokens.admin))
    assert first.status_code == 201, first.text
    typo = await client.post(
        path,
        json={"label": "real", "expected_decison_id": 0},
        headers=bearer(tokens.reviewer),
    )
    body = problem(typo, 422)
    assert "expected_decison_id" in body["detail"] and "expected_decision_id" in body["detail"]
    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.admin))).json()
    assert [d["label"] for d in item["decisions"]] == ["fake"]


async def test_the_page_refuses_to_overwrite_a_decision_it_did_not_show(
    client, tokens: Tokens
) -> None:
    sha = await reported_image(client)
    await sign_in(client, tokens.reviewer)
    stale = (await client.get(f"/admin/items/{sha}")).text
    assert 'name="seen_decision" value="0"' in stale
    # Another reviewer decides over the API while the page is open.
    other = await client.post(
        f"/v1/admin/items/{sha}/decision",
        json={"label": "fake", "note": "<b>generator tag</b>"},
        headers=bearer(tokens.admin),
    )
    assert other.status_code == 201
    form = {
        "label": "real",
        "note": "my own photo",
        "seen_decision": "0",
        "csrf_token": csrf_of(stale),
    }
    conflict = await client.post(f"/admin/items/{sha}/decision", data=form)
    assert conflict.status_code == 409
    assert 'id="conflict"' in conflict.text and "Ada Admin" in conflict.text
    assert "&lt;b&gt;generator tag&lt;/b&gt;" in conflict.text  # the other note, escaped
    assert ">my own photo</textarea>" in conflict.text  # the reviewer's note is kept
    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.admin))).json()
    assert [d["label"] for d in item["decisions"]] == ["fake"]

    # The conflict page shows the new decision; deciding from it overrides knowingly.
    seen = re.search(r'name="seen_decision" value="(\d+)"', conflict.text)
    assert seen and int(seen.group(1)) == other.json()["id"]
    form["seen_decision"] = seen.group(1)
    again = await client.post(f"/admin/items/{sha}/decision", data=form, follow_redirects=False)
    assert again.status_code == 303
    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.admin))).json()
    assert [d["label"] for d in item["decisions"]] == ["fake", "real"]


def _process_database(url: str) -> Database:
    """The Database a server process builds (SQLite writers take the lock when they begin)."""
    sqlite = url.startswith("sqlite")
    return Database(create_engine(url), create_engine(url, immediate=True) if sqlite else None)


async def test_simultaneous_decisions_on_one_image_are_serialised(
    client, settings: Settings
) -> None:
    """Two processes decide a fresh image at the same moment.

    On PostgreSQL the second one read "no decision yet" while the first was uncommitted: both
    created the image's review item (a 500 for one) or both were audited as the first
    decision, and its conflict check could not see the first. It must wait for the first.
    """
    sha = await analysed_image(client)  # not flagged: no review item yet
    one, other = _process_database(settings.database_url), _process_database(settings.database_url)
    ada = Principal(token_id=None, name="Ada", role=Role.ADMIN)
    bob = Principal(token_id=None, name="Bob", role=Role.REVIEWER)

    async def second_decision() -> RecordedDecision:
        async with other.write() as session:
            return await record_decision(
                session, sha, label="real", note=None, principal=bob, expected_decision_id=0
            )

    try:
        async with one.write() as session:
            first = await record_decision(session, sha, label="fake", note=None, principal=ada)
            racer = asyncio.create_task(second_decision())
            await asyncio.sleep(0.5)
            assert not racer.done(), "the second decision did not wait for the first"
        with pytest.raises(DecisionConflictError) as conflict:
            await asyncio.wait_for(racer, 30)
        assert conflict.value.latest is not None and conflict.value.latest["id"] == first.id
        async with other.write() as session:
            revised = await record_decision(session, sha, label="real", note=None, principal=bob)
        assert revised.previous_label == "fake"
    finally:
        await one.dispose()
        await other.dispose()


def _picture_and_copy() -> tuple[bytes, bytes]:
    """A drawn picture as PNG, and the same picture resized and re-encoded as JPEG."""
    image = Image.new("RGB", (320, 200))
    draw = ImageDraw.Draw(image)
    for y in range(200):
        draw.line([(0, y), (320, y)], fill=(40 + y // 3, 90 + y // 4, 200 - y // 3))
    draw.ellipse([60, 30, 120, 90], fill=(255, 214, 90))
    draw.polygon([(0, 200), (110, 120), (230, 200)], fill=(40, 120, 60))
    # Texture: PDQ hashes of featureless drawings (quality under 50) are never matched.
    grain = np.random.default_rng(5).normal(0, 10, (200, 320, 3))
    image = Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8), "RGB")
    original, copy = io.BytesIO(), io.BytesIO()
    image.save(original, "PNG")
    image.resize((240, 150)).save(copy, "JPEG", quality=80)
    return original.getvalue(), copy.getvalue()


async def test_the_item_shows_near_duplicates_with_their_own_labels(client, tokens: Tokens) -> None:
    original, reencoded = _picture_and_copy()
    sha = await reported_image(client)  # an unrelated item first
    first = await analysed_image(client, original)
    copy = await analysed_image(client, reencoded)
    assert first != copy
    await client.post(
        f"/v1/admin/items/{copy}/decision", json={"label": "fake"}, headers=bearer(tokens.admin)
    )
    item = (await client.get(f"/v1/admin/items/{first}", headers=bearer(tokens.reviewer))).json()
    near = item["near_duplicates"]
    assert [m["sha256"] for m in near] == [copy]  # never the item itself, nor unrelated images
    assert near[0]["label"] == "fake" and near[0]["decided_by"] == "review"
    assert 0 <= near[0]["distance"] <= 31 and near[0]["status"] == "decided"

    await sign_in(client, tokens.reviewer)
    page = (await client.get(f"/admin/items/{first}")).text
    assert "Near duplicates (1)" in page and f'href="/admin/items/{copy}"' in page
    lonely = (await client.get(f"/admin/items/{sha}")).text
    assert "Near duplicates (0)" in lonely


async def test_the_page_pages_through_a_queue_longer_than_one_page(client, tokens: Tokens) -> None:
    shas = [await reported_image(client) for _ in range(QUEUE_SHOWN + 3)]
    await sign_in(client, tokens.reviewer)
    first = (await client.get("/admin")).text
    assert f"Items 1{DASH}{QUEUE_SHOWN} of {QUEUE_SHOWN + 3}" in first
    assert f"/admin/items/{shas[QUEUE_SHOWN]}" not in first
    link = re.search(r'id="queue-next" href="([^"]+)"', first)
    assert link, "no link to the next page"
    second_url = link.group(1).replace("&amp;", "&")
    second = (await client.get(second_url)).text
    assert f"Items {QUEUE_SHOWN + 1}{DASH}{QUEUE_SHOWN + 3} of {QUEUE_SHOWN + 3}" in second
    for sha in shas[QUEUE_SHOWN:]:
        assert f'href="/admin/items/{sha}?cursor=' in second
    assert 'id="queue-next"' not in second and 'id="queue-first"' in second

    # Deciding on the second page stays on it and moves to the next item there.
    target = shas[QUEUE_SHOWN]
    view = (await client.get(f"/admin/items/{target}?cursor={shas[QUEUE_SHOWN - 1]}")).text
    assert f'name="filter_cursor" value="{shas[QUEUE_SHOWN - 1]}"' in view
    decided = await client.post(
        f"/admin/items/{target}/decision",
        data={
            "label": "real",
            "csrf_token": csrf_of(view),
            "filter_cursor": shas[QUEUE_SHOWN - 1],
        },
    )
    assert decided.status_code == 200
    assert f"Items {QUEUE_SHOWN + 1}{DASH}{QUEUE_SHOWN + 2} of {QUEUE_SHOWN + 2}" in decided.text
    assert shas[QUEUE_SHOWN + 1][:16] in decided.text.split("<h1>", 1)[1][:200]
    # An unknown cursor falls back to the first page instead of an empty queue.
    fallback = (await client.get("/admin", params={"cursor": "ab" * 32})).text
    assert f"Items 1{DASH}{QUEUE_SHOWN} of" in fallback


async def test_the_export_streams_in_chunks_and_filters_by_label_and_time(
    client, tokens: Tokens
) -> None:
    import server.admin.export as export_module

    decided = [await reported_image(client) for _ in range(5)]
    labels = ["fake", "real", "fake", "real", "fake"]
    for sha, label in zip(decided, labels, strict=True):
        response = await client.post(
            f"/v1/admin/items/{sha}/decision", json={"label": label}, headers=bearer(tokens.admin)
        )
        assert response.status_code == 201
    middle = (
        await client.get(f"/v1/admin/items/{decided[2]}", headers=bearer(tokens.admin))
    ).json()
    middle_at = middle["decisions"][-1]["created_at"]

    def export(**params: str):
        return client.get("/v1/admin/export", params=params, headers=bearer(tokens.admin))

    original_chunk = export_module._CHUNK
    export_module._CHUNK = 2  # several chunks, so the keyset paging and filters combine
    try:
        everything = await export()
        fakes = await export(label="fake")
        recent = await export(since=middle_at)
        older_reals = await export(label="real", until=middle_at)
    finally:
        export_module._CHUNK = original_chunk
    assert everything.status_code == 200
    assert "content-length" not in everything.headers  # streamed, not built in memory
    assert everything.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in everything.text.splitlines()]
    assert sorted(r["sha256"] for r in lines) == sorted(decided)
    assert [r["sha256"] for r in lines] == sorted(r["sha256"] for r in lines)
    assert {json.loads(x)["sha256"] for x in fakes.text.splitlines()} == {
        decided[0],
        decided[2],
        decided[4],
    }
    assert {json.loads(x)["sha256"] for x in recent.text.splitlines()} == set(decided[2:])
    assert [json.loads(x)["sha256"] for x in older_reals.text.splitlines()] == [decided[1]]
    problem(await export(label="maybe"), 422)
    problem(await export(since="yesterday"), 422)
    # Every export is in the audit log, with who took it and the filters it used.
    audit = await client.get(
        "/v1/admin/audit", params={"action": "review.export"}, headers=bearer(tokens.admin)
    )
    entries = audit.json()["entries"]
    assert len(entries) == 4  # the refused ones wrote nothing
    assert entries[0]["details"]["label"] == "real" and entries[0]["details"]["until"]
    assert {e["actor"] for e in entries} == {entries[0]["actor"]} and entries[0]["actor"]
    # A plain date is ISO 8601 too (midnight UTC); a '+' left unencoded says what happened.
    today = middle_at[:10]
    assert {json.loads(x)["sha256"] for x in (await export(since=today)).text.splitlines()} == set(
        decided
    )
    assert (await export(until=today)).text == ""
    unencoded = problem(await export(since=middle_at[:19] + " 02:00"), 422)
    assert "%2B" in unencoded["detail"]


async def test_export_times_past_the_ends_of_the_calendar_in_utc_are_422_not_500(
    client, tokens: Tokens
) -> None:
    """A valid ISO 8601 time whose zone moves it past year 9999 or before year 1 in UTC
    overflowed in the conversion (a 500)."""
    for name, value in (
        ("since", "9999-12-31T23:59:59-01:00"),
        ("until", "0001-01-01T00:30:00+01:00"),
    ):
        refused = await client.get(
            "/v1/admin/export", params={name: value}, headers=bearer(tokens.reviewer)
        )
        assert name in problem(refused, 422)["detail"]
    audit = await client.get(
        "/v1/admin/audit", params={"action": "review.export"}, headers=bearer(tokens.admin)
    )
    assert audit.json()["entries"] == []  # refused before anything was written
    # The last instant in UTC itself is a time like any other.
    last = await client.get(
        "/v1/admin/export",
        params={"until": "9999-12-31T23:59:59+00:00"},
        headers=bearer(tokens.reviewer),
    )
    assert last.status_code == 200 and last.text == ""


async def test_opening_the_sign_in_address_again_shows_the_form_not_a_405(client) -> None:
    """After a wrong token the browser shows /admin/login; pressing Enter there was a 405."""
    response = await client.get("/admin/login", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    page = await client.get("/admin/login")
    assert page.status_code == 200 and 'action="/admin/login"' in page.text
