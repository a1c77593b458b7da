"""Outbound calls get client spans, and a records read's audit event shows them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select

from gateway.oauth import ClientCredentials
from gateway.observability import TracedTransport, scrubbed_url
from gateway.provider_tokens import exchange_token
from gateway.storage import audit_tables, connections, create_engine
from gateway.vault import KeyRing, token_row
from providers import facebook, instagram
from providers.base import Provider, TokenExchange
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, Stack, build_stack

PURPOSE = "essential.service"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://graph.instagram.com/refresh_access_token?grant_type=ig_refresh_token"
            "&access_token=IGQVJ-canary",
            "https://graph.instagram.com/refresh_access_token?grant_type=ig_refresh_token"
            "&access_token=REDACTED",
        ),
        (
            "https://graph.facebook.com/v19.0/oauth/access_token?client_id=42"
            "&client_secret=s3cret-canary&fb_exchange_token=EAAB-canary&grant_type=fb_exchange_token",
            "https://graph.facebook.com/v19.0/oauth/access_token?client_id=42"
            "&client_secret=REDACTED&fb_exchange_token=REDACTED&grant_type=fb_exchange_token",
        ),
        (
            "https://user:pa55-canary@api.example/items?sig=abc-canary&after=c1",
            "https://REDACTED:REDACTED@api.example/items?sig=REDACTED&after=c1",
        ),
        ("https://api.example/items", "https://api.example/items"),
    ],
)
def test_url_full_keeps_keys_and_drops_credentials(url: str, expected: str) -> None:
    """Secret query values and userinfo become REDACTED; other parameters stay readable."""
    assert expected == scrubbed_url(httpx.URL(url))


def test_url_full_is_scrubbed_every_time_a_url_repeats() -> None:
    """Clean URLs are remembered; one with a credential is scrubbed on every call."""
    clean = httpx.URL("https://graph.example/me/posts?limit=25")
    secret = httpx.URL("https://graph.example/me/posts?limit=25&access_token=EAAB-canary")

    answers = [scrubbed_url(url) for url in (clean, secret, clean, secret)]

    assert (
        answers
        == [
            "https://graph.example/me/posts?limit=25",
            "https://graph.example/me/posts?limit=25&access_token=REDACTED",
        ]
        * 2
    )


async def test_a_traced_transport_gives_each_request_a_client_span() -> None:
    """Method name, CLIENT kind, server.address, status; a 4xx answer and a dead host are errors."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down.example":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(401 if request.url.path == "/token" else 200, json={})

    spans = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    transport = TracedTransport(httpx.MockTransport(answer), provider.get_tracer("test"))
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("https://idp.example:8443/jwks")
        await client.post("https://idp.example/token", data={"client_secret": "s"})
        with pytest.raises(httpx.ConnectError):
            await client.get("https://down.example/jwks")

    finished = spans.get_finished_spans()
    assert [
        (
            span.name,
            span.kind,
            _attrs(span)["server.address"],
            _attrs(span).get("http.response.status_code"),
            _attrs(span).get("error.type"),
        )
        for span in finished
    ] == [
        ("GET", SpanKind.CLIENT, "idp.example", 200, None),
        ("POST", SpanKind.CLIENT, "idp.example", 401, "401"),
        ("GET", SpanKind.CLIENT, "down.example", None, "ConnectError"),
    ]
    assert _attrs(finished[0])["server.port"] == 8443
    assert [span.status.status_code for span in finished] == [
        StatusCode.UNSET,
        StatusCode.ERROR,
        StatusCode.ERROR,
    ]


@pytest.mark.parametrize(
    ("provider", "exchange"),
    [
        (instagram.PROVIDER, instagram.PROVIDER.oauth.refresh_by_exchange),
        (facebook.PROVIDER, facebook.PROVIDER.oauth.long_lived_exchange),
    ],
    ids=["instagram-refresh", "facebook-long-lived"],
)
async def test_meta_token_exchanges_keep_their_query_secrets_out_of_spans(
    provider: Provider, exchange: TokenExchange | None
) -> None:
    """Meta trades tokens in the query string: the span names the parameters, never the values."""
    assert exchange is not None
    token, secret, fresh = "IGQVJ-old-canary-token", "app-secret-canary", "IGQVJ-new-canary-token"
    seen: list[httpx.URL] = []

    def meta(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"access_token": fresh, "expires_in": 5_184_000})

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    transport = TracedTransport(httpx.MockTransport(meta), tracer_provider.get_tracer("test"))
    async with httpx.AsyncClient(transport=transport) as http:
        tokens = await exchange_token(
            http, provider, ClientCredentials("app-id", secret), token, exchange
        )

    assert tokens.access_token == fresh
    [sent] = seen
    assert sent.params[exchange.token_param] == token, "the token did travel in the query"
    [span] = spans.get_finished_spans()
    url_full = str(_attrs(span)["url.full"])
    assert f"{exchange.token_param}=REDACTED" in url_full
    assert f"grant_type={exchange.grant_type}" in url_full
    raw = repr((span.name, _attrs(span), span.events))
    for name, canary in {"old token": token, "client secret": secret, "new token": fresh}.items():
        assert canary not in raw, f"{name} in the span"


