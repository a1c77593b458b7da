"""The gateway killed (SIGKILL) during a token refresh at a provider that rotates refresh tokens.

Real ``linkgate serve`` processes, a sandbox provider that rotates the refresh
token on every use and treats reuse of a rotated one as theft (RFC 9700
§4.14.2: the whole grant ends), and a :class:`TokenGate` that stops the refresh
at the moment under test so the process is killed exactly there. A second
process then serves the same connection. For each moment the test states what
a user sees: the connection keeps working, or it moves to ``needs_reauth`` with
an audited event and a webhook, and every later call is the same clear 409 with
no further token request. Never a silent loss, never a 500, never a loop.

| killed when | what the provider holds | next process |
| --- | --- | --- |
| the request is in flight, not yet processed | the old refresh token, still valid | refreshes with it: keeps working |
| the provider rotated, its answer never arrived | only the new token, which nobody has | ``needs_reauth``, audited, webhook |
| the answer arrived, the commit did not (PostgreSQL) | the same | the same |
| the rotated tokens were committed | the new token, which the row holds | keeps working, no new refresh; the refresh's audit event, committed with the tokens, appended at its start |
"""  # noqa: E501 - a table reads better unwrapped

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.audit import AuditStore
from gateway.callers import CallerKind, create_caller
from gateway.storage import audit_tables, connections, create_engine
from gateway.storage.schema import webhook_tables
from gateway.vault import KeyRing, generate_key_entry, token_row
from policies.vocabulary import CallerClass
from tests.conftest import POSTGRES_URL, Servers, _admin, _asyncpg_dsn, sandbox_app
from tests.replicas.conftest import (
    CLIENT_ID,
    CUSTOMER,
    PUBLIC_URL,
    PURPOSE,
    REPO,
    Cluster,
    Replica,
    _config_file,
    _start,
    _wait_ready,
)
from tests.trust.stalling_proxy import StallingProxy
from tests.trust.test_slow_database import _audit_head_locked
from tests.trust.token_gate import Hold, TokenGate

WAIT = 60.0  # seconds before a test gives up waiting for a moment that should come


