"""The records endpoint over real HTTP: live gateway, live sandbox provider, real databases."""

from __future__ import annotations

import asyncio
import json
import linecache
import socket
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from gateway.errors import PROBLEM_BASE
from gateway.storage import audit_tables, connections, create_engine
from policies import AccessContext, CallerClass, PolicyEngine, load_policy
from providers.base import NormalizeContext
from providers.sandbox import PROVIDER
from providers.sandbox.demo_data import ADA
from tests.conftest import rename_table
from tests.gateway.conftest import CUSTOMER, Stack

PURPOSE = "essential.service"


async def _linked(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    [connection] = response.json()["connections"]
    return str(connection["id"])


async def _read(
    stack: Stack, connection_id: str, resource: str, key: str | None = None, **params: Any
) -> httpx.Response:
    async with stack.api(key) as api:
        return await api.get(
            f"/v1/connections/{connection_id}/records/{resource}",
            params={"purpose": PURPOSE, **params},
        )


async def _sandbox_stats(stack: Stack) -> dict[str, dict[str, int]]:
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as client:
        return dict((await client.get("/_sandbox/stats")).json())


async def _audit_rows(stack: Stack) -> list[dict[str, Any]]:
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(select(audit_tables.events).order_by(audit_tables.events.c.seq))
            ).mappings()
            return [dict(row) for row in rows]
    finally:
        await engine.dispose()


def _expected(resource: str, items: Any, connection_id: str) -> tuple[list[str], dict[str, int]]:
    """What the policy engine itself says about the sandbox's demo items."""
    ctx = NormalizeContext(
        customer_id=CUSTOMER,
        connection_id=connection_id,
        provider="sandbox",
        resource=resource,
        fetched_at=datetime.now(UTC),
    )
    records = [PROVIDER.resources[resource].normalize(item, ctx) for item in items]
    access = AccessContext(
        service_id="test",
        caller_class=CallerClass.INTERNAL,
        granted_purposes=frozenset({PURPOSE}),
        entitled_customers=frozenset({CUSTOMER}),
        connection_customer_id=CUSTOMER,
        purpose=PURPOSE,
        now=datetime.now(UTC),
        consented=lambda _i: False,
        suppressed=lambda _i, _p: False,
        pseudonymize=lambda i: str(i),
    )
    page = PolicyEngine(load_policy()).decide_page(records, access)
    return [record.id for record in page.kept], page.dropped


@pytest.mark.parametrize(
    ("resource", "items", "params"),
    [
        ("posts", ADA.posts, {}),
        ("conversations", ADA.conversations, {}),
        ("events", ADA.events, {}),
        ("comments", ADA.comments["post_1001"], {"post_id": "post_1001"}),
    ],
)
async def test_records_are_filtered_exactly_as_the_policies_say(
    stack: Stack, resource: str, items: Any, params: dict[str, str]
) -> None:
    """Every visibility comes back filtered as the engine decides, tagged with the customer."""
    connection_id = await _linked(stack)
    response = await _read(stack, connection_id, resource, limit="25", **params)
    assert response.status_code == 200, response.text
    body = response.json()
    kept, dropped = _expected(resource, items, connection_id)
    assert kept == [record["id"] for record in body["records"]]
    assert dropped == body["dropped"]
    assert all(record["customer_id"] == CUSTOMER for record in body["records"])
    assert all(record["connection_id"] == connection_id for record in body["records"])
    assert {"public", "direct"} >= {record["visibility"] for record in body["records"]}
    assert len(body["trace_id"]) == 32