async def test_a_refreshed_and_retried_read_shows_every_call_in_its_audit_event(
    database_url: str, servers: Servers
) -> None:
    """Refresh + one upstream 503: the event's summary lists the server span, the refresh,
    the token request and both upstream attempts; no span holds a token or the client secret."""
    # A margin longer than any token's life: the read refreshes before it calls the API.
    stack = await build_stack(database_url, servers, auto_approve=True, refresh_margin=10**7)
    spans = InMemorySpanExporter()
    stack.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    await stack.link()
    connection_id, old_access, old_refresh = await _tokens(stack)
    await stack.sandbox_faults(api="unavailable", times=1)

    async with stack.api() as api:
        response = await api.get(
            f"/v1/connections/{connection_id}/records/posts", params={"purpose": PURPOSE}
        )
    assert response.status_code == 200, response.text

    summary = await _trace_summary(stack, response.headers["x-trace-id"])
    assert [
        (span["name"], span["status"], _without_server_address(span.get("attributes", {})))
        for span in summary["spans"]
    ] == [
        # Method and route are in the names (HTTP span naming), not repeated as attributes.
        (
            "GET /v1/connections/{connection_id}/records/{resource}",
            "unset",
            {"http.response.status_code": 200},
        ),
        ("POST", "unset", {"http.response.status_code": 200}),
        ("token.refresh", "unset", {"linkgate.provider": "sandbox", "linkgate.refreshed": True}),
        (
            "GET",
            "error",
            {
                "error.type": "503",
                "http.response.status_code": 503,
                "linkgate.provider": "sandbox",
            },
        ),
        (
            "GET",
            "unset",
            {
                "http.request.resend_count": 1,
                "http.response.status_code": 200,
                "linkgate.provider": "sandbox",
            },
        ),
    ]
    assert summary["dropped_spans"] == 0

    _, new_access, new_refresh = await _tokens(stack)
    assert (new_access, new_refresh) != (old_access, old_refresh), "the token was refreshed"
    canaries = {
        "old access token": old_access,
        "old refresh token": old_refresh,
        "new access token": new_access,
        "new refresh token": new_refresh,
        "client secret": stack.settings.providers["sandbox"].client_secret,
    }
    finished = spans.get_finished_spans()
    clients = [span for span in finished if span.kind is SpanKind.CLIENT]
    assert {"GET", "POST"} == {span.name for span in clients}
    assert all("url.full" in _attrs(span) for span in clients)
    raw = repr([(s.name, _attrs(s), s.events, s.status.description) for s in finished])
    for name, secret in canaries.items():
        assert secret not in raw, f"{name} in a span"
        assert secret not in json.dumps(summary), f"{name} in the trace summary"


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _without_server_address(attributes: dict[str, Any]) -> dict[str, Any]:
    """The sandbox listens on 127.0.0.1 at a port chosen per run."""
    assert attributes.pop("server.address", "127.0.0.1") == "127.0.0.1"
    return attributes


async def _tokens(stack: Stack) -> tuple[str, str, str]:
    """The connection's id and its access and refresh tokens, opened from the vault."""
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(connections))).mappings().one()
    finally:
        await engine.dispose()
    assert row["customer_id"] == CUSTOMER
    vault = KeyRing.parse(stack.settings.vault_keys)
    access = vault.open(row["access_token"], row=token_row(row["id"], "access_token"))
    refresh = vault.open(row["refresh_token"], row=token_row(row["id"], "refresh_token"))
    return str(row["id"]), access, refresh


async def _trace_summary(stack: Stack, trace_id: str) -> dict[str, Any]:
    """The stored trace summary of the records.read event with this trace id."""
    events = audit_tables.events
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            content = (
                await conn.execute(
                    select(events.c.content).where(
                        events.c.trace_id == trace_id, events.c.action == "records.read"
                    )
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    summary: dict[str, Any] = json.loads(content)["trace_summary"]
    return summary