class WebhookReceiver:
    """The customer's webhook endpoint: keeps every body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.received = threading.Event()
        self.app = Starlette(routes=[Route("/hooks", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        self.bodies.append(json.loads(await request.body()))
        self.received.set()
        return Response(status_code=204)


@dataclass
class World:
    """The sandbox behind its gate, the webhook receiver and how to start a gateway process."""

    database_url: str
    gate: TokenGate
    sandbox_url: str
    receiver: WebhookReceiver
    env: dict[str, str]
    workdir: Path
    started: list[Replica] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)  # canaries: never in a process's log

    def start(self, name: str, database_url: str | None = None) -> Replica:
        env = {**self.env, "LINKGATE_DATABASE_URL": database_url or self.database_url}
        replica = _start(name, env, self.workdir)
        self.started.append(replica)
        _wait_ready(replica)
        return replica

    async def sandbox(self, method: str, path: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.sandbox_url) as client:
            response = await client.request(method, path)
        response.raise_for_status()
        return dict(response.json())

    async def refresh_requests(self) -> int:
        stats = await self.sandbox("GET", "/_sandbox/stats")
        return int(stats.get("token_requests", {}).get("refresh_token", 0))


@pytest.fixture
def world(database_url: str, servers: Servers, tmp_path: Path) -> Iterator[World]:
    secret = secrets.token_urlsafe(16)
    sandbox_url = servers.reserve()
    gate = TokenGate(
        sandbox_app(
            sandbox_url,
            secret,
            PUBLIC_URL,
            client_id=CLIENT_ID,
            auto_approve=True,
            rotate_refresh_tokens=True,
        )
    )
    servers.serve(sandbox_url, gate)
    receiver = WebhookReceiver()
    receiver_url = servers.reserve()
    servers.serve(receiver_url, receiver.app)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")}
    env = {
        **inherited,
        "PYTHONPATH": str(REPO),
        "LINKGATE_CONFIG": str(_config_file(tmp_path, sandbox_url, secret)),
        "LINKGATE_PUBLIC_URL": PUBLIC_URL,
        "LINKGATE_VAULT_KEYS": generate_key_entry("c1"),
        "LINKGATE_SECRET_KEY": secrets.token_urlsafe(48),
        "LINKGATE_WEBHOOK_URL": f"{receiver_url}/hooks",
        "LINKGATE_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "LINKGATE_DB_POOL_SIZE": "4",
        "LINKGATE_LOG_LEVEL": "info",  # more lines to search for secrets
    }
    running = World(database_url, gate, sandbox_url, receiver, env, tmp_path)
    running.secrets.update({secret, env["LINKGATE_SECRET_KEY"], env["LINKGATE_WEBHOOK_SECRET"]})
    try:
        yield running
    finally:
        gate.release.set()  # a held request must not keep the sandbox's thread
        for replica in running.started:
            replica.stop()


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[StallingProxy]:
    url = make_url(database_url)
    running = StallingProxy(url.host or "127.0.0.1", url.port or 5432)
    yield running
    running.close()


async def _linked(world: World, first: Replica) -> tuple[Cluster, str]:
    """A service key and a connection linked through ``first``; its access token expired."""
    engine = create_engine(world.database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.SERVICE, name="crm", customers=[CUSTOMER],
            purposes=[PURPOSE], caller_class=CallerClass.INTERNAL,
        )  # fmt: skip
    finally:
        await engine.dispose()
    world.secrets.add(key)
    cluster = Cluster(world.database_url, world.sandbox_url, key, [first])
    callback = await cluster.link(first, first)
    assert callback.status_code == 200, callback.text
    connection_id = await cluster.connection_id(first)
    world.secrets.update(_tokens(world, await _row(world.database_url)))
    # The provider now answers 401 to the access token: the next read must refresh.
    await world.sandbox("POST", "/_sandbox/tokens/expire")
    return cluster, connection_id


async def _read(cluster: Cluster, replica: Replica, connection_id: str) -> httpx.Response:
    async with cluster.api(replica) as api:
        return await api.get(
            f"/v1/connections/{connection_id}/records/profile", params={"purpose": PURPOSE}
        )


async def _row(database_url: str) -> dict[str, Any]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return dict((await conn.execute(select(connections))).mappings().one())
    finally:
        await engine.dispose()


def _tokens(world: World, row: dict[str, Any]) -> set[str]:
    vault = KeyRing.parse(world.env["LINKGATE_VAULT_KEYS"])
    return {
        vault.open(row[column], row=token_row(row["id"], column))
        for column in ("access_token", "refresh_token")
        if row[column]
    }


def _leaks(world: World, row: dict[str, Any]) -> list[str]:
    """Secrets (tokens before, after and in held answers, keys) found in any process's log."""
    canaries = world.secrets | _tokens(world, row)
    for answer in world.gate.answers:
        tokens = json.loads(answer)
        canaries.update(str(tokens[k]) for k in ("access_token", "refresh_token") if k in tokens)
    logs = {replica.name: replica.log.read_text() for replica in world.started}
    assert any("http.request" in text for text in logs.values()), "the processes' logs were read"
    return [
        f"a secret ({len(secret)} characters) in the log of {name}"
        for secret in canaries
        for name, text in logs.items()
        if secret in text
    ]


async def _wait_for(event: threading.Event, what: str) -> None:
    assert await asyncio.to_thread(event.wait, WAIT), f"never happened: {what}"


@dataclass
class Aftermath:
    """What the next process and the database show after the kill."""

    statuses: list[int]
    problem_types: list[str]
    row: dict[str, Any]
    actions: list[tuple[str, str]]
    webhook_events: list[str]
    refresh_requests: int
    chain_ok: bool
    leaks: list[str]


