"""Errors below the page handlers are pages on the web routes; the JSON API keeps problem+json."""

from __future__ import annotations

import re

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.observability import TracingMiddleware
from gateway.problems import unexpected_error
from gateway.web.error_pages import ErrorPagesMiddleware, is_page_path
from gateway.web.security_headers import SecurityHeadersMiddleware
from tests.conftest import Servers, make_settings
from tests.gateway.conftest import CUSTOMER, build_stack
from tests.trust.test_database_faults import _allow_connections
from tests.web.test_console_http import _auditor, _signed_in, _token

postgres_only = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

HTML = "text/html; charset=utf-8"
_REFERENCE = re.compile(r"<code>([0-9a-f]{32})</code>")


def _assert_page(answer: httpx.Response, status: int, heading: str, *secrets: str) -> None:
    """An HTML error page: status, headline, security headers, the trace id, no secret."""
    assert (answer.status_code, answer.headers["content-type"]) == (status, HTML), answer.text
    assert f"<h1>{heading}</h1>" in answer.text
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert _REFERENCE.findall(answer.text) == [answer.headers["x-trace-id"]]
    for secret in secrets:
        assert secret not in answer.text


def _routes() -> list[Route]:
    app = create_app(
        make_settings("sqlite+aiosqlite:///:memory:"), tracer_provider=TracerProvider()
    )
    while not isinstance(app, Starlette):  # the wrapping middlewares, outermost first
        app = app.app  # type: ignore[attr-defined]
    return [route for route in app.routes if isinstance(route, Route)]


def test_every_page_route_and_only_those_answer_errors_as_pages() -> None:
    """A route whose endpoint renders pages is a page path; no JSON API route is."""
    routes = _routes()
    pages = [r.path for r in routes if r.endpoint.__module__.startswith("gateway.web")]

    assert pages, "the page routes were found"
    assert all(is_page_path(path) for path in pages)
    assert not any(is_page_path(r.path) for r in routes if r.path not in pages)
    assert not is_page_path("/v1/connect-sessions")
    assert not is_page_path("/consoles")


@postgres_only
async def test_while_the_database_is_unreachable_pages_say_so_and_the_api_answers_json(
    database_url: str, servers: Servers
) -> None:
    """Portal, callback, console page and sign-in: a 503 page with Retry-After; the API: JSON."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    session = await stack.connect_session()
    key = await _auditor(stack, CUSTOMER)
    database = str(make_url(stack.settings.database_url).database)
    async with (
        httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as console,
        httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as signing_in,
        stack.browser() as browser,
        stack.api() as api,
    ):
        assert (await _signed_in(console, key)).status_code == 303
        form = await signing_in.get("/console/sign-in")
        await _allow_connections(database, False)
        try:
            pages = [
                await browser.get(session["connect_url"]),
                await browser.get(f"{session['connect_url']}/sandbox"),
                await browser.get(f"{stack.gateway.url}/oauth/callback?state=s&code=c"),
                await console.get("/console/events"),
                await signing_in.post(
                    "/console/sign-in", data={"csrf_token": _token(form), "credential": key}
                ),
            ]
            problem = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
        finally:
            await _allow_connections(database, True)
        after = await browser.get(session["connect_url"])

    for page in pages:
        _assert_page(page, 503, "Temporarily unavailable", session["token"], key)
        assert page.headers["retry-after"] == "5"
        assert "Wait 5 seconds, then try again." in page.text
    assert "Linkgate auditor console</title>" in pages[3].text  # the console's look
    assert "open the link your platform gave you again" in pages[0].text  # the portal's
    assert (problem.status_code, problem.headers["content-type"]) == (
        503,
        "application/problem+json",
    )
    assert problem.json()["type"].endswith("/database-unavailable")
    assert problem.headers["retry-after"] == "5"
    assert after.status_code == 200


@sqlite_only
async def test_unknown_paths_wrong_methods_and_bad_urls_are_pages(
    database_url: str, servers: Servers
) -> None:
    """404, 405 (with Allow) and the request limits' 400 and 413 are pages on web routes only."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    session = await stack.connect_session()
    token = session["token"]
    async with stack.browser() as browser, stack.api() as api:
        missing = await browser.get(f"{session['connect_url']}/a/b/c/d")
        missing_console = await browser.get(f"{stack.gateway.url}/console/nowhere")
        method = await browser.put(f"{stack.gateway.url}/console/events")
        nul = await browser.get(f"{session['connect_url']}%00")
        large = await browser.post(
            f"{stack.gateway.url}/console/sign-in",
            content=b"x" * (stack.settings.max_request_body + 1),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        api_missing = await api.get("/v1/nowhere")

    _assert_page(missing, 404, "Page not found", token)
    _assert_page(missing_console, 404, "Page not found")
    _assert_page(method, 405, "Not available this way")
    assert {m.strip() for m in method.headers["allow"].split(",")} == {"GET", "HEAD"}
    _assert_page(nul, 400, "Request not understood", token)
    _assert_page(large, 413, "Request too large")
    assert (api_missing.status_code, api_missing.headers["content-type"]) == (
        404,
        "application/problem+json",
    )


@sqlite_only
async def test_a_key_over_its_rate_on_a_page_gets_a_429_page(
    database_url: str, servers: Servers
) -> None:
    """The request limits' 429 on a portal link is a page with Retry-After, not JSON."""
    stack = await build_stack(
        database_url, servers, auto_approve=True, rate_limit=0.001, rate_limit_burst=1
    )
    session = await stack.connect_session()
    async with stack.browser() as browser:
        headers = {"Authorization": "Bearer lgk_not-a-browser-credential"}
        first = await browser.get(session["connect_url"], headers=headers)
        refused = await browser.get(session["connect_url"], headers=headers)

    assert first.status_code == 200
    _assert_page(refused, 429, "Too many requests", session["token"])
    seconds = int(refused.headers["retry-after"])
    assert seconds >= 1
    assert f"Wait {seconds} seconds, then try again." in refused.text


async def _crash(_request: Request) -> Response:
    raise RuntimeError("a bug below the page, with a secret: lga_crashdetail")


async def test_an_unexpected_error_is_a_500_page_on_a_page_route_and_json_elsewhere() -> None:
    """A crash on a console path is a page with the trace id; on an API path, problem+json."""
    starlette = Starlette(
        routes=[Route("/console/crash", _crash), Route("/v1/crash", _crash)],
        exception_handlers={Exception: unexpected_error},
    )
    app = TracingMiddleware(
        SecurityHeadersMiddleware(ErrorPagesMiddleware(starlette)),
        tracer_provider=TracerProvider(),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://linkgate.test") as client:
        page = await client.get("/console/crash")
        problem = await client.get("/v1/crash")

    _assert_page(page, 500, "Something went wrong", "lga_crashdetail", "Traceback")
    assert "retry-after" not in page.headers
    assert (problem.status_code, problem.headers["content-type"]) == (
        500,
        "application/problem+json",
    )
