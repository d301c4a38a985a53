"""Every admin route demands a valid token of a high enough role, and guessing is rate limited."""

from __future__ import annotations

from dataclasses import replace

import pytest
from admin_helpers import Tokens, analysed_image, bearer, problem
from litestar.testing import AsyncTestClient
from test_review_page import sign_in

from server.app import create_app
from server.limits.failed_auth import DEFAULT_MAX_FAILURES
from server.settings import Settings

SHA = "ab" * 32
REVIEWER_ROUTES = [
    ("GET", "/v1/admin/queue", None),
    ("GET", f"/v1/admin/items/{SHA}", None),
    ("POST", f"/v1/admin/items/{SHA}/decision", {"label": "fake", "note": "x"}),
    ("GET", "/v1/admin/audit", None),
    ("GET", "/v1/admin/export", None),
]
ADMIN_ROUTES = [
    ("GET", "/v1/admin/sessions", None),
    ("DELETE", "/v1/admin/sessions/1", None),
    ("GET", "/v1/admin/tokens", None),
    ("POST", "/v1/admin/tokens", {"role": "client", "name": "x"}),
    ("DELETE", "/v1/admin/tokens/1", None),
]
ALL_ROUTES = REVIEWER_ROUTES + ADMIN_ROUTES


async def _call(client, method: str, path: str, body, headers=None):
    return await client.request(method, path, json=body, headers=headers or {})


async def test_every_admin_route_refuses_a_request_without_a_token(client) -> None:
    for method, path, body in ALL_ROUTES:
        response = await _call(client, method, path, body)
        problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer"), path


async def test_every_admin_route_refuses_a_wrong_token(client, tokens: Tokens) -> None:
    for method, path, body in ALL_ROUTES:
        wrong = tokens.admin[:-4] + "AAAA"
        problem(await _call(client, method, path, body, bearer(wrong)), 401)
    problem(await _call(client, "GET", "/v1/admin/queue", None, {"Authorization": "Basic x"}), 401)


async def test_every_admin_route_refuses_a_revoked_token(client, tokens: Tokens) -> None:
    for method, path, body in ALL_ROUTES:
        body_ = problem(await _call(client, method, path, body, bearer(tokens.revoked_admin)), 401)
        assert "revoked" in body_["detail"]


async def test_a_client_token_is_forbidden_on_every_admin_route(client, tokens: Tokens) -> None:
    for method, path, body in ALL_ROUTES:
        detail = problem(await _call(client, method, path, body, bearer(tokens.client)), 403)
        assert "client" in detail["detail"]


async def test_a_reviewer_may_review_read_the_audit_log_and_export_but_not_manage_access(
    client, tokens: Tokens
) -> None:
    for method, path, body in ADMIN_ROUTES:
        problem(await _call(client, method, path, body, bearer(tokens.reviewer)), 403)
    queue = await client.get("/v1/admin/queue", headers=bearer(tokens.reviewer))
    assert queue.status_code == 200
    sha = await analysed_image(client)
    item = await client.get(f"/v1/admin/items/{sha}", headers=bearer(tokens.reviewer))
    assert item.status_code == 200 and item.json()["sha256"] == sha
    export = await client.get("/v1/admin/export", headers=bearer(tokens.reviewer))
    assert export.status_code == 200
    # The reviewer's export is in the audit log the reviewer can read, under the reviewer's name.
    audit = await client.get(
        "/v1/admin/audit", params={"action": "review.export"}, headers=bearer(tokens.reviewer)
    )
    assert audit.status_code == 200
    [entry] = audit.json()["entries"]
    assert entry["actor"].startswith(tokens.reviewer_name), entry


async def test_an_admin_token_passes_every_guard(client, tokens: Tokens) -> None:
    for method, path, body in ALL_ROUTES:
        response = await _call(client, method, path, body, bearer(tokens.admin))
        # Past the guard the route itself answers: unknown item 404, otherwise success.
        assert response.status_code in {200, 201, 404}, (path, response.text)


async def test_repeated_wrong_tokens_from_one_address_are_refused_with_429(
    client, tokens: Tokens
) -> None:
    for _ in range(10):
        problem(await client.get("/v1/admin/queue", headers=bearer("fs_guess")), 401)
    limited = await client.get("/v1/admin/queue", headers=bearer("fs_guess"))
    problem(limited, 429)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # While blocked, even a good token is refused: the limit is on the address, not the token.
    problem(await client.get("/v1/admin/queue", headers=bearer(tokens.admin)), 429)


async def test_missing_tokens_and_valid_lower_roles_do_not_count_as_failed_attempts(
    client, tokens: Tokens
) -> None:
    for _ in range(12):
        problem(await client.get("/v1/admin/queue"), 401)
        problem(await client.get("/v1/admin/tokens", headers=bearer(tokens.reviewer)), 403)
    assert (await client.get("/v1/admin/queue", headers=bearer(tokens.admin))).status_code == 200


