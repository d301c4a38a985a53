"""Report → queue → decision → every client is served the reviewed label, with an audit trail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from admin_helpers import Tokens, analysed_image, bearer, flag, problem, reported_image
from sqlalchemy import update

from server.db.engine import create_engine
from server.db.models import ReviewItem
from server.settings import Settings


async def test_a_reported_image_is_reviewed_and_every_client_gets_the_reviewed_label(
    client, tokens: Tokens
) -> None:
    sha = await reported_image(client, suggested_label="fake", reason="obvious AI hands")
    queue = (await client.get("/v1/admin/queue", headers=bearer(tokens.reviewer))).json()
    entry = next(e for e in queue["items"] if e["sha256"] == sha)
    assert entry["reasons"] == ["user_report"] and entry["status"] == "open"

    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.reviewer))).json()
    assert item["image"]["format"] == "PNG" and len(item["image"]["pdq"]) == 64
    assert item["analysis"]["label"] == "uncertain" and item["analysis"]["evidence"] == []
    assert [r["reason"] for r in item["reports"]] == ["obvious AI hands"]
    assert item["reports"][0]["suggested_label"] == "fake" and item["decisions"] == []

    decided = await client.post(
        f"/v1/admin/items/{sha}/decision",
        json={"label": "fake", "note": "six fingers"},
        headers=bearer(tokens.reviewer),
    )
    assert decided.status_code == 201, decided.text
    assert decided.json()["previous_label"] is None

    served = (await client.get(f"/v1/analyses/{sha}")).json()
    assert served["label"] == "fake" and served["decided_by"] == "review"
    assert served["review"]["note"] == "six fingers"
    assert served["review"]["reviewer"] == tokens.reviewer_name
    looked_up = (await client.post("/v1/lookup", json={"sha256": [sha]})).json()
    assert looked_up["results"][sha]["label"] == "fake"
    assert looked_up["results"][sha]["decided_by"] == "review"

    audit = (await client.get("/v1/admin/audit", headers=bearer(tokens.admin))).json()
    entry = audit["entries"][0]
    assert entry["action"] == "review.decide" and entry["sha256"] == sha
    assert entry["details"]["label"] == "fake" and tokens.reviewer_name in entry["actor"]
    open_queue = (await client.get("/v1/admin/queue", headers=bearer(tokens.reviewer))).json()
    assert sha not in [e["sha256"] for e in open_queue["items"]]


async def test_a_revised_decision_wins_and_the_history_keeps_both(client, tokens: Tokens) -> None:
    sha = await reported_image(client)
    for label, note in (("fake", "looks generated"), ("real", "found the original photo")):
        response = await client.post(
            f"/v1/admin/items/{sha}/decision",
            json={"label": label, "note": note},
            headers=bearer(tokens.admin),
        )
        assert response.status_code == 201
    assert response.json()["previous_label"] == "fake"

    item = (await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.reviewer))).json()
    assert [d["label"] for d in item["decisions"]] == ["fake", "real"]
    assert item["served"] == {"label": "real", "decided_by": "review", "p_fake": None}
    assert (await client.get(f"/v1/analyses/{sha}")).json()["label"] == "real"
    audit = await client.get(
        "/v1/admin/audit", params={"sha256": sha}, headers=bearer(tokens.admin)
    )
    actions = [e["action"] for e in audit.json()["entries"]]
    assert actions == ["review.revise", "review.decide"]
    assert audit.json()["entries"][0]["details"]["previous_label"] == "fake"


async def test_a_new_report_after_a_decision_reopens_the_item(client, tokens: Tokens) -> None:
    sha = await reported_image(client)
    await client.post(
        f"/v1/admin/items/{sha}/decision", json={"label": "real"}, headers=bearer(tokens.admin)
    )
    waiting = await reported_image(client)  # flagged after the first, before the new report
    await client.post("/v1/reports", json={"sha256": sha, "reason": "still looks fake"})
    queue = (await client.get("/v1/admin/queue", headers=bearer(tokens.reviewer))).json()
    # Oldest flag first: the reopened item queues behind the one already waiting.
    assert [e["sha256"] for e in queue["items"]] == [waiting, sha]
    assert next(e for e in queue["items"] if e["sha256"] == sha)["label"] == "real"


async def test_decisions_are_validated(client, tokens: Tokens) -> None:
    sha = await analysed_image(client)
    path = f"/v1/admin/items/{sha}/decision"
    problem(await client.post(path, json={"label": "maybe"}, headers=bearer(tokens.admin)), 422)
    problem(await client.post(path, json={"note": "x"}, headers=bearer(tokens.admin)), 422)
    long_note = {"label": "fake", "note": "x" * 2001}
    problem(await client.post(path, json=long_note, headers=bearer(tokens.admin)), 422)
    unknown = "/v1/admin/items/" + "cd" * 32 + "/decision"
    problem(await client.post(unknown, json={"label": "fake"}, headers=bearer(tokens.admin)), 404)
    problem(await client.get("/v1/admin/items/xyz", headers=bearer(tokens.admin)), 422)


async def test_the_queue_filters_by_reason_label_status_and_age_and_pages_with_a_cursor(
    client, tokens: Tokens, settings: Settings
) -> None:
    reported = [await reported_image(client) for _ in range(3)]
    uncertain_only = await analysed_image(client)
    await flag(settings.database_url, uncertain_only, ["uncertain", "conflict_camera_vs_model"])
    headers = bearer(tokens.reviewer)

    async def shas(**params: object) -> list[str]:
        response = await client.get("/v1/admin/queue", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [e["sha256"] for e in response.json()["items"]]

    assert set(await shas(reason="user_report")) == set(reported)
    assert await shas(reason="uncertain") == [uncertain_only]
    assert await shas(reason="conflict_camera_vs_model") == [uncertain_only]
    assert await shas(reason="c2pa_invalid") == []
    assert set(await shas(label="uncertain")) == {*reported, uncertain_only}

    await client.post(
        f"/v1/admin/items/{reported[0]}/decision", json={"label": "real"}, headers=headers
    )
    assert await shas(status="decided") == [reported[0]]
    assert await shas(status="any", label="real") == [reported[0]]
    assert reported[0] not in await shas()

    # Make one item look two days old to see the age filters.
    engine = create_engine(settings.database_url)
    async with engine.begin() as conn:
        old = datetime.now(UTC) - timedelta(days=2)
        await conn.execute(
            update(ReviewItem).where(ReviewItem.sha256 == uncertain_only).values(created_at=old)
        )
    await engine.dispose()
    assert await shas(min_age_hours=24) == [uncertain_only]
    assert uncertain_only not in await shas(max_age_hours=24)

    first = (await client.get("/v1/admin/queue", params={"limit": 2}, headers=headers)).json()
    assert first["total"] == 3 and len(first["items"]) == 2 and first["next_cursor"]
    second = await client.get(
        "/v1/admin/queue", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
    )
    page_two = second.json()
    assert len(page_two["items"]) == 1 and page_two["next_cursor"] is None
    everything = [e["sha256"] for e in first["items"] + page_two["items"]]
    assert set(everything) == {uncertain_only, reported[1], reported[2]}
    assert everything[0] == uncertain_only  # oldest flag first
    problem(await client.get("/v1/admin/queue", params={"status": "x"}, headers=headers), 422)
    problem(await client.get("/v1/admin/queue", params={"reason": "%"}, headers=headers), 422)


async def test_the_export_is_jsonl_of_reviewed_items_with_label_explanation_and_evidence(
    client, tokens: Tokens
) -> None:
    decided = [await reported_image(client) for _ in range(2)]
    await reported_image(client)  # flagged but never decided: not exported
    for sha, label in zip(decided, ("fake", "real"), strict=True):
        await client.post(
            f"/v1/admin/items/{sha}/decision",
            json={"label": label, "note": f"{label} because"},
            headers=bearer(tokens.reviewer),
        )
    await client.post(
        f"/v1/admin/items/{decided[1]}/decision",
        json={"label": "fake", "note": "changed my mind"},
        headers=bearer(tokens.admin),
    )
    response = await client.get("/v1/admin/export", headers=bearer(tokens.admin))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    records = {r["sha256"]: r for r in map(json.loads, lines)}
    assert set(records) == set(decided) and len(lines) == 2
    assert records[decided[0]]["label"] == "fake" and records[decided[0]]["revisions"] == 1
    assert records[decided[1]]["label"] == "fake" and records[decided[1]]["revisions"] == 2
    assert records[decided[1]]["note"] == "changed my mind"
    for record in records.values():
        assert {"explanation", "evidence", "model_label", "image", "reasons"} <= set(record)
        assert record["evidence"] == [] and record["model_label"] == "uncertain"
        assert record["image"]["format"] == "PNG"


async def test_admins_create_list_and_revoke_tokens_over_the_api(client, tokens: Tokens) -> None:
    created = await client.post(
        "/v1/admin/tokens",
        json={"role": "reviewer", "name": "night shift"},
        headers=bearer(tokens.admin),
    )
    assert created.status_code == 201
    body = created.json()
    assert body["token"].startswith(body["prefix"])
    new = bearer(body["token"])
    assert (await client.get("/v1/admin/queue", headers=new)).status_code == 200
    listing = (await client.get("/v1/admin/tokens", headers=bearer(tokens.admin))).json()
    assert all("token" not in t and "token_hash" not in t for t in listing["tokens"])
    assert "night shift" in [t["name"] for t in listing["tokens"]]
    revoked = await client.delete(f"/v1/admin/tokens/{body['id']}", headers=bearer(tokens.admin))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    problem(await client.get("/v1/admin/queue", headers=new), 401)
    problem(await client.delete("/v1/admin/tokens/9999", headers=bearer(tokens.admin)), 404)
    actions = [
        e["action"]
        for e in (await client.get("/v1/admin/audit", headers=bearer(tokens.admin))).json()[
            "entries"
        ]
    ]
    assert actions[:2] == ["token.revoke", "token.create"]


def _gauges(metrics: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in (
            line.rsplit(" ", 1)
            for line in metrics.splitlines()
            if line.startswith("fakescope_review_")
        )
    }


async def test_metrics_tell_how_big_and_how_stale_the_review_queue_is(
    client, tokens: Tokens, settings: Settings
) -> None:
    empty = _gauges((await client.get("/metrics")).text)
    assert empty["fakescope_review_oldest_open_seconds"] == 0.0
    sha = await reported_image(client)
    engine = create_engine(settings.database_url)
    async with engine.begin() as conn:
        waiting_since = datetime.now(UTC) - timedelta(hours=3)
        await conn.execute(
            update(ReviewItem).where(ReviewItem.sha256 == sha).values(created_at=waiting_since)
        )
    await engine.dispose()
    flagged = _gauges((await client.get("/metrics")).text)
    assert flagged['fakescope_review_items{status="open"}'] == 1.0
    assert 3 * 3600 <= flagged["fakescope_review_oldest_open_seconds"] < 3 * 3600 + 60
    await client.post(
        f"/v1/admin/items/{sha}/decision",
        json={"label": "fake", "note": "generated"},
        headers=bearer(tokens.reviewer),
    )
    decided = _gauges((await client.get("/metrics")).text)
    assert decided['fakescope_review_items{status="open"}'] == 0.0
    assert decided['fakescope_review_items{status="decided"}'] == 1.0
    assert decided["fakescope_review_oldest_open_seconds"] == 0.0
