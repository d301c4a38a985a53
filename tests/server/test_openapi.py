"""The OpenAPI schema documents the hand-parsed request bodies and the problem answers.

The schema is fetched from the running app, checked against the OpenAPI 3.1 specification,
and real answers of the app are validated against the shapes it documents.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from server_helpers import AppClient, problem, running, unique_png

from fakescope.prompts import ASPECTS
from server.app import create_app
from server.lookup.controller import MAX_KEYS
from server.openapi_docs import bodies
from server.reports.controller import MAX_TEXT
from server.settings import Settings

PROBLEM = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
PUBLIC = {
    ("post", "/v1/analyze"),
    ("get", "/v1/analyses/{sha256}"),
    ("post", "/v1/lookup"),
    ("post", "/v1/ask"),
    ("post", "/v1/reports"),
}
SHA = "ab" * 32


@pytest.fixture
async def client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[AppClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None)
    async with running(create_app(settings)) as test_client:
        yield test_client


async def openapi(client: AppClient) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    """A JSON Schema 2020-12 validator of `schema`, its $refs resolved in `document`."""
    root = {**schema, "components": document["components"]}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


def component(document: dict[str, Any], name: str) -> jsonschema.Validator:
    return validator(document, {"$ref": f"#/components/schemas/{name}"})


def body_schema(document: dict[str, Any], method: str, path: str, kind: str) -> dict[str, Any]:
    body = document["paths"][path][method]["requestBody"]
    assert body["required"] is True
    schema: dict[str, Any] = body["content"][kind]["schema"]
    return schema


def v1_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


async def test_the_schema_is_a_valid_openapi_3_1_document(client: AppClient) -> None:
    document = await openapi(client)
    assert document["openapi"].startswith("3.1")
    validate_openapi(document)  # raises OpenAPIValidationError with the path of the fault


async def test_problem_component_has_the_rfc_9457_members(client: AppClient) -> None:
    schemas = (await openapi(client))["components"]["schemas"]
    problem_schema = schemas["Problem"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem_schema["properties"])
    assert set(problem_schema["required"]) == {"type", "title", "status", "detail"}
    assert problem_schema.get("additionalProperties", True) is not False  # extra members
    assert {"Analysis", "LookupResult", "Answer", "ReportCreated"} <= set(schemas)


async def test_every_v1_error_is_a_documented_problem_with_retry_after_where_due(
    client: AppClient,
) -> None:
    document = await openapi(client)
    operations = v1_operations(document)
    assert {(method, path) for method, path, _ in operations} >= PUBLIC
    for method, path, operation in operations:
        responses = operation["responses"]
        errors = {code: r for code, r in responses.items() if code[0] in "45" or code == "default"}
        # Token and session routes take no body or query to refuse (ids are path integers).
        no_input = path.startswith(("/v1/admin/tokens", "/v1/admin/sessions"))
        assert {"422", "429", "default"} <= set(errors) or no_input
        for code, response in errors.items():
            where = f"{method.upper()} {path} {code}"
            assert set(response["content"]) == {PROBLEM}, where
            assert response["content"][PROBLEM]["schema"] == {"$ref": PROBLEM_REF}, where
            assert response["description"], where
            if code in ("429", "503"):
                assert response["headers"]["Retry-After"]["schema"]["type"] == "integer", where
        # Litestar's default validation answer (400, application/json) is not what is sent.
        assert all("status_code" not in str(r.get("content", "")) for r in responses.values()), (
            f"{method} {path}"
        )


async def test_public_routes_document_their_problems(client: AppClient) -> None:
    paths = (await openapi(client))["paths"]

    def codes(method: str, path: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"200", "400", "413", "415", "422", "429", "502", "503", "504"} <= codes(
        "post", "/v1/analyze"
    )
    assert {"200", "404", "422", "429", "503"} <= codes("get", "/v1/analyses/{sha256}")
    assert {"200", "400", "413", "415", "422", "429", "503"} <= codes("post", "/v1/lookup")
    assert {"200", "400", "404", "409", "413", "415", "422", "429", "503"} <= codes(
        "post", "/v1/ask"
    )
    assert {"201", "400", "404", "413", "415", "422", "429", "503"} <= codes("post", "/v1/reports")
    admin = paths["/v1/admin/items/{sha256}/decision"]["post"]
    assert {"401", "403", "404", "409", "422", "503"} <= set(admin["responses"])
    # Every route that touches the database says it may be unreachable, beside its own 503s.
    for method, path in (("post", "/v1/analyze"), ("get", "/v1/admin/queue")):
        assert "database-unavailable" in paths[path][method]["responses"]["503"]["description"]
    assert "overloaded" in paths["/v1/analyze"]["post"]["responses"]["503"]["description"]
    assert {"200", "503"} <= codes("get", "/readyz") and {"200", "503"} <= codes("head", "/readyz")
    assert admin["security"] == [{"bearer": []}]


async def test_every_route_with_a_body_documents_its_size_and_time_limits(
    client: AppClient,
) -> None:
    # Every body is read by the app's request class: past its limit a 413, not complete
    # within the request timeout a 408 `body-timeout` (server/requests.py).
    operations = v1_operations(await openapi(client))
    with_body = [(m, p, op) for m, p, op in operations if "requestBody" in op]
    assert len(with_body) >= 6
    for method, path, operation in with_body:
        responses = operation["responses"]
        assert {"408", "413"} <= set(responses), f"{method.upper()} {path}"
        assert "body-timeout" in responses["408"]["description"], f"{method.upper()} {path}"


async def test_analyze_documents_multipart_and_json_bodies_and_the_explain_query(
    client: AppClient,
) -> None:
    document = await openapi(client)
    operation = document["paths"]["/v1/analyze"]["post"]
    assert set(operation["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    form = body_schema(document, "post", "/v1/analyze", "multipart/form-data")
    assert form["required"] == ["file"]
    assert form["properties"]["file"]["format"] == "binary"
    assert "explain" in form["properties"]
    url_body = validator(document, body_schema(document, "post", "/v1/analyze", "application/json"))
    assert url_body.is_valid({"url": "https://example.com/a.png", "explain": True})
    assert url_body.is_valid({"url": "https://example.com/a.png", "explain": "yes"})
    assert not url_body.is_valid({"explain": True})
    explain = [p for p in operation["parameters"] if p["name"] == "explain"]
    assert explain and explain[0]["in"] == "query"
    ok = operation["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Analysis"}
    assert ok["headers"]["X-Cache"]["schema"]["enum"] == ["hit", "miss"]


async def test_lookup_ask_and_report_bodies_are_described(client: AppClient) -> None:
    document = await openapi(client)
    assert bodies.MAX_LOOKUP_KEYS == MAX_KEYS
    assert bodies.MAX_REPORT_TEXT == MAX_TEXT

    lookup = body_schema(document, "post", "/v1/lookup", "application/json")
    assert lookup["properties"]["sha256"]["maxItems"] == MAX_KEYS
    check = validator(document, lookup)
    assert check.is_valid({"sha256": [SHA], "pdq": ["0" * 64]})
    assert not check.is_valid({"sha256": ["not hex"]})

    ask = body_schema(document, "post", "/v1/ask", "application/json")
    assert ask["properties"]["aspect"]["enum"] == list(ASPECTS) and len(ASPECTS) == 14
    check = validator(document, ask)
    assert check.is_valid({"sha256": SHA, "aspect": "texture"})
    assert check.is_valid({"sha256": SHA, "question": "Is the lighting consistent?"})
    assert check.is_valid({"sha256": SHA, "enhance": True})
    assert check.is_valid({"sha256": SHA, "aspect": "edge", "enhance": False})
    assert not check.is_valid({"sha256": SHA})
    assert not check.is_valid({"sha256": SHA, "aspect": "texture", "question": "why?"})
    assert not check.is_valid({"sha256": SHA, "aspect": "colour"})
    ask_ok = document["paths"]["/v1/ask"]["post"]["responses"]["200"]["content"]
    assert set(ask_ok) == {"application/json", "text/event-stream"}
    assert "text/event-stream" in document["paths"]["/v1/ask"]["post"]["requestBody"]["description"]

    report = body_schema(document, "post", "/v1/reports", "application/json")
    assert set(report["required"]) == {"sha256", "reason"}
    check = validator(document, report)
    assert check.is_valid({"sha256": SHA, "reason": "mine", "suggested_label": "real"})
    assert check.is_valid({"sha256": SHA, "reason": "mine", "suggested_label": None, "note": "x"})
    assert not check.is_valid({"sha256": SHA, "reason": "mine", "suggested_label": "maybe"})


async def test_real_answers_match_their_documented_schemas(client: AppClient) -> None:
    document = await openapi(client)
    problem_schema = component(document, "Problem")

    refused = await client.post(
        "/v1/analyze", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert refused.status_code == 415
    assert "415" in document["paths"]["/v1/analyze"]["post"]["responses"]
    problem_schema.validate(problem(refused))

    too_many = await client.post("/v1/lookup", json={"sha256": [SHA] * (MAX_KEYS + 1)})
    assert too_many.status_code == 422
    problem_schema.validate(problem(too_many))

    missing = await client.get(f"/v1/analyses/{SHA}")
    assert missing.status_code == 404
    problem_schema.validate(problem(missing))

    analysed = await client.post(
        "/v1/analyze", files={"file": ("a.png", unique_png(), "image/png")}
    )
    assert analysed.status_code == 200, analysed.text
    component(document, "Analysis").validate(analysed.json())
    sha = analysed.json()["sha256"]

    found = await client.post("/v1/lookup", json={"sha256": [sha], "pdq": []})
    component(document, "LookupResult").validate(found.json())

    report = await client.post("/v1/reports", json={"sha256": sha, "reason": "it is mine"})
    assert report.status_code == 201, report.text
    component(document, "ReportCreated").validate(report.json())


async def test_a_429_answer_matches_its_documented_problem(sqlite_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=("minute", 1)
    )
    async with running(create_app(settings)) as client:
        document = await openapi(client)  # /schema is not rate limited
        responses = [await client.post("/v1/lookup", json={"sha256": []}) for _ in range(2)]
    limited = responses[-1]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 0
    documented = document["paths"]["/v1/lookup"]["post"]["responses"]["429"]
    assert "Retry-After" in documented["headers"]
    component(document, "Problem").validate(problem(limited))


async def test_an_options_answer_allows_every_documented_method_of_its_path(
    sqlite_url: str, tmp_path: Path
) -> None:
    # Litestar's OPTIONS handler listed the methods a path had when first registered:
    # `OPTIONS /v1/admin/tokens` said `OPTIONS, POST`, `/healthz` left out HEAD.
    admin = "options-admin-secret"
    settings = Settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None, admin_token=admin
    )
    async with running(create_app(settings)) as client:
        document = await openapi(client)
        for path, item in document["paths"].items():
            documented = {method.upper() for method in item if method != "parameters"}
            target = path.replace("{sha256}", SHA).replace("{session_id}", "1")
            target = target.replace("{token_id}", "1")
            answer = await client.options(target, headers={"Authorization": f"Bearer {admin}"})
            assert answer.status_code == 204, (path, answer.text)
            allowed = {m.strip() for m in answer.headers["allow"].split(",")}
            assert allowed == documented | {"OPTIONS"}, path


def parameter_schema(document: dict[str, Any], path: str, name: str) -> jsonschema.Validator:
    parameters = document["paths"][path]["get"]["parameters"]
    return validator(document, next(p["schema"] for p in parameters if p["name"] == name))


# Requests the server refuses (422) that the schema called valid, found by fuzzing the API
# with schemathesis (scripts/fuzz_api.sh): the schema now says what the server checks.
REFUSED_BODIES = [
    ("/v1/reports", {"sha256": SHA, "reason": "wrong\x00verdict"}),
    ("/v1/reports", {"sha256": SHA, "reason": "wrong", "note": "\x00"}),
    ("/v1/ask", {"sha256": SHA, "question": "why\x00"}),
    ("/v1/ask", {"sha256": SHA, "enhance": ""}),
    ("/v1/ask", {"sha256": SHA, "enhance": "off"}),
    ("/v1/ask", {"sha256": SHA, "aspect": "texture", "enhance": "maybe"}),
]
REFUSED_FILTERS = [
    ("/v1/admin/audit", "action", "Token.Create"),
    ("/v1/admin/queue", "reason", ""),
    ("/v1/admin/queue", "status", "closed"),
    ("/v1/admin/queue", "cursor", "zz"),
    ("/v1/admin/queue", "min_age_hours", -1),
]
ACCEPTED_FILTERS = [
    ("/v1/admin/audit", "sha256", ""),
    ("/v1/admin/audit", "action", ""),
    ("/v1/admin/queue", "cursor", ""),
    ("/v1/admin/queue", "min_age_hours", 0),
]


async def test_what_the_server_refuses_as_422_its_schema_refuses_too(
    sqlite_url: str, tmp_path: Path
) -> None:
    admin = "schema-admin-secret"
    settings = Settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None, admin_token=admin
    )
    headers = {"Authorization": f"Bearer {admin}"}
    async with running(create_app(settings)) as client:
        document = await openapi(client)
        for path, body in REFUSED_BODIES:
            answer = await client.post(path, json=body)
            assert answer.status_code == 422, (path, body, answer.text)
            schema = validator(document, body_schema(document, "post", path, "application/json"))
            assert not schema.is_valid(body), (path, body)
        ask = validator(document, body_schema(document, "post", "/v1/ask", "application/json"))
        assert ask.is_valid({"sha256": SHA, "enhance": " YES "})
        assert ask.is_valid({"sha256": SHA, "aspect": "texture", "enhance": "false"})
        for path, name, value in REFUSED_FILTERS:
            answer = await client.get(path, params={name: value}, headers=headers)
            assert answer.status_code == 422, (path, name, value, answer.text)
            assert not parameter_schema(document, path, name).is_valid(value), (path, name)
        for path, name, value in ACCEPTED_FILTERS:
            answer = await client.get(path, params={name: value}, headers=headers)
            assert answer.status_code == 200, (path, name, value, answer.text)
            assert parameter_schema(document, path, name).is_valid(value), (path, name)
