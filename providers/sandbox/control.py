"""The ``/_sandbox/`` control surface tests and demos use to steer the server.

| method and path | does |
| --- | --- |
| ``POST /_sandbox/faults`` | arm faults, e.g. ``{"id_token": "wrong_aud"}``, ``{"refresh": "invalid_grant"}``, ``{"api": "rate_limited", "retry_after": 2, "times": 1}``, ``{"authorize": "wrong_iss"}`` |
| ``GET /_sandbox/faults`` / ``DELETE /_sandbox/faults`` | show / disarm them |
| ``GET /_sandbox/stats`` | counts of requests, e.g. ``token_requests`` by grant type |
| ``POST /_sandbox/keys/rotate`` | new current signing key; the previous one stays in the JWKS |
| ``POST /_sandbox/tokens/expire`` | every access token expires now |
| ``POST /_sandbox/reset`` | forget grants, faults and counts |
"""  # noqa: E501 - a table reads better unwrapped

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from providers.sandbox.faults import FaultRequestError, Faults
from providers.sandbox.grants import GrantStore
from providers.sandbox.stats import Stats
from providers.sandbox.tokens import KeyRing


class Control:
    def __init__(self, *, keys: KeyRing, grants: GrantStore, faults: Faults, stats: Stats) -> None:
        self.keys = keys
        self.grants = grants
        self.faults = faults
        self.stats = stats

    def routes(self) -> list[Route]:
        return [
            Route("/_sandbox/faults", self.arm_faults, methods=["POST"]),
            Route("/_sandbox/faults", self.show_faults, methods=["GET"]),
            Route("/_sandbox/faults", self.clear_faults, methods=["DELETE"]),
            Route("/_sandbox/stats", self.show_stats, methods=["GET"]),
            Route("/_sandbox/keys/rotate", self.rotate_keys, methods=["POST"]),
            Route("/_sandbox/tokens/expire", self.expire_tokens, methods=["POST"]),
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
        ]

    async def arm_faults(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise FaultRequestError("the body must be a JSON object")
            self.faults.arm(body)
        except (json.JSONDecodeError, FaultRequestError) as exc:
            return JSONResponse({"error": "invalid_request", "detail": str(exc)}, status_code=400)
        return JSONResponse(self.faults.snapshot())

    async def show_faults(self, request: Request) -> Response:
        return JSONResponse(self.faults.snapshot())

    async def clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return JSONResponse(self.faults.snapshot())

    async def show_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.snapshot())

    async def rotate_keys(self, request: Request) -> Response:
        fresh = self.keys.rotate()
        kids = [key["kid"] for key in self.keys.jwks()["keys"]]
        return JSONResponse({"current": fresh.kid, "kids": kids})

    async def expire_tokens(self, request: Request) -> Response:
        return JSONResponse({"expired": self.grants.expire_access_tokens()})

    async def reset(self, request: Request) -> Response:
        self.grants.clear()
        self.faults.clear()
        self.stats.reset()
        return JSONResponse({"reset": True})
