"""Reads that waited on another read's token refresh say so in their audit events."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from sqlalchemy import select, update

from gateway.app import create_app
from gateway.storage import audit_tables, connections, create_engine, writer
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, Stack

READS = 8


class _HeldTokenRequests(httpx.AsyncBaseTransport):
    """The gateway's OAuth client, real HTTP to the sandbox; token requests wait for ``release``."""

    def __init__(self, release: threading.Event) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._release = release

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            # Bounded, so that a gateway that never joins fails the assertions, not the run.
            await asyncio.to_thread(self._release.wait, 10)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _ReleaseWhenJoined(SpanProcessor):
    """Sets ``release`` once ``count`` requests wait on a refresh another request started."""

    def __init__(self, release: threading.Event, count: int) -> None:
        self._release = release
        self._count = count

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.name == "token.refresh.joined":
            self._count -= 1
            if self._count == 0:
                self._release.set()


async def _summaries(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every records.read event's trace summary, by trace id."""
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(audit_tables.events.c.trace_id, audit_tables.events.c.content).where(
                    audit_tables.events.c.customer_id == CUSTOMER,
                    audit_tables.events.c.action == "records.read",
                )
            )
            return {trace_id: json.loads(content)["trace_summary"] for trace_id, content in rows}
    finally:
        await engine.dispose()


async def test_reads_that_joined_a_refresh_show_it_in_their_audit_summaries(
    stack: Stack, servers: Servers
) -> None:
    """8 concurrent reads on an expired token: one token request reaches the provider; the
    read that made it shows token.refresh, the 7 others token.refresh.joined, linked to it."""
    await stack.link()
    engine = create_engine(stack.settings.database_url)
    try:
        async with writer(engine).begin() as conn:
            [connection_id] = (await conn.execute(select(connections.c.id))).scalars()
            await conn.execute(
                update(connections).values(token_expires_at=datetime.now(UTC) - timedelta(hours=1))
            )
    finally:
        await engine.dispose()
    release = threading.Event()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(_ReleaseWhenJoined(release, READS - 1))
    gateway = servers.serve(
        servers.reserve(),
        create_app(
            stack.settings,
            oauth_transport=_HeldTokenRequests(release),
            tracer_provider=tracer_provider,
        ),
    )
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        before = (await sandbox.get("/_sandbox/stats")).json()["token_requests"]

    async with httpx.AsyncClient(
        base_url=gateway.url,
        headers={"Authorization": f"Bearer {stack.service_key}"},
        timeout=30,
        limits=httpx.Limits(max_connections=READS),
    ) as api:
        responses = await asyncio.gather(
            *(
                api.get(
                    f"/v1/connections/{connection_id}/records/profile",
                    params={"purpose": "essential.service"},
                )
                for _ in range(READS)
            )
        )
    assert [r.status_code for r in responses] == [200] * READS, responses[0].text
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        after = (await sandbox.get("/_sandbox/stats")).json()["token_requests"]
    assert after.get("refresh_token", 0) - before.get("refresh_token", 0) == 1

    summaries = await _summaries(stack)
    refreshes: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for response in responses:
        trace_id = response.headers["x-trace-id"]
        refreshes[trace_id] = [
            (span["name"], span.get("attributes", {}))
            for span in summaries[trace_id]["spans"]
            if span["name"].startswith("token.refresh")
        ]
    [leader] = [t for t, spans in refreshes.items() if [n for n, _ in spans] == ["token.refresh"]]
    joined = {
        "linkgate.provider": "sandbox",
        "linkgate.refresh.trace_id": leader,
        "linkgate.refreshed": True,
    }
    assert sorted(
        json.dumps(spans, sort_keys=True) for t, spans in refreshes.items() if t != leader
    ) == [json.dumps([("token.refresh.joined", joined)], sort_keys=True)] * (READS - 1)
