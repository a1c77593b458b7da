"""Shutting the runtime down closes every database connection it opened.

The engine is disposed last: work that still reaches the database while the
runtime stops (the audit writer draining its queue, the webhook dispatcher's
last round) would otherwise check a connection in to a pool nobody disposes,
and it would be left to the garbage collector unclosed.

Before any of that, the refreshes and cache loads in flight settle: a refresh
whose request went away still commits and is audited, or, past the grace
period, is cancelled and rolled back.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import select

from gateway.audit import Action, EventDraft, Outcome
from gateway.config import Settings
from gateway.connections import Connection
from gateway.errors import DatabaseUnavailable
from gateway.oauth import TokenSet
from gateway.runtime import Runtime, open_runtime
from gateway.storage import audit_tables, connections, create_engine
from gateway.vault import KeyRing, token_row
from providers.base import Account
from tests.conftest import make_settings, sandbox_provider_settings

SANDBOX = "https://sandbox.test"


def unclosed_resources() -> list[str]:
    """What the collector finds left open (an unclosed database connection warns so)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def test_an_audit_event_queued_at_shutdown_leaves_no_connection_unclosed(
    database_url: str,
) -> None:
    async with open_runtime(make_settings(database_url)) as runtime:
        draft = EventDraft(
            customer_id="acme", action=Action.CONNECTION_CREATED, outcome=Outcome.ALLOWED
        )
        # Queued, not yet written: the writer writes it while the runtime stops.
        recording = asyncio.create_task(runtime.audit.record(draft))
        await asyncio.sleep(0)
    event = await recording
    assert event.customer_id == "acme"

    del runtime
    assert unclosed_resources() == []


class SlowTokenEndpoint(httpx.AsyncBaseTransport):
    """The provider's token endpoint, answering a refresh once ``answer`` is set."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/token"
        self.asked.set()
        await self.answer.wait()
        return httpx.Response(
            200,
            json={
                "access_token": "fresh-access",
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": "fresh-refresh",
            },
        )


def sandbox_settings(database_url: str) -> Settings:
    provider = sandbox_provider_settings(SANDBOX, secrets.token_urlsafe(16))
    return replace(make_settings(database_url), providers={"sandbox": provider})


async def expiring_connection(runtime: Runtime) -> Connection:
    connection, _ = await runtime.connections.link(
        customer_id="acme",
        provider="sandbox",
        account=Account(subject="usr_1", name="Ada", issuer=SANDBOX),
        tokens=TokenSet(
            access_token="old-access",
            token_type="Bearer",
            expires_at=int((datetime.now(UTC) + timedelta(seconds=5)).timestamp()),
            refresh_token="old-refresh",
        ),
        scopes=("posts",),
    )
    return connection


@asynccontextmanager
async def refresh_left_running(
    settings: Settings, endpoint: SlowTokenEndpoint, **options: Any
) -> AsyncIterator[Runtime]:
    """A runtime whose one refresh is waiting on the provider when the block ends,
    the request that started it already gone."""
    async with open_runtime(settings, oauth_transport=endpoint, **options) as runtime:
        connection = await expiring_connection(runtime)
        request = asyncio.create_task(runtime.refresher.fresh(connection))
        await endpoint.asked.wait()
        request.cancel()  # the client hung up; the refresh runs on, shielded
        with pytest.raises(asyncio.CancelledError):
            await request
        yield runtime


async def stored(settings: Settings) -> tuple[str | None, list[str]]:
    """The connection's access token as stored, and the audit log's actions."""
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            [row] = (await conn.execute(select(connections))).mappings().all()
            actions = (await conn.execute(select(audit_tables.events.c.action))).scalars().all()
    finally:
        await engine.dispose()
    vault = KeyRing.parse(settings.vault_keys)
    sealed = row["access_token"]
    token = vault.open(sealed, row=token_row(row["id"], "access_token")) if sealed else None
    return token, list(actions)


async def test_a_refresh_in_flight_at_shutdown_is_stored_and_audited(database_url: str) -> None:
    """A refresh whose request went away finishes before the runtime closes: the new
    token is stored, its audit event written, no connection left unclosed."""
    settings = sandbox_settings(database_url)
    endpoint = SlowTokenEndpoint()
    async with refresh_left_running(settings, endpoint) as runtime:
        # The provider answers only once the runtime has begun to stop.
        asyncio.get_running_loop().call_later(0.2, endpoint.answer.set)

    token, actions = await stored(settings)
    assert token == "fresh-access"
    assert Action.CONNECTION_REFRESHED.value in actions
    del runtime
    assert unclosed_resources() == []


async def test_a_refresh_past_the_grace_is_cancelled_and_rolled_back(database_url: str) -> None:
    """A provider that never answers: after the grace the refresh is cancelled, logged,
    its transaction rolled back (the old token stays), no connection left unclosed."""
    settings = sandbox_settings(database_url)
    endpoint = SlowTokenEndpoint()
    with structlog.testing.capture_logs() as logs:
        async with refresh_left_running(settings, endpoint, settle_grace=0.2) as runtime:
            connection_id = (await runtime.connections.list("acme"))[0].id

    token, actions = await stored(settings)
    assert token == "old-access"
    assert Action.CONNECTION_REFRESHED.value not in actions
    [abandoned] = [entry for entry in logs if entry["event"] == "loads.abandoned"]
    assert [f"refresh-{connection_id}"] == abandoned["loads"]
    del runtime
    assert unclosed_resources() == []


async def test_no_refresh_starts_once_the_runtime_is_stopping(database_url: str) -> None:
    """After the settle began, a refresh is refused with 503, not started against a
    client and an engine about to close."""
    settings = sandbox_settings(database_url)
    async with open_runtime(settings, oauth_transport=SlowTokenEndpoint()) as runtime:
        connection = await expiring_connection(runtime)
    with pytest.raises(DatabaseUnavailable):
        await runtime.refresher.fresh(connection)
