"""Human review of flagged verdicts: API tokens and roles, the /v1/admin API, the /admin page.

The app factory includes everything through :func:`server.admin.routes.admin_routers`
(the templates it renders are configured by ``server.app.template_config``).
"""
