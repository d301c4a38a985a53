"""POST /v1/lookup: exact SHA-256 hits plus PDQ near-duplicates reported as hints."""

from __future__ import annotations

import re
from typing import Any

from litestar import Controller, Request, Response, post

from server.analyze.service import AnalysisService
from server.lookup.live_index import LivePdqIndex
from server.openapi_docs.operations import LookupOperation
from server.openapi_docs.responses import BODY_PROBLEMS, LookupResult, responses, success
from server.problems import ProblemError
from server.requests import json_object, sha256_key

MAX_KEYS = 500
PDQ_RE = re.compile(r"[0-9a-fA-F]{64}")
JSON_BODY_LIMIT = 1024 * 1024


def _key_list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProblemError(422, f"{name} must be a list of hex strings")
    return value


def _pdq_key(value: Any) -> str:
    if not isinstance(value, str) or not PDQ_RE.fullmatch(value):
        raise ProblemError(422, "pdq entries must be 64 hexadecimal characters")
    return value.lower()


class LookupController(Controller):
    path = "/v1"
    tags = ["analyses"]

    @post(
        "/lookup",
        status_code=200,
        request_max_body_size=JSON_BODY_LIMIT,
        summary="Cached analyses for up to 500 keys (sha256 exact, pdq near-duplicates)",
        description=(
            'Body: {"sha256": [...], "pdq": [...]} with at most 500 keys in total. Returns '
            '{"results": {sha256: analysis}, "near": [{"pdq", "sha256", "distance"}]}. '
            "Near matches are hints (a re-encoded copy may be a different image); they are "
            "never reported as that image's verdict. Never runs the model."
        ),
        operation_class=LookupOperation,
        responses=responses(
            200,
            success(LookupResult, "Cached results (`X-Cache: hit` when every sha256 was found)"),
            {
                **BODY_PROBLEMS,
                422: "Not a JSON object, keys that are not lists of 64 hex digits, or more than "
                f"{MAX_KEYS} keys (`too-many-keys`)",
                503: "The model is loading (`loading`) or failed to load (`model-failed`) and "
                "the checkpoint's cache identity is unknown",
            },
        ),
    )
    async def lookup(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await json_object(request)
        raw_shas, raw_pdqs = _key_list(body, "sha256"), _key_list(body, "pdq")
        if len(raw_shas) + len(raw_pdqs) > MAX_KEYS:
            raise ProblemError(
                422,
                f"{len(raw_shas) + len(raw_pdqs)} keys asked for; at most {MAX_KEYS} per request",
                code="too-many-keys",
            )
        shas = list(dict.fromkeys(sha256_key(v) for v in raw_shas))
        pdqs = list(dict.fromkeys(_pdq_key(v) for v in raw_pdqs))
        service: AnalysisService = request.app.state.analysis_service
        service.require_cached_reads()
        results = await service.cached_many(shas)
        pdq_index: LivePdqIndex = request.app.state.pdq_index
        near = await pdq_index.search(pdqs, max_distance=service.settings.pdq_max_distance)
        hits = len(results)
        service.metrics.cache_result("lookup", hit=True, count=hits)
        service.metrics.cache_result("lookup", hit=False, count=len(shas) - hits)
        return Response(
            {"results": results, "near": [m.to_dict() for m in near]},
            headers={"X-Cache": "hit" if shas and hits == len(shas) else "miss"},
        )
