"""The sandbox's social and calendar API: bearer-protected, read-only JSON.

| path | scope | paged |
| --- | --- | --- |
| ``/api/me`` | profile | no |
| ``/api/posts`` | posts.read | yes |
| ``/api/posts/{post_id}/comments`` | posts.read | yes |
| ``/api/conversations`` | messages.read | yes |
| ``/api/events`` | calendar.read | yes |
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from providers.sandbox import bearer
from providers.sandbox.demo_data import DemoAccount
from providers.sandbox.faults import ApiFault, Faults
from providers.sandbox.grants import GrantStore
from providers.sandbox.paging import PageRequest, PageRequestError, page
from providers.sandbox.scopes import API_SCOPES
from providers.sandbox.stats import Stats

Handler = Callable[[Request, DemoAccount], Awaitable[Response]]


class ResourceApi:
    """The API endpoints, bound to the grants that authorize them and the demo data."""

    def __init__(
        self,
        *,
        grants: GrantStore,
        faults: Faults,
        stats: Stats,
        accounts: Mapping[str, DemoAccount],
    ) -> None:
        self.grants = grants
        self.faults = faults
        self.stats = stats
        self.accounts = accounts

    def routes(self) -> list[Route]:
        return [
            Route("/api/me", self._guard("me", self.me)),
            Route("/api/posts", self._guard("posts", self.posts)),
            Route("/api/posts/{post_id}/comments", self._guard("comments", self.comments)),
            Route("/api/conversations", self._guard("conversations", self.conversations)),
            Route("/api/events", self._guard("events", self.events)),
        ]

    def _guard(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` with armed faults, bearer authentication and the scope check."""
        scope = API_SCOPES[name]

        async def endpoint(request: Request) -> Response:
            self.stats.count(f"api.{name}")
            fault = self.faults.take_api()
            if fault is not None:
                return _fault_response(fault.kind, fault.retry_after)
            value = bearer.bearer_token(request)
            if value is None:
                return bearer.missing_token()
            token = self.grants.access(value)
            if token is None:
                return bearer.invalid_token("the access token is unknown, expired or revoked")
            if scope not in token.grant.scope:
                return bearer.insufficient_scope(scope)
            return await handler(request, self.accounts[token.grant.user_id])

        return endpoint

    async def me(self, request: Request, account: DemoAccount) -> Response:
        return JSONResponse(account.me())

    async def posts(self, request: Request, account: DemoAccount) -> Response:
        return _paged(request, account.posts)

    async def comments(self, request: Request, account: DemoAccount) -> Response:
        post_id = request.path_params["post_id"]
        if not any(post["id"] == post_id for post in account.posts):
            return JSONResponse(
                {"error": "not_found", "error_description": f"no post {post_id}"}, status_code=404
            )
        return _paged(request, account.comments.get(post_id, ()))

    async def conversations(self, request: Request, account: DemoAccount) -> Response:
        return _paged(request, account.conversations)

    async def events(self, request: Request, account: DemoAccount) -> Response:
        return _paged(request, account.events)


def _paged(request: Request, items: Sequence[Any]) -> Response:
    try:
        wanted = PageRequest.from_query(request.query_params)
    except PageRequestError as exc:
        return JSONResponse(
            {"error": "invalid_request", "error_description": str(exc)}, status_code=400
        )
    return JSONResponse(page(items, wanted))


def _fault_response(kind: ApiFault, retry_after: int) -> Response:
    if kind is ApiFault.RATE_LIMITED:
        # RFC 6585 §4 with RFC 9110 §10.2.3 Retry-After in seconds.
        return JSONResponse(
            {"error": "rate_limited", "error_description": "too many requests (sandbox fault)"},
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )
    return JSONResponse(
        {"error": "unavailable", "error_description": "temporarily unavailable (sandbox fault)"},
        status_code=503,
    )