async def test_paging_to_the_end_returns_every_item_once(stack: Stack) -> None:
    """next_cursor walks the whole collection and is null on the last page."""
    connection_id = await _linked(stack)
    seen: list[str] = []
    dropped = 0
    cursor: str | None = None
    pages = 0
    while True:
        extra = {"cursor": cursor} if cursor else {}
        response = await _read(stack, connection_id, "posts", limit="3", **extra)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [record["id"] for record in body["records"]]
        dropped += sum(body["dropped"].values())
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    kept, _ = _expected("posts", ADA.posts, connection_id)
    assert kept == seen
    assert len(ADA.posts) == len(seen) + dropped
    assert -(-len(ADA.posts) // 3) == pages


async def test_a_tampered_or_replayed_cursor_is_refused(stack: Stack) -> None:
    """A changed cursor, or one used for another resource, is 400 invalid-cursor."""
    connection_id = await _linked(stack)
    first = (await _read(stack, connection_id, "posts", limit="2")).json()
    cursor = first["next_cursor"]
    payload, mac = cursor.split(".")
    tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + mac
    for bad, resource in ((tampered, "posts"), (cursor, "events"), ("garbage", "posts")):
        response = await _read(stack, connection_id, resource, cursor=bad)
        assert response.status_code == 400
        assert response.json()["type"] == PROBLEM_BASE + "invalid-cursor"


async def test_a_purpose_not_granted_is_refused_and_audited(stack: Stack) -> None:
    """403 purpose-not-allowed before any provider call, with a denied audit event."""
    connection_id = await _linked(stack)
    before = await _sandbox_stats(stack)
    response = await _read(stack, connection_id, "posts", purpose="marketing.communications")
    assert response.status_code == 403
    assert response.json()["type"] == PROBLEM_BASE + "purpose-not-allowed"
    assert before.get("api_requests") == (await _sandbox_stats(stack)).get("api_requests")
    reads = [row for row in await _audit_rows(stack) if row["action"] == "records.read"]
    assert [row["outcome"] for row in reads] == ["denied"]


async def test_another_customers_connection_is_not_found(stack: Stack) -> None:
    """A service of another customer gets 404, the same as for no connection at all."""
    connection_id = await _linked(stack)
    theirs = await _read(stack, connection_id, "posts", key=stack.other_key)
    missing = await _read(stack, "con_doesnotexist", "posts")
    assert 404 == theirs.status_code == missing.status_code
    assert theirs.json()["type"] == missing.json()["type"] == PROBLEM_BASE + "not-found"


@pytest.mark.parametrize(
    ("resource", "params", "status", "problem"),
    [
        ("likes", {}, 404, "unknown-resource"),
        ("comments", {}, 400, "invalid-parameter"),
        ("comments", {"post_id": "../../admin"}, 400, "invalid-parameter"),
        ("posts", {"since": "yesterday"}, 400, "invalid-parameter"),
        ("posts", {"limit": "26"}, 400, "invalid-parameter"),
        ("posts", {"limit": "0"}, 400, "invalid-parameter"),
    ],
)
async def test_bad_requests_get_distinct_problems(
    stack: Stack, resource: str, params: dict[str, str], status: int, problem: str
) -> None:
    """Unknown resources, bad parameters and limits past the maximum are refused by type."""
    connection_id = await _linked(stack)
    response = await _read(stack, connection_id, resource, **params)
    assert status == response.status_code, response.text
    assert PROBLEM_BASE + problem == response.json()["type"]


async def test_other_methods_and_deeper_paths_are_not_records_reads(stack: Stack) -> None:
    """A POST to a records path is 405 with Allow; a path one segment deeper is 404."""
    async with stack.api() as api:
        posted = await api.post("/v1/connections/con_x/records/posts?purpose=support")
        deeper = await api.get("/v1/connections/con_x/records/posts/more?purpose=support")
    # Starlette lists a route's methods from a set: their order varies by process.
    allowed = set(posted.headers["allow"].split(", "))
    assert (posted.status_code, allowed) == (405, {"GET", "HEAD"})
    assert deeper.status_code == 404


async def test_a_429_is_retried_then_served(stack: Stack) -> None:
    """One 429 with Retry-After is waited out and the page is served."""
    connection_id = await _linked(stack)
    await stack.sandbox_faults(api="rate_limited", retry_after=1)
    response = await _read(stack, connection_id, "posts")
    assert response.status_code == 200, response.text
    assert (await _sandbox_stats(stack))["api_requests"]["posts"] == 2


async def test_a_spent_retry_budget_is_a_503_with_retry_after(stack: Stack) -> None:
    """A provider that stays unavailable gives 503 upstream-unavailable with Retry-After."""
    connection_id = await _linked(stack)
    await stack.sandbox_faults(api="unavailable", times=20)
    response = await _read(stack, connection_id, "posts")
    assert response.status_code == 503
    assert response.json()["type"] == PROBLEM_BASE + "upstream-unavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert "records" not in response.json()


async def test_a_refresh_storm_makes_exactly_one_token_request(stack: Stack) -> None:
    """200 concurrent reads on an expired token: one refresh, rotation stored, all served."""
    connection_id = await _linked(stack)
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            before = (
                await conn.execute(select(connections.c.refresh_token, connections.c.access_token))
            ).one()
        async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
            (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            base_url=stack.gateway.url,
            headers={"Authorization": f"Bearer {stack.service_key}"},
            timeout=60,
            limits=limits,
        ) as api:
            responses = await asyncio.gather(
                *(
                    api.get(
                        f"/v1/connections/{connection_id}/records/profile",
                        params={"purpose": PURPOSE},
                    )
                    for _ in range(200)
                )
            )
        assert [response.status_code for response in responses] == [200] * 200
        assert {
            k: v
            for k, v in (await _sandbox_stats(stack))["token_requests"].items()
            if k == "refresh_token"
        } == {"refresh_token": 1}
        async with engine.connect() as conn:
            after = (
                await conn.execute(select(connections.c.refresh_token, connections.c.access_token))
            ).one()
        assert before.refresh_token != after.refresh_token
        assert before.access_token != after.access_token
    finally:
        await engine.dispose()


async def test_invalid_grant_needs_reauth_and_stops_calling_the_provider(stack: Stack) -> None:
    """invalid_grant → connection-needs-reauth; the next read never reaches the provider."""
    connection_id = await _linked(stack)
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
    await stack.sandbox_faults(refresh="invalid_grant")
    first = await _read(stack, connection_id, "posts")
    assert first.status_code == 409, first.text
    assert first.json()["type"] == PROBLEM_BASE + "connection-needs-reauth"
    calls = (await _sandbox_stats(stack))["api_requests"]["posts"]
    second = await _read(stack, connection_id, "posts")
    assert second.json()["type"] == PROBLEM_BASE + "connection-needs-reauth"
    assert calls == (await _sandbox_stats(stack))["api_requests"]["posts"]
    async with stack.api() as api:
        shown = (await api.get(f"/v1/connections/{connection_id}")).json()
    assert shown["status"] == "needs_reauth"
    actions = [row["action"] for row in await _audit_rows(stack)]
    assert "connection.needs_reauth" in actions


async def test_no_data_leaves_when_the_audit_log_cannot_be_written(stack: Stack) -> None:
    """A broken audit table gives 503 audit-unavailable and no records (fail closed)."""
    connection_id = await _linked(stack)
    await rename_table(stack.settings.database_url, "audit_events", "audit_events_gone")
    response = await _read(stack, connection_id, "posts")
    assert response.status_code == 503
    body = response.json()
    assert body["type"] == PROBLEM_BASE + "audit-unavailable"
    assert "records" not in body
    assert "Jane" not in json.dumps(body)
    kept, _ = _expected("posts", ADA.posts, connection_id)
    assert [record_id for record_id in kept if record_id in response.text] == []


class _AuditGate:
    """The audit log's write lock, held from outside the gateway as another writer would hold it.

    While it is closed the gateway's append waits in the database: on
    PostgreSQL for the table lock (``LOCK TABLE … IN EXCLUSIVE MODE`` blocks
    inserts, not reads), on SQLite for the write lock (``BEGIN IMMEDIATE``;
    WAL readers go on). Opening it lets the append commit.
    """

    def __init__(self, database_url: str) -> None:
        self._url = make_url(database_url)
        self._postgres: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def close(self) -> None:
        if self._url.get_backend_name() == "postgresql":
            dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._postgres = await asyncpg.connect(dsn)
            await self._postgres.execute("BEGIN")
            await self._postgres.execute("LOCK TABLE audit_events IN EXCLUSIVE MODE")
        else:
            assert self._url.database is not None
            self._sqlite = sqlite3.connect(self._url.database, isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")

    async def append_waiting(self) -> bool:
        """Whether the gateway's append is waiting for this gate."""
        if self._postgres is not None:
            waiting = await self._postgres.fetchval(
                "SELECT count(*) FROM pg_locks"
                " WHERE NOT granted AND relation = 'audit_events'::regclass"
            )
            return bool(waiting)
        # SQLite shows no lock waits: the audit writer's thread (gateway.audit.sqlite_thread)
        # is waiting when its innermost Python frame is the transaction's BEGIN IMMEDIATE.
        frames = sys._current_frames()
        for thread in threading.enumerate():
            frame = frames.get(thread.ident or 0)
            if thread.name.startswith("linkgate-sqlite") and frame is not None:
                line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
                if frame.f_code.co_name == "transaction" and "BEGIN IMMEDIATE" in line:
                    return True
        return False

    async def open(self) -> None:
        if self._postgres is not None:
            await self._postgres.execute("ROLLBACK")
            await self._postgres.close()
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()


def _received_anything(sock: socket.socket) -> bool:
    """Whether a byte (or the end of the stream) has arrived, without waiting for one."""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # with a timeout set, recv would first wait for data
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(timeout)
    return True


def _receive_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_no_byte_leaves_before_the_audit_event_is_durable(stack: Stack) -> None:
    """While the page's audit append waits in the database the client has received nothing."""
    connection_id = await _linked(stack)
    assert (await _read(stack, connection_id, "posts")).status_code == 200  # warm: caches, heads
    gate = _AuditGate(stack.settings.database_url)
    await gate.close()
    url = httpx.URL(stack.gateway.url)
    with socket.create_connection((url.host, url.port or 80), timeout=15) as sock:
        try:
            sock.sendall(
                f"GET /v1/connections/{connection_id}/records/posts?purpose={PURPOSE} HTTP/1.1\r\n"
                f"Host: {url.host}\r\nAuthorization: Bearer {stack.service_key}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            for _ in range(1000):
                if await gate.append_waiting():
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the gateway's audit append never reached the closed gate")
            # A request answered after it: the gateway's event loop has run every step
            # the records request could take without its commit (rendering included).
            async with stack.api() as api:
                assert (await api.get("/healthz")).status_code == 200
            assert not _received_anything(sock)
        finally:
            await gate.open()
        answer = await asyncio.to_thread(_receive_all, sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    kept, _ = _expected("posts", ADA.posts, connection_id)
    page = json.loads(body)
    assert kept == [record["id"] for record in page["records"]]
    assert page["trace_id"] in [row["trace_id"] for row in await _audit_rows(stack)]