async def test_the_bootstrap_admin_token_from_settings_is_an_admin(
    settings: Settings, tokens: Tokens
) -> None:
    bootstrap = "bootstrap-secret-for-tests-0123456789"
    app = create_app(replace(settings, admin_token=bootstrap))
    async with AsyncTestClient(app=app) as client:
        created = await client.post(
            "/v1/admin/tokens", json={"role": "reviewer", "name": "new"}, headers=bearer(bootstrap)
        )
        assert created.status_code == 201, created.text
        audit = (await client.get("/v1/admin/audit", headers=bearer(bootstrap))).json()
        assert audit["entries"][0]["action"] == "token.create"
        assert "FAKESCOPE_ADMIN_TOKEN" in audit["entries"][0]["actor"]
        problem(await client.get("/v1/admin/audit", headers=bearer(bootstrap + "x")), 401)
        # Its decisions name it wherever the verdict is served.
        sha = await analysed_image(client)
        decided = await client.post(
            f"/v1/admin/items/{sha}/decision", json={"label": "fake"}, headers=bearer(bootstrap)
        )
        assert decided.status_code == 201, decided.text
        served = (await client.get(f"/v1/analyses/{sha}")).json()
        assert served["decided_by"] == "review"
        assert served["review"]["reviewer"] == "bootstrap admin"


@pytest.mark.parametrize("limits_store", ["memory", "database"])
async def test_reviewers_are_not_held_to_the_public_limit_of_their_address(
    settings: Settings, tokens: Tokens, limits_store: str
) -> None:
    # A busy public client on the reviewer's address (an office, a proxy) used up its limit.
    limited = replace(settings, rate_limit=("minute", 8), limits_store=limits_store)
    bootstrap = "bootstrap-secret-for-tests-0123456789"
    app = create_app(replace(limited, admin_token=bootstrap))
    async with AsyncTestClient(app=app) as client:
        for _ in range(8):
            assert (await client.get(f"/v1/analyses/{SHA}")).status_code == 404
        problem(await client.get(f"/v1/analyses/{SHA}"), 429)
        # Reviewers and admins at work go on, through the API and on the page.
        for secret in (tokens.reviewer, tokens.admin, bootstrap):
            assert (await client.get("/v1/admin/queue", headers=bearer(secret))).status_code == 200
        signed_in = await sign_in(client, tokens.reviewer)  # the sign-in is never counted
        assert signed_in.status_code == 303, signed_in.text
        item_page = await client.get(f"/admin/items/{SHA}")
        assert item_page.status_code == 404 and "No image with this SHA-256" in item_page.text
        # Everyone else is still counted there: no token, a wrong, revoked or client token.
        client.cookies.clear()
        problem(await client.get("/v1/admin/queue"), 429)
        for secret in ("fs_guess", tokens.revoked_admin, tokens.client):
            problem(await client.get("/v1/admin/queue", headers=bearer(secret)), 429)
        assert (await client.get(f"/admin/items/{SHA}")).status_code == 429
        problem(await client.get(f"/v1/analyses/{SHA}", headers=bearer(tokens.admin)), 429)
        # The sign-in form is not counted; with a session cookie, which costs a lookup, it
        # is checked like any request: a made-up one is counted.
        assert (await client.get("/admin")).status_code == 200
        made_up = {"Cookie": "fakescope_admin_session=made-up-session-secret"}
        assert (await client.get("/admin", headers=made_up)).status_code == 429


@pytest.mark.parametrize("limits_store", ["memory", "database"])
async def test_the_reviewer_exemption_is_no_way_around_the_failed_attempt_limit(
    settings: Settings, tokens: Tokens, limits_store: str
) -> None:
    # Whether a request was exempt from the public limit (200, or 429 without RateLimit
    # headers) told a guesser, past both limits, that it had found the bootstrap token.
    bootstrap = "short-bootstrap"
    limited = replace(settings, rate_limit=("minute", 3), limits_store=limits_store)
    app = create_app(replace(limited, admin_token=bootstrap))
    async with AsyncTestClient(app=app) as client:
        for _ in range(3):
            assert (await client.get(f"/v1/analyses/{SHA}")).status_code == 404
        for n in range(DEFAULT_MAX_FAILURES):  # each refused by the public limit...
            problem(await client.get("/v1/admin/queue", headers=bearer(f"guess-{n}")), 429)
        # ...and counted as a failed attempt: the right guess now looks like a wrong one.
        found = await client.get("/v1/admin/queue", headers=bearer(bootstrap))
        assert (
            problem(found, 429)["type"]
            == problem(await client.get("/v1/admin/queue", headers=bearer("guess")), 429)["type"]
        )


async def test_a_wrong_token_counts_once_though_the_exemption_checks_it_too(
    settings: Settings, tokens: Tokens
) -> None:
    app = create_app(replace(settings, rate_limit=("minute", 1000)))
    async with AsyncTestClient(app=app) as client:
        for n in range(DEFAULT_MAX_FAILURES - 1):
            problem(await client.get("/v1/admin/queue", headers=bearer(f"guess-{n}")), 401)
        ok = await client.get("/v1/admin/queue", headers=bearer(tokens.reviewer))
        assert ok.status_code == 200, ok.text