async def _aftermath(world: World, cluster: Cluster, connection_id: str) -> Aftermath:
    """Start a fresh process, read twice through it, and collect what a user would check."""
    second = world.start("after-the-kill")
    responses = [await _read(cluster, second, connection_id) for _ in range(2)]
    engine = create_engine(world.database_url)
    try:
        async with engine.connect() as conn:
            row = dict((await conn.execute(select(connections))).mappings().one())
            events = audit_tables.events
            actions = [
                (str(a), str(o))
                for a, o in await conn.execute(
                    select(events.c.action, events.c.outcome)
                    .where(events.c.action.like("connection.%"))
                    .order_by(events.c.seq)
                )
            ]
            webhook_events = list(
                (await conn.execute(select(webhook_tables.deliveries.c.event_type))).scalars()
            )
        verified = await AuditStore(engine, audit_tables).verify(CUSTOMER)
    finally:
        await engine.dispose()
    return Aftermath(
        statuses=[r.status_code for r in responses],
        problem_types=[
            r.json()["type"].rsplit("/", 1)[1]
            for r in responses
            if r.headers["content-type"] == "application/problem+json"
        ],
        row=row,
        actions=actions,
        webhook_events=webhook_events,
        refresh_requests=await world.refresh_requests(),
        chain_ok=verified.ok,
        leaks=_leaks(world, row),
    )


async def _kill_while(
    world: World, first: Replica, read: asyncio.Task[Any], event: threading.Event, what: str
) -> None:
    await _wait_for(event, what)
    first.kill()
    with pytest.raises(httpx.TransportError):
        await read  # the caller sees the connection drop, as with any crashed server


async def test_killed_before_the_provider_processed_the_refresh_keeps_working(
    world: World,
) -> None:
    """The old refresh token is still valid: the next process refreshes with it and serves."""
    first = world.start("killed")
    cluster, connection_id = await _linked(world, first)
    world.gate.arm(Hold.UNPROCESSED)
    read = asyncio.create_task(_read(cluster, first, connection_id))
    await _kill_while(world, first, read, world.gate.reached, "the refresh reached the provider")
    world.gate.release.set()  # dropped: the provider never processes it

    after = await _aftermath(world, cluster, connection_id)

    assert after.statuses == [200, 200]
    assert after.row["status"] == "active"
    assert after.refresh_requests == 1  # the second process's, with the old token
    assert ("connection.refreshed", "allowed") in after.actions
    assert after.webhook_events == []
    assert after.chain_ok
    assert after.leaks == []


async def test_killed_after_the_provider_rotated_moves_the_connection_to_needs_reauth(
    world: World,
) -> None:
    """The rotated token died with the process: needs_reauth, audited, a webhook; no loop."""
    first = world.start("killed")
    cluster, connection_id = await _linked(world, first)
    world.gate.arm(Hold.ANSWER)
    read = asyncio.create_task(_read(cluster, first, connection_id))
    await _kill_while(world, first, read, world.gate.reached, "the provider rotated the token")
    world.gate.release.set()  # the answer goes to a dead socket

    after = await _aftermath(world, cluster, connection_id)
    await _wait_for(world.receiver.received, "the needs_reauth webhook was delivered")

    _assert_needs_reauth(after)
    assert world.receiver.bodies[0]["type"] == "connection.needs_reauth"


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
async def test_killed_between_the_answer_and_the_commit_moves_the_connection_to_needs_reauth(
    world: World, proxy: StallingProxy
) -> None:
    """The answer arrived but its UPDATE never reached PostgreSQL: the same clear needs_reauth."""
    proxied = (
        make_url(world.database_url).set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )  # fmt: skip
    first = world.start("killed", database_url=proxied)
    cluster, connection_id = await _linked(world, first)
    held: dict[str, threading.Event] = {}

    def stall_the_database() -> None:
        held["update"] = proxy.held_event(b"UPDATE connections")
        proxy.stall()

    world.gate.arm(Hold.PASS, before_answer=stall_the_database)
    read = asyncio.create_task(_read(cluster, first, connection_id))
    await _wait_for(world.gate.reached, "the provider answered")
    await _kill_while(world, first, read, held["update"], "the gateway sent its UPDATE")
    proxy.sever()  # PostgreSQL sees the client gone and rolls the refresh back

    after = await _aftermath(world, cluster, connection_id)

    _assert_needs_reauth(after)


