"""The bearer security scheme in the app's OpenAPI schema, for routes that need a user."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from aldero_fastapi.overrides import UserDependent

__all__ = ["SECURITY_SCHEME_NAME", "install_openapi_security"]

SECURITY_SCHEME_NAME = "AlderoBearer"

# Apps whose schema builder is already wrapped, so a second install() adds nothing twice.
_installed_apps: weakref.WeakSet[FastAPI] = weakref.WeakSet()


def install_openapi_security(app: FastAPI, user_dependency: Callable[..., Any]) -> None:
    """
    Declare bearer authentication on every operation whose dependencies use ``user_dependency``.

    The scheme is added when the schema is built, so it costs nothing per request and
    the docs' "Authorize" button works for routes that need ``CurrentUser``.
    """
    if app in _installed_apps:
        return
    _installed_apps.add(app)

    build_schema = app.openapi

    def openapi_with_bearer() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema

        schema = build_schema()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[SECURITY_SCHEME_NAME] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}

        for route in app.routes:
            if not isinstance(route, APIRoute) or not _uses(route.dependant, user_dependency):
                continue
            operations = schema.get("paths", {}).get(route.path_format, {})
            for method in route.methods or ():
                operation = operations.get(method.lower())
                if operation is not None:
                    operation.setdefault("security", []).append({SECURITY_SCHEME_NAME: []})

        app.openapi_schema = schema
        return schema

    app.openapi = openapi_with_bearer  # type: ignore[method-assign]


def _uses(dependant: Dependant, call: Callable[..., Any]) -> bool:
    # A UserDependent such as require_feature calls the user dependency without declaring it.
    if dependant.call is call or isinstance(dependant.call, UserDependent):
        return True
    return any(_uses(sub_dependant, call) for sub_dependant in dependant.dependencies)
