"""What the generated OpenAPI schema cannot infer: hand-parsed bodies and problem answers.

The public endpoints read their bodies by hand (`server.requests.json_object`,
`request.form()`) so that every refusal is a clear problem+json answer; Litestar therefore
sees no `data` parameter and documents neither the request body nor those errors. This
package describes them once:

- `responses`: the response shapes (`Problem`, `Analysis`, ...) as msgspec structs, handed
  to Litestar as `ResponseSpec` data containers so that its schema registry turns them into
  `components/schemas` (components given to `OpenAPIConfig` lose their `schemas`: Litestar
  replaces that map with its registry's), and the problems each route may answer;
- `bodies`: the request bodies Litestar cannot see;
- `operations`: `Operation` subclasses (a handler's `operation_class`) that fill in those
  bodies and the `Retry-After` / `X-Cache` headers, and drop Litestar's default 400
  validation response: the server answers validation errors with a 422 problem.

Here: the components the app hands `OpenAPIConfig`, the security scheme the operations name.
Nothing in this package runs on a request; it only shapes `/schema/openapi.json`.
"""

from litestar.openapi.spec import Components, SecurityScheme

COMPONENTS = Components(
    security_schemes={
        "bearer": SecurityScheme(
            type="http",
            scheme="bearer",
            description="An API token: a reviewer or admin token for /v1/admin, any token for "
            "the public routes when the server requires client tokens",
        )
    },
)
