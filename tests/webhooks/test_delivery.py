"""Webhooks over real HTTP: a live receiver, a live gateway and sandbox, real databases."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.storage import connections, create_engine
from gateway.storage.schema import webhook_tables
from gateway.vault import KeyRing, token_row
from gateway.webhooks import SIGNATURE_HEADER, verify_signature
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, Stack, build_stack

WEBHOOK_SECRET = secrets.token_urlsafe(32)
PURPOSE = "essential.service"
WAIT = 20.0  # seconds a test waits for deliveries


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """The customer's platform: answers ``failures`` with 500 first, then 204."""

    url: str = ""
    failures: int = 0
    calls: int = 0
    accepted: list[Delivery] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.calls += 1
            if self.calls <= self.failures:
                return Response(status_code=500)
            delivery = Delivery(dict(request.headers), await request.body())
            self.accepted.append(delivery)
            return Response(status_code=204)

        return Starlette(routes=[Route("/hooks/linkgate", hook, methods=["POST"])])

    async def wait_for(self, count: int) -> list[Delivery]:
        deadline = time.monotonic() + WAIT
        while len(self.accepted) < count:
            assert time.monotonic() < deadline, f"{len(self.accepted)} of {count} webhooks arrived"
            await asyncio.sleep(0.05)
        return self.accepted


async def _stack(
    database_url: str, servers: Servers, *, failures: int = 0, **overrides: Any
) -> tuple[Stack, Receiver]:
    receiver = Receiver(failures=failures)
    base = servers.reserve()
    servers.serve(base, receiver.app())
    receiver.url = f"{base}/hooks/linkgate"
    stack = await build_stack(
        database_url,
        servers,
        auto_approve=True,
        webhook_url=receiver.url,
        webhook_secret=WEBHOOK_SECRET,
        webhook_backoff=0.05,
        **overrides,
    )
    return stack, receiver


async def _connection_id(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    [connection] = response.json()["connections"]
    return str(connection["id"])


async def _needs_reauth(stack: Stack, connection_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
    await stack.sandbox_faults(refresh="invalid_grant")
    async with stack.api() as api:
        response = await api.get(
            f"/v1/connections/{connection_id}/records/posts", params={"purpose": PURPOSE}
        )
    assert response.status_code == 409, response.text


def _verified(delivery: Delivery) -> dict[str, Any]:
    verify_signature(WEBHOOK_SECRET, delivery.headers[SIGNATURE_HEADER.lower()], delivery.body)
    return delivery.event


async def _attempts_once_recorded(stack: Stack, count: int) -> list[dict[str, Any]]:
    """The delivery attempts, once the gateway has recorded ``count`` of them.

    The gateway records an attempt after the receiver has answered it, so the
    receiver can hold the body before the row that says it was accepted exists.
    """
    deadline = time.monotonic() + WAIT
    while len(attempts := await _attempts(stack)) < count:
        assert time.monotonic() < deadline, f"{len(attempts)} of {count} attempts recorded"
        await asyncio.sleep(0.05)
    return attempts


async def _attempts(stack: Stack) -> list[dict[str, Any]]:
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            a = webhook_tables.attempts
            rows = await conn.execute(select(a).order_by(a.c.attempted_at, a.c.attempt))
            return [dict(row) for row in rows.mappings()]
    finally:
        await engine.dispose()


async def test_invalid_grant_sends_a_signed_needs_reauth_webhook(
    database_url: str, servers: Servers
) -> None:
    """A refused refresh token reaches the receiver as connection.needs_reauth, signed."""
    stack, receiver = await _stack(database_url, servers)
    connection_id = await _connection_id(stack)
    await _needs_reauth(stack, connection_id)
    [delivery] = await receiver.wait_for(1)
    event = _verified(delivery)
    assert event["type"] == "connection.needs_reauth"
    assert event["data"] == {
        "connection_id": connection_id,
        "customer_id": CUSTOMER,
        "provider": "sandbox",
        "status": "needs_reauth",
        "reason": "the provider refused the refresh token (invalid_grant)",
    }
    assert delivery.headers["linkgate-event-id"] == event["id"]


async def test_disconnect_sends_a_revoked_webhook_without_tokens(
    database_url: str, servers: Servers
) -> None:
    """DELETE sends connection.revoked; the body holds none of the connection's tokens."""
    stack, receiver = await _stack(database_url, servers)
    connection_id = await _connection_id(stack)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(connections))).mappings().one()
    finally:
        await engine.dispose()
    vault = KeyRing.parse(stack.settings.vault_keys)
    tokens = [
        vault.open(row[name], row=token_row(row["id"], name))
        for name in ("access_token", "refresh_token")
    ]
    async with stack.api() as api:
        assert (await api.delete(f"/v1/connections/{connection_id}")).status_code == 200
    [delivery] = await receiver.wait_for(1)
    event = _verified(delivery)
    assert (event["type"], event["data"]["status"]) == ("connection.revoked", "revoked")
    assert [token for token in tokens if token.encode() in delivery.body] == []


async def test_linking_again_after_needs_reauth_sends_recovered(
    database_url: str, servers: Servers
) -> None:
    """The customer links the account again: connection.recovered, status active."""
    stack, receiver = await _stack(database_url, servers)
    connection_id = await _connection_id(stack)
    await _needs_reauth(stack, connection_id)
    await receiver.wait_for(1)
    await stack.sandbox_faults(refresh=None)
    await stack.link()
    deliveries = await receiver.wait_for(2)
    events = [_verified(delivery) for delivery in deliveries]
    assert [e["type"] for e in events] == ["connection.needs_reauth", "connection.recovered"]
    assert events[1]["data"]["connection_id"] == connection_id
    assert events[1]["data"]["status"] == "active"


async def test_a_receiver_that_fails_twice_gets_the_webhook_on_the_third_attempt(
    database_url: str, servers: Servers
) -> None:
    """500, 500, then accepted; each attempt is recorded with its code and next attempt."""
    stack, receiver = await _stack(database_url, servers, failures=2)
    connection_id = await _connection_id(stack)
    async with stack.api() as api:
        await api.delete(f"/v1/connections/{connection_id}")
    [delivery] = await receiver.wait_for(1)
    assert _verified(delivery)["type"] == "connection.revoked"
    attempts = await _attempts_once_recorded(stack, 3)
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 500), (3, 204)]
    assert [a["next_attempt_at"] is not None for a in attempts] == [True, True, False]
    assert receiver.calls == 3


async def test_a_delivery_is_abandoned_after_the_last_attempt(
    database_url: str, servers: Servers
) -> None:
    """With two attempts allowed and a receiver that always fails, the delivery stops."""
    stack, receiver = await _stack(database_url, servers, failures=1_000, webhook_max_attempts=2)
    connection_id = await _connection_id(stack)
    async with stack.api() as api:
        await api.delete(f"/v1/connections/{connection_id}")
    await _attempts_once_recorded(stack, 2)
    await asyncio.sleep(0.5)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            d = webhook_tables.deliveries
            state = (await conn.execute(select(d.c.state, d.c.attempts))).one()
    finally:
        await engine.dispose()
    assert (state.state, state.attempts, receiver.calls) == ("abandoned", 2, 2)
