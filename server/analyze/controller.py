"""HTTP for analyses: upload or URL in, the verdict out; cached verdicts by SHA-256."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State, UploadFile
from litestar.params import FromPath, FromQuery

from server.analyze.service import AnalysisService
from server.net.ssrf import (
    GuardedFetcher,
    UrlFetchError,
    UrlRefusedError,
    UrlTimeoutError,
    UrlTooLargeError,
)
from server.problems import ProblemError
from server.requests import json_object, media_type, parse_bool, sha256_key

MULTIPART_OVERHEAD = 64 * 1024


def _service(state: State) -> AnalysisService:
    service: AnalysisService = state.analysis_service
    return service


async def _fetch(fetcher: GuardedFetcher, url: Any) -> bytes:
    if not isinstance(url, str) or not url.strip():
        raise ProblemError(422, 'JSON bodies must carry "url": "https://..."')
    try:
        return await fetcher.fetch(url.strip())
    except UrlRefusedError as exc:
        raise ProblemError(422, f"URL refused: {exc}", code="url-refused") from exc
    except UrlTooLargeError as exc:
        raise ProblemError(413, str(exc), code="image-too-large") from exc
    except UrlTimeoutError as exc:
        raise ProblemError(504, str(exc), code="url-timeout") from exc
    except UrlFetchError as exc:
        raise ProblemError(502, str(exc), code="url-fetch-failed") from exc


async def _multipart_file(request: Request[Any, Any, Any]) -> tuple[bytes, Any]:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ProblemError(422, 'multipart requests must carry the image in a field named "file"')
    try:
        return await upload.read(), form.get("explain")
    finally:
        await upload.close()


def analysis_response(analysis: dict[str, Any], cache_hit: bool) -> Response[dict[str, Any]]:
    return Response(analysis, headers={"X-Cache": "hit" if cache_hit else "miss"})


class AnalyzeController(Controller):
    """Handlers read `request.app.state`: a `state: State` parameter is a copy per request."""

    path = "/v1"
    tags = ["analyses"]

    @post(
        "/analyze",
        status_code=200,
        summary='Analyse an image (multipart `file`, or JSON {"url": ...})',
        description=(
            "Returns the analysis: label, p_fake, decided_by, evidence, explanation, model. "
            "Send `multipart/form-data` with the image in field `file`, or JSON "
            '`{"url": "https://...", "explain": false}`. `explain` may also be a query '
            "parameter or a form field. Cached results carry `X-Cache: hit`. Without a model "
            'configured the server runs in provenance-only mode (`"mode": "provenance-only"`).'
        ),
        responses=None,
    )
    async def analyze(
        self,
        request: Request[Any, Any, Any],
        explain: FromQuery[bool | None] = None,
    ) -> Response[dict[str, Any]]:
        state = request.app.state
        kind = media_type(request)
        if kind == "multipart/form-data":
            data, form_explain = await _multipart_file(request)
        elif kind == "application/json":
            body = await json_object(request)
            data = await _fetch(state.fetcher, body.get("url"))
            form_explain = body.get("explain")
        else:
            raise ProblemError(
                415,
                "send multipart/form-data with a `file` field, or application/json with `url`; "
                f"got {kind or 'no content type'}",
            )
        want_explain = explain if explain is not None else parse_bool(form_explain, "explain")
        result = await _service(state).analyze(data, explain=want_explain)
        return analysis_response(result.analysis, result.cache_hit)

    @get("/analyses/{sha256:str}", summary="A cached analysis by the image's SHA-256, or 404")
    async def get_analysis(
        self, request: Request[Any, Any, Any], sha256: FromPath[str]
    ) -> Response[dict[str, Any]]:
        service = _service(request.app.state)
        service.require_ready()
        found = await service.cached(sha256_key(sha256))
        service.metrics.cache_result("analyses", hit=found is not None)
        if found is None:
            raise ProblemError(404, "no analysis of this image under the current model and prompts")
        return analysis_response(found, cache_hit=True)
