"""HTTP for analyses: upload or URL in, the verdict out; cached verdicts by SHA-256."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, head, post
from litestar.datastructures import FormMultiDict, State, UploadFile
from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, Parameter
from litestar.serialization import encode_json

from server.analyze.service import AnalysisService, answered_when_cancelled
from server.net.ssrf import (
    GuardedFetcher,
    UrlFetchError,
    UrlRefusedError,
    UrlTimeoutError,
    UrlTooLargeError,
)
from server.openapi_docs.operations import AnalyzeOperation, CachedOperation
from server.openapi_docs.responses import BODY_TIMEOUT, Analysis, responses, success
from server.problems import ProblemError
from server.requests import is_json, json_object, media_type, parse_bool, sha256_key

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


async def _form(request: Request[Any, Any, Any]) -> FormMultiDict:
    try:
        return await request.form()
    except (UnicodeDecodeError, LookupError) as exc:
        # A part without a filename is a text field, decoded by its charset (UTF-8 by default).
        raise ProblemError(
            422,
            "a multipart text field is not text in its charset; send the image as a file part "
            '(Content-Disposition: form-data; name="file"; filename="...")',
        ) from exc
    except RequestEntityTooLarge as exc:  # the body is over the route's size limit
        limit = request.app.state.settings.max_upload_bytes
        raise ProblemError(
            413,
            f"the upload is over this server's limit of {limit} bytes per image",
            code="image-too-large",
        ) from exc
    except ClientException as exc:
        if exc.detail == "Request Entity Too Large":  # Litestar's multipart parser limits
            raise ProblemError(
                413,
                "the multipart body has too many parts or too long a part header",
                code="multipart-too-large",
            ) from exc
        raise


async def _multipart_file(request: Request[Any, Any, Any]) -> tuple[bytes, Any]:
    form = await _form(request)
    try:
        uploads = form.getall("file", [])
        if len(uploads) > 1:
            raise ProblemError(422, f'send one image per request; got {len(uploads)} "file" parts')
        if not uploads or not isinstance(uploads[0], UploadFile):
            raise ProblemError(
                422, 'multipart requests must carry the image in a file field named "file"'
            )
        explain = form.getall("explain", [])
        if len(explain) > 1 or any(isinstance(v, UploadFile) for v in explain):
            raise ProblemError(422, "explain must be one text field, true or false")
        return await uploads[0].read(), explain[0] if explain else None
    finally:
        await form.close()  # every uploaded part, also those refused


def _explain_flag(query: str | None, body_value: Any) -> bool:
    """The query parameter wins; otherwise the form field or JSON member (same words)."""
    return parse_bool(query if query is not None else body_value, "explain")


def analysis_response(analysis: dict[str, Any], cache_hit: bool) -> Response[dict[str, Any]]:
    return Response(analysis, headers={"X-Cache": "hit" if cache_hit else "miss"})


async def _cached_analysis(request: Request[Any, Any, Any], sha256: str) -> dict[str, Any]:
    """The cached analysis GET and HEAD answer with, or their problem (404, 422, 503)."""
    service = _service(request.app.state)
    service.require_cached_reads()
    found = await service.cached(sha256_key(sha256))
    service.metrics.cache_result("analyses", hit=found is not None)
    if found is None:
        raise ProblemError(404, "no analysis of this image under the current model and prompts")
    return found


CACHED_PROBLEMS = {
    404: "No analysis of this image under the current model and prompts",
    422: "The path is not 64 hexadecimal characters",
    503: "The model is loading (`loading`) or failed to load (`model-failed`) and the "
    "checkpoint's cache identity is unknown",
}


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
        operation_class=AnalyzeOperation,
        responses=responses(
            200,
            success(Analysis, "The analysis (`X-Cache: hit` when these bytes were seen before)"),
            {
                400: "Malformed JSON (`malformed-json`), or an empty or undecodable image "
                "(`empty-image`, `undecodable-image`)",
                408: BODY_TIMEOUT,
                413: "The image or the body is too large (`image-too-large`), or the multipart "
                "body has too many parts (`multipart-too-large`)",
                415: "Neither multipart/form-data nor application/json, a compressed body "
                "(`unsupported-content-encoding`), or an unsupported image format "
                "(`unsupported-image`)",
                422: "Invalid request: no or several `file` parts, no `url`, a refused URL "
                "(`url-refused`), or `explain` not a boolean",
                502: "The URL could not be fetched (`url-fetch-failed`)",
                503: "Busy: the queue is full (`overloaded`), the GPU ran out of memory "
                "(`gpu-out-of-memory`), the model is loading (`loading`) or failed "
                "(`model-failed`), no GPU worker runs (`no-workers`), a worker was lost "
                "(`worker-lost`), the analysis timed out (`timeout`), or the server is stopping "
                "(`shutting-down`)",
                504: "Fetching the URL took too long (`url-timeout`)",
            },
        ),
    )
    async def analyze(
        self,
        request: Request[Any, Any, Any],
        explain: Annotated[
            str | None,
            Parameter(description="true or false (also 1/0, yes/no, on/off); default false"),
        ] = None,
    ) -> Response[dict[str, Any]]:
        state = request.app.state
        if len(request.query_params.getall("explain", [])) > 1:
            # Litestar keeps the last one; the form field refuses the same ambiguity.
            raise ProblemError(422, "explain must be given once, true or false")
        # A URL's fetch and the model both wait: cancelled at shutdown, a 503.
        with answered_when_cancelled():
            kind = media_type(request)
            if kind == "multipart/form-data":
                data, form_explain = await _multipart_file(request)
                want_explain = _explain_flag(explain, form_explain)
            elif is_json(kind):
                body = await json_object(request)
                want_explain = _explain_flag(explain, body.get("explain"))  # before any fetch
                data = await _fetch(state.fetcher, body.get("url"))
            else:
                raise ProblemError(
                    415,
                    "send multipart/form-data with a `file` field, or application/json with `url`; "
                    f"got {kind or 'no content type'}",
                )
            result = await _service(state).analyze(data, explain=want_explain)
        return analysis_response(result.analysis, result.cache_hit)

    @get(
        "/analyses/{sha256:str}",
        summary="A cached analysis by the image's SHA-256, or 404",
        operation_class=CachedOperation,
        responses=responses(
            200, success(Analysis, "The cached analysis (`X-Cache: hit`)"), CACHED_PROBLEMS
        ),
    )
    async def get_analysis(
        self, request: Request[Any, Any, Any], sha256: FromPath[str]
    ) -> Response[dict[str, Any]]:
        return analysis_response(await _cached_analysis(request, sha256), cache_hit=True)

    @head(
        "/analyses/{sha256:str}",
        summary="Whether an analysis is cached: GET's status and headers, without the body",
        operation_class=CachedOperation,
        responses=responses(
            200,
            ResponseSpec(
                data_container=None,
                description="Cached (`X-Cache: hit`; `Content-Length` is that of GET's body)",
            ),
            CACHED_PROBLEMS,
        ),
    )
    async def head_analysis(
        self, request: Request[Any, Any, Any], sha256: FromPath[str]
    ) -> Response[None]:
        found = await _cached_analysis(request, sha256)
        # The body GET would send, measured: a HEAD answer carries GET's headers.
        length = len(encode_json(found))
        return Response(None, headers={"X-Cache": "hit", "Content-Length": str(length)})
