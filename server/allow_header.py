"""OPTIONS answers list every method of their route in `Allow`.

Litestar builds a route's OPTIONS handler when it first registers a handler for the path and
keeps it when later handlers join that path: its `Allow` lists only the methods known then.
`OPTIONS /v1/admin/tokens` said `OPTIONS, POST` (GET left out), `/healthz` and
`/v1/analyses/{sha256}` left out HEAD. The wrapper rewrites that header from the app's
complete method map for the matched route (the router has put its template in the scope by
the time the answer starts).
"""

from __future__ import annotations

from typing import cast

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send


def methods_by_template(app: Litestar) -> dict[str, str]:
    """Each HTTP route's template (as the router puts it in the scope) and its `Allow` value."""
    return {
        route.path_format: ", ".join(sorted(route.methods))
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }


class AllowEveryMethod:
    """ASGI wrapper: a 204 answer to OPTIONS carries `Allow` with all its route's methods."""

    def __init__(self, app: ASGIApp, allow_by_template: dict[str, str]) -> None:
        self.app = app
        self.allow_by_template = allow_by_template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or cast("HTTPScope", scope)["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 204:
                template = scope.get("path_template")
                allow = self.allow_by_template.get(template) if template else None
                if allow:
                    headers = [
                        (k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"
                    ]
                    headers.append((b"allow", allow.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_allow)
