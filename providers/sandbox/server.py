"""The sandbox provider's ASGI application: an OAuth 2.0 + OIDC server and its API.

Build it with :func:`create_sandbox_app`; run it with ``python -m providers.sandbox``
or :func:`providers.sandbox.runner.serve_in_thread`.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from providers.sandbox.api import ResourceApi
from providers.sandbox.control import Control
from providers.sandbox.demo_data import ACCOUNTS
from providers.sandbox.faults import Faults
from providers.sandbox.grants import GrantStore
from providers.sandbox.oauth import AuthorizationServer
from providers.sandbox.settings import SandboxSettings
from providers.sandbox.stats import Stats
from providers.sandbox.tokens import KeyRing


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxState:
    """The live state of one server, reachable as ``app.state.sandbox`` (for tests)."""

    settings: SandboxSettings
    keys: KeyRing
    grants: GrantStore
    faults: Faults
    stats: Stats


def create_sandbox_app(settings: SandboxSettings | None = None) -> Starlette:
    """A fresh sandbox server with its own keys and empty grant state."""
    settings = settings if settings is not None else SandboxSettings()
    state = SandboxState(
        settings=settings,
        keys=KeyRing(settings.signing_key),
        grants=GrantStore(
            clock=settings.clock,
            code_ttl=settings.code_ttl,
            access_token_ttl=settings.access_token_ttl,
        ),
        faults=Faults(),
        stats=Stats(),
    )
    server = AuthorizationServer(
        settings=settings,
        keys=state.keys,
        grants=state.grants,
        faults=state.faults,
        stats=state.stats,
        accounts=ACCOUNTS,
    )
    api = ResourceApi(
        grants=state.grants, faults=state.faults, stats=state.stats, accounts=ACCOUNTS
    )
    routes: list[BaseRoute] = [*server.routes(), *api.routes()]
    if settings.control_enabled:
        control = Control(
            keys=state.keys, grants=state.grants, faults=state.faults, stats=state.stats
        )
        routes.extend(control.routes())
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.sandbox = state
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (404, 405) as JSON, like the rest of the API."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return JSONResponse(
        {"error": "not_found" if status == 404 else "http_error", "error_description": detail},
        status_code=status,
        headers=headers,
    )