async def test_killed_after_the_commit_keeps_working_without_another_refresh(
    world: World,
) -> None:
    """The row holds the rotated tokens: the next process uses them and refreshes nothing."""
    first = world.start("killed")
    cluster, connection_id = await _linked(world, first)
    before = await _row(world.database_url)
    read = asyncio.create_task(_read(cluster, first, connection_id))

    # A condition, not a guess: the sealed refresh token in the row changes on commit.
    await asyncio.wait_for(_until_rotated(world, before), WAIT)
    first.kill()
    await asyncio.gather(read, return_exceptions=True)  # done or dropped: both are fine here

    after = await _aftermath(world, cluster, connection_id)

    assert after.statuses == [200, 200]
    assert after.row["status"] == "active"
    assert after.refresh_requests == 1  # the killed process's; nobody reused a token
    assert after.webhook_events == []
    assert after.chain_ok
    assert after.leaks == []


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
async def test_killed_between_the_commit_and_its_audit_event_keeps_the_tokens_and_the_event(
    world: World,
) -> None:
    """The rotated tokens are kept; the ``connection.refreshed`` event, committed with them
    in the audit outbox, is appended once by the next process's startup drain."""
    database = str(make_url(world.database_url).database)
    # PostgreSQL ends a dead client's statement while it waits on a lock (PostgreSQL 14+).
    await _admin(f'ALTER DATABASE "{database}" SET client_connection_check_interval = 50')
    first = world.start("killed")
    cluster, connection_id = await _linked(world, first)
    before = await _row(world.database_url)
    async with _audit_head_locked(world.database_url) as holder:
        read = asyncio.create_task(_read(cluster, first, connection_id))
        await asyncio.wait_for(_until_rotated(world, before), WAIT)  # committed; audit waits
        first.kill()
        await asyncio.gather(read, return_exceptions=True)
        await asyncio.wait_for(_until_only_backend(database, holder), WAIT)

    after = await _aftermath(world, cluster, connection_id)

    assert after.statuses == [200, 200]
    assert after.row["status"] == "active"
    assert after.refresh_requests == 1
    assert after.actions.count(("connection.refreshed", "allowed")) == 1
    assert after.chain_ok
    assert after.leaks == []


async def _until_rotated(world: World, before: dict[str, Any]) -> None:
    """Return once the row's sealed refresh token differs from ``before``'s: the commit."""
    while True:
        if (await _row(world.database_url))["refresh_token"] != before["refresh_token"]:
            return
        await asyncio.sleep(0.01)


async def _until_only_backend(database: str, holder: int) -> None:
    """Return once no session but ``holder`` (and this check) is left in ``database``."""
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL, database))
    try:
        while True:
            others = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                "AND pid <> pg_backend_pid() AND pid <> $2",
                database,
                holder,
            )
            if others == 0:
                return
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


def _assert_needs_reauth(after: Aftermath) -> None:
    assert after.statuses == [409, 409]
    assert after.problem_types == ["connection-needs-reauth"] * 2
    assert after.row["status"] == "needs_reauth"
    # The killed process's refresh and the second process's reuse of the old token;
    # the second read is refused without asking the provider again.
    assert after.refresh_requests == 2
    assert ("connection.needs_reauth", "error") in after.actions
    assert after.webhook_events == ["connection.needs_reauth"]
    assert after.chain_ok
    assert after.leaks == []
