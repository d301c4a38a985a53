"""The public API, run against SQLite and PostgreSQL (provenance-only mode: no model)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from server_helpers import (
    StartupFailed,
    count_rows,
    problem,
    run_sql,
    running,
    unique_png,
    wait_until_ready,
)
from sqlalchemy.exc import OperationalError, ProgrammingError

from server.app import create_app
from server.ask.service import parse_event
from server.db.models import ReviewDecision
from server.settings import Settings


async def test_upload_returns_a_provenance_only_analysis_then_serves_it_from_cache(
    client, settings
) -> None:
    data = unique_png()
    first = await client.post("/v1/analyze", files={"file": ("x.png", data, "image/png")})
    assert first.status_code == 200, first.text
    assert first.headers["x-cache"] == "miss"
    body = first.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["mode"] == "provenance-only"
    assert body["p_fake"] is None and body["model"] is None
    assert body["label"] == "uncertain" and body["decided_by"] == "provenance"
    assert body["image"]["format"] == "PNG" and len(body["image"]["pdq"]) == 64
    assert body["created_at"].endswith("Z") and body["review"] is None

    second = await client.post("/v1/analyze", files={"file": ("x.png", data, "image/png")})
    assert second.headers["x-cache"] == "hit"
    assert second.json() == body
    rows = await count_rows(settings.database_url)
    assert rows["images"] == 1 and rows["analyses"] == 1


async def test_get_analysis_by_sha256_serves_the_stored_analysis(client) -> None:
    data = unique_png()
    posted = (await client.post("/v1/analyze", files={"file": ("a.png", data)})).json()
    got = await client.get(f"/v1/analyses/{posted['sha256'].upper()}")
    assert got.status_code == 200 and got.headers["x-cache"] == "hit"
    assert got.json() == posted


async def test_get_unknown_analysis_is_a_404_problem(client) -> None:
    response = await client.get("/v1/analyses/" + "ab" * 32)
    assert response.status_code == 404
    problem(response)


async def test_get_with_a_malformed_sha256_is_a_422_problem(client) -> None:
    response = await client.get("/v1/analyses/not-a-hash")
    assert response.status_code == 422
    problem(response)


async def test_generator_metadata_decides_fake_from_provenance(client, shared_data: Path) -> None:
    comfy = next((shared_data / "images/fake/comfyui_examples").glob("*.png"))
    response = await client.post("/v1/analyze", files={"file": (comfy.name, comfy.read_bytes())})
    body = response.json()
    assert response.status_code == 200
    assert (body["label"], body["decided_by"]) == ("fake", "provenance")
    assert body["evidence"][0]["kind"] == "comfyui_workflow"


async def test_explain_in_provenance_only_mode_is_accepted_and_says_no_explanation(client) -> None:
    response = await client.post(
        "/v1/analyze?explain=true", files={"file": ("a.png", unique_png())}
    )
    assert response.status_code == 200
    assert response.json()["explanation"] is None
    assert response.json()["mode"] == "provenance-only"


async def test_lookup_returns_cached_analyses_and_omits_unknown_keys(client) -> None:
    known = [
        (await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})).json()
        for _ in range(3)
    ]
    unknown = "cd" * 32
    response = await client.post(
        "/v1/lookup", json={"sha256": [k["sha256"] for k in known] + [unknown]}
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert set(results) == {k["sha256"] for k in known}
    assert results[known[0]["sha256"]] == known[0]
    assert response.headers["x-cache"] == "miss"


async def test_lookup_reports_pdq_near_matches_as_hints_with_their_distance(client) -> None:
    stored = (await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})).json()
    pdq = stored["image"]["pdq"]
    flipped = f"{int(pdq, 16) ^ 0b111:064x}"  # three bits away: a re-encoded copy, say
    far = f"{int(pdq, 16) ^ ((1 << 256) - 1):064x}"  # every bit different
    response = await client.post("/v1/lookup", json={"pdq": [flipped, far]})
    body = response.json()
    assert body["results"] == {}
    assert body["near"] == [{"pdq": flipped, "sha256": stored["sha256"], "distance": 3}]


@pytest.mark.parametrize("count", [501, 10_000])
async def test_lookup_with_too_many_keys_is_a_422_problem(client, count: int) -> None:
    keys = [f"{i:064x}" for i in range(count)]
    response = await client.post("/v1/lookup", json={"sha256": keys})
    assert response.status_code == 422
    assert "at most 500" in problem(response)["detail"]


async def test_lookup_counts_sha256_and_pdq_keys_together(client) -> None:
    response = await client.post(
        "/v1/lookup", json={"sha256": ["a" * 64] * 300, "pdq": ["b" * 64] * 201}
    )
    assert response.status_code == 422


async def test_lookup_with_malformed_keys_is_a_422_problem(client) -> None:
    for body in ({"sha256": ["xyz"]}, {"pdq": [123]}, {"sha256": "a" * 64}):
        response = await client.post("/v1/lookup", json=body)
        assert response.status_code == 422, body
        problem(response)


async def test_report_opens_a_review_item_with_reason_user_report(client, settings) -> None:
    sha = (await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})).json()[
        "sha256"
    ]
    response = await client.post(
        "/v1/reports",
        json={"sha256": sha, "reason": "this is my own photo", "suggested_label": "real"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["review_status"] == "open"
    items = await run_sql(
        settings.database_url, "SELECT reasons, status FROM review_items WHERE sha256 = :s", s=sha
    )
    assert len(items) == 1
    reasons, status = items[0]
    assert "user_report" in (reasons if isinstance(reasons, list) else json.loads(reasons))
    assert status == "open"


async def test_concurrent_first_reports_on_one_image_all_land_in_one_review_item(
    client, settings
) -> None:
    # On PostgreSQL the first reports raced to create the review item: one of them was a 500.
    for _ in range(3):
        posted = await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})
        sha = posted.json()["sha256"]
        responses = await asyncio.gather(
            *(
                client.post("/v1/reports", json={"sha256": sha, "reason": f"report {i}"})
                for i in range(12)
            )
        )
        assert [r.status_code for r in responses] == [201] * 12, [r.text for r in responses]
        counts = await run_sql(
            settings.database_url,
            "SELECT (SELECT COUNT(*) FROM reports WHERE sha256 = :s),"
            " (SELECT COUNT(*) FROM review_items WHERE sha256 = :s AND status = 'open')",
            s=sha,
        )
        assert tuple(counts[0]) == (12, 1)


async def test_report_on_an_unknown_image_is_a_404_and_writes_nothing(client, settings) -> None:
    before = await count_rows(settings.database_url)
    response = await client.post("/v1/reports", json={"sha256": "ef" * 32, "reason": "wrong"})
    assert response.status_code == 404
    problem(response)
    assert await count_rows(settings.database_url) == before


async def test_report_with_an_invalid_suggested_label_is_a_422(client) -> None:
    sha = (await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})).json()[
        "sha256"
    ]
    response = await client.post(
        "/v1/reports", json={"sha256": sha, "reason": "x", "suggested_label": "banana"}
    )
    assert response.status_code == 422


async def test_a_review_decision_overrides_the_served_label_at_once(client) -> None:
    sha = (await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})).json()[
        "sha256"
    ]
    assert (await client.get(f"/v1/analyses/{sha}")).json()["review"] is None  # now cached
    async with client.app.state.db.write() as session:  # as the admin feature records one
        session.add(ReviewDecision(sha256=sha, label="real", note="checked with the photographer"))
    served = (await client.get(f"/v1/analyses/{sha}")).json()
    assert (served["label"], served["decided_by"]) == ("real", "review")
    assert served["review"]["label"] == "real"
    assert served["review"]["note"] == "checked with the photographer"
    looked_up = (await client.post("/v1/lookup", json={"sha256": [sha]})).json()["results"][sha]
    assert looked_up["decided_by"] == "review"


async def test_a_decision_written_by_another_process_shows_within_the_cache_ttl(
    settings: Settings,
) -> None:
    async with running(create_app(replace(settings, cache_ttl_s=0.3))) as client:
        posted = await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})
        sha = posted.json()["sha256"]
        await run_sql(
            settings.database_url,
            "INSERT INTO review_decisions (sha256, label, note, created_at) "
            "VALUES (:s, 'fake', NULL, CURRENT_TIMESTAMP)",
            s=sha,
        )
        await asyncio.sleep(0.4)
        served = (await client.get(f"/v1/analyses/{sha}")).json()
        assert (served["label"], served["decided_by"]) == ("fake", "review")


async def test_a_new_prompt_version_re_analyses_and_keeps_the_old_row(client, settings) -> None:
    data = unique_png()
    await client.post("/v1/analyze", files={"file": ("a.png", data)})
    client.app.state.model_host.prompt_version = "test-next-version"
    again = await client.post("/v1/analyze", files={"file": ("a.png", data)})
    assert again.headers["x-cache"] == "miss"
    assert again.json()["prompt_version"] == "test-next-version"
    rows = await count_rows(settings.database_url)
    assert rows["analyses"] == 2 and rows["images"] == 1


async def test_health_readiness_metrics_and_openapi_are_served(client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["mode"] == "provenance-only"
    for path in ("/healthz", "/readyz"):  # monitors probe with HEAD: a status, no body
        probed = await client.head(path)
        assert probed.status_code == 200 and probed.content == b""
    await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})
    metrics = (await client.get("/metrics")).text
    assert (
        'fakescope_http_requests_total{method="POST",route="/v1/analyze",status="200"} 1.0'
        in metrics
    )
    assert "fakescope_cache_lookups_total" in metrics and "fakescope_queue_depth" in metrics
    schema = (await client.get("/schema/openapi.json")).json()
    assert {"/v1/analyze", "/v1/lookup", "/v1/ask", "/v1/reports"} <= set(schema["paths"])


async def test_ask_in_provenance_only_mode_is_a_409_problem(client) -> None:
    sha = (await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})).json()[
        "sha256"
    ]
    response = await client.post("/v1/ask", json={"sha256": sha, "aspect": "texture"})
    assert response.status_code == 409
    assert "provenance-only" in problem(response)["detail"]


async def test_cors_allows_only_the_configured_origins(settings: Settings) -> None:
    origin = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
    app = create_app(replace(settings, cors_origins=(origin,)))
    async with running(app) as client:
        allowed = await client.options(
            "/v1/lookup", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert allowed.headers.get("access-control-allow-origin") == origin
        other = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_rate_limit_answers_429_problem(settings: Settings) -> None:
    async with running(create_app(replace(settings, rate_limit=("minute", 3)))) as client:
        codes = [(await client.get("/v1/analyses/" + "ab" * 32)).status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        limited = await client.get("/v1/analyses/" + "ab" * 32)
        problem(limited)
        assert (await client.get("/healthz")).status_code == 200


async def test_required_token_refuses_anonymous_requests(settings: Settings) -> None:
    secured = replace(settings, require_token=True, admin_token="bootstrap-secret-123")
    async with running(create_app(secured)) as client:
        anonymous = await client.post("/v1/lookup", json={"sha256": []})
        assert anonymous.status_code == 401
        problem(anonymous)
        wrong = await client.post(
            "/v1/lookup", json={"sha256": []}, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        ok = await client.post(
            "/v1/lookup",
            json={"sha256": []},
            headers={"Authorization": "Bearer bootstrap-secret-123"},
        )
        assert ok.status_code == 200


async def test_wrong_client_tokens_count_as_failed_attempts_like_the_admin_routes(
    settings: Settings,
) -> None:
    # The bootstrap admin token is accepted here too and may be short: guesses of it on the
    # public API are held to a failed-attempt limit, as on the admin routes, or they would be
    # a way around it. Past the limit the right guess is refused as the wrong ones are.
    secured = replace(settings, require_token=True, admin_token="bootstrap-secret-123")
    bootstrap = {"Authorization": "Bearer bootstrap-secret-123"}
    async with running(create_app(secured)) as client:
        created = await client.post("/v1/admin/tokens", json={"role": "client"}, headers=bootstrap)
        assert created.status_code == 201, created.text
        generated = {"Authorization": f"Bearer {created.json()['token']}"}
        guesses = [
            await client.post(
                "/v1/lookup", json={"sha256": []}, headers={"Authorization": f"Bearer guess-{i}"}
            )
            for i in range(11)
        ]
        assert [r.status_code for r in guesses] == [401] * 10 + [429]
        assert problem(guesses[-1])["type"].endswith(":auth-rate-limited")
        assert int(guesses[-1].headers["retry-after"]) > 0
        right = await client.post("/v1/lookup", json={"sha256": []}, headers=bootstrap)
        assert right.status_code == 429, right.text
        # Counted apart: clients with a stale token do not lock reviewers on their address
        # out of the review.
        assert (await client.get("/v1/admin/queue", headers=bootstrap)).status_code == 200
        # A generated token cannot be guessed: it is not held up.
        ok = await client.post("/v1/lookup", json={"sha256": []}, headers=generated)
        assert ok.status_code == 200, ok.text


async def test_server_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    )
    with pytest.raises(StartupFailed, match="fakescope db upgrade"):
        async with running(create_app(settings)):
            pass


async def test_unknown_routes_and_methods_are_problems_too(client) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    problem(missing)
    wrong_method = await client.delete("/v1/lookup")
    assert wrong_method.status_code == 405
    problem(wrong_method)


async def test_the_in_memory_rate_limit_says_when_to_retry(settings: Settings) -> None:
    async with running(create_app(replace(settings, rate_limit=("minute", 1)))) as client:
        assert (await client.get("/v1/analyses/" + "ab" * 32)).status_code == 404
        limited = await client.get("/v1/analyses/" + "ab" * 32)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "retry in" in problem(limited)["detail"]


async def test_requests_no_route_answers_are_counted_once_like_the_others(client) -> None:
    # 404 and 405 are refused before route middleware runs: they were missing from /metrics.
    await client.get("/v1/nothing-here")
    await client.put("/v1/analyze")
    await client.get("/v1/analyses/" + "ab" * 32)
    metrics = (await client.get("/metrics")).text
    assert 'fakescope_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in (
        metrics
    )
    assert 'fakescope_http_requests_total{method="PUT",route="unmatched",status="405"} 1.0' in (
        metrics
    )
    route = 'route="/v1/analyses/{sha256}",status="404"} 1.0'
    assert f'fakescope_http_requests_total{{method="GET",{route}' in metrics


async def test_made_up_methods_add_no_series_to_the_metrics(client) -> None:
    # Counted around the router, every made-up method of a 404/405 was a new series, kept
    # for good: a client could grow the registry (and each scrape) without bound.
    for n in range(3):
        await client.request(f"FAKE{n}", "/v1/nothing-here")
    metrics = (await client.get("/metrics")).text
    assert 'method="FAKE' not in metrics
    assert 'fakescope_http_requests_total{method="OTHER",route="unmatched",' in metrics


async def test_metrics_name_their_charset_once(client) -> None:
    response = await client.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_a_database_outage_is_a_503_to_retry_and_other_database_errors_a_500(
    client, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = (await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})).json()[
        "sha256"
    ]
    service = client.app.state.analysis_service
    service.served.invalidate(sha)  # the next read goes to the database

    async def refused(_: list[str]) -> dict[str, Any]:
        raise OperationalError("SELECT ...", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(service._reads, "_fetch", refused)
    down = await client.get(f"/v1/analyses/{sha}")
    body = problem(down)
    assert down.status_code == 503 and down.headers["retry-after"] == "2"
    assert body["type"].endswith(":database-unavailable")

    async def broken(_: list[str]) -> dict[str, Any]:
        raise ProgrammingError("SELECT ...", {}, Exception("column does not exist"))

    monkeypatch.setattr(service._reads, "_fetch", broken)
    bug = await client.get(f"/v1/analyses/{sha}")
    assert bug.status_code == 500 and problem(bug)["type"].endswith(":internal-error")


class NulAnswers:
    """The tiny model, except that every answer holds a NUL character, as a model that
    decodes a NUL byte token writes it (PostgreSQL text columns refuse NUL)."""

    def __init__(self, model: Any) -> None:
        self.inner = model
        self.info = model.info
        self.decodes_continuously = False

    def generate_batch(
        self, images: Any, prompts: Any, *, max_new_tokens: int, **streaming: Any
    ) -> list[str]:
        answers = ["looks\x00 generated" for _ in images]
        on_text = streaming.get("on_text")
        for row, answer in enumerate(answers):
            if on_text is not None:
                on_text(row, answer)
        return answers

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_generated_nul_characters_never_fail_storing_the_answer(
    settings: Settings, tiny_model: Any
) -> None:
    app = create_app(
        replace(settings, max_new_tokens=8), model_loader=lambda: NulAnswers(tiny_model)
    )
    async with running(app) as client:
        await wait_until_ready(client)
        analysed = await client.post(
            "/v1/analyze?explain=true", files={"file": ("a.png", unique_png())}
        )
        assert analysed.status_code == 200, analysed.text
        assert analysed.json()["explanation"] == "looks generated"
        sha = analysed.json()["sha256"]
        asked = await client.post("/v1/ask", json={"sha256": sha, "aspect": "texture"})
        assert asked.status_code == 200, asked.text
        assert asked.json()["answer"] == "looks generated"
        streamed = await client.post(
            "/v1/ask",
            json={"sha256": sha, "question": "why?"},
            headers={"Accept": "text/event-stream"},
        )
        events = [parse_event(block) for block in streamed.text.split("\n\n") if block.strip()]
        assert events[-1] == ("done", events[-1][1])
        assert events[-1][1]["answer"] == "looks generated"
        assert (await client.get(f"/v1/analyses/{sha}")).json()["explanation"] == "looks generated"
    answers = await run_sql(settings.database_url, "SELECT answer FROM answers")
    assert sorted(a for (a,) in answers) == ["looks generated", "looks generated"]


async def test_ask_streams_only_when_the_client_accepts_an_event_stream(
    sqlite_url: str, tmp_path: Path, tiny_model: Any
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None, max_new_tokens=4
    )
    async with running(create_app(settings, model_loader=lambda: tiny_model)) as client:
        await wait_until_ready(client)
        sha = (await client.post("/v1/analyze", files={"file": ("a.png", unique_png())})).json()[
            "sha256"
        ]
        ask = {"sha256": sha, "aspect": "edge"}
        for accept, streams in [
            ("text/event-stream", True),
            ("application/json, text/event-stream;q=0.5", True),
            ("text/event-stream;q=0, application/json", False),
            ("TEXT/EVENT-STREAM; Q=0.0", False),
            ("*/*", False),
        ]:
            response = await client.post("/v1/ask", json=ask, headers={"Accept": accept})
            assert response.status_code == 200, (accept, response.text)
            media = response.headers["content-type"].split(";")[0]
            assert media == ("text/event-stream" if streams else "application/json"), accept
