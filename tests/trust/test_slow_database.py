"""The database going slow mid-request: a bounded wait, then a clear 503; fine again after.

Two ways a database is slow: the network to it stops carrying bytes (a
:class:`StallingProxy` between gateway and PostgreSQL holds everything the
gateway sends), or a row the request needs is locked by someone else (the test
holds the customer's audit head, which every access must update). Either way
``LINKGATE_DB_TIMEOUT`` bounds the wait; the caller gets a problem+json 503 with
a stable type, no record leaves without its audit event, and the gateway serves
again as soon as the database answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from gateway.audit import AuditStore
from gateway.storage import audit_tables, connections, create_engine, writer
from gateway.storage.migrate import upgrade
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, Stack, build_stack
from tests.trust.stalling_proxy import StallingProxy

PURPOSE = "essential.service"
DB_TIMEOUT = 1.0  # seconds; small, so a stalled test still finishes quickly
UNAVAILABLE = {"database-unavailable", "audit-unavailable", "not-ready"}


@pytest.fixture
def proxy(postgres_database: str) -> Iterator[StallingProxy]:
    upgrade(postgres_database)
    url = make_url(postgres_database)
    running = StallingProxy(url.host or "127.0.0.1", url.port or 5432)
    yield running
    running.close()


async def _requests_during_the_fault(
    api: httpx.AsyncClient, records_url: str
) -> list[httpx.Response]:
    """A read, a write, a records access (audited) and the readiness probe."""
    return [
        await api.get(records_url, params={"purpose": PURPOSE}),
        await api.get("/v1/connections", params={"customer_id": CUSTOMER}),
        await api.post("/v1/connect-sessions", json={"customer_id": CUSTOMER}),
        await api.get("/readyz"),
    ]


def _assert_clear_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].rsplit("/", 1)[1] in UNAVAILABLE, response.text
    assert "Traceback" not in response.text


async def _records_url(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        listed = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    [connection] = listed.json()["connections"]
    return f"/v1/connections/{connection['id']}/records/posts"


async def _assert_nothing_lost(database_url: str, served: list[httpx.Response]) -> None:
    """Each 200 has its audited event (by trace id), the chain verifies, the row is intact."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(connections))).mappings().one()
            audited = set(
                (
                    await conn.execute(
                        select(audit_tables.events.c.trace_id).where(
                            audit_tables.events.c.action == "records.read",
                            audit_tables.events.c.outcome == "allowed",
                        )
                    )
                ).scalars()
            )
        verified = await AuditStore(engine, audit_tables).verify(CUSTOMER)
    finally:
        await engine.dispose()
    for response in served:
        assert response.status_code == 200, response.text
        assert response.json()["trace_id"] in audited
    assert row["status"] == "active"
    assert verified.ok, verified


@pytest.mark.postgres
async def test_a_stalled_database_connection_is_a_bounded_503_and_then_recovers(
    postgres_database: str, proxy: StallingProxy, servers: Servers
) -> None:
    """While PostgreSQL gets no bytes, each call ends in a 503 problem; afterwards all is served."""
    proxied = (
        make_url(postgres_database).set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )  # fmt: skip
    stack = await build_stack(proxied, servers, auto_approve=True, db_timeout=DB_TIMEOUT)
    records_url = await _records_url(stack)
    async with stack.api() as api:
        before = await api.get(records_url, params={"purpose": PURPOSE})
        proxy.stall()
        try:
            during = await _requests_during_the_fault(api, records_url)
        finally:
            proxy.resume()  # the held queries arrive late, as after a network hiccup
        after = [await api.get(records_url, params={"purpose": PURPOSE}) for _ in range(3)]

    for response in during:
        _assert_clear_503(response)
    await _assert_nothing_lost(postgres_database, [before, *after])


@asynccontextmanager
async def _audit_head_locked(database_url: str) -> AsyncIterator[int]:
    """Hold the customer's audit head (a row lock on PostgreSQL, the write lock on SQLite).

    Yields the holding session's PostgreSQL backend pid (0 on SQLite).
    """
    engine = create_engine(database_url, timeout=30)
    try:
        async with writer(engine).begin() as conn:
            await conn.execute(
                select(audit_tables.heads).where(audit_tables.heads.c.customer_id == CUSTOMER)
                .with_for_update()
            )  # fmt: skip
            postgres = not database_url.startswith("sqlite")
            yield (
                int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                if postgres
                else 0
            )
    finally:
        await engine.dispose()


async def test_a_lock_held_elsewhere_is_a_bounded_503_and_then_recovers(
    database_url: str, servers: Servers
) -> None:
    """A request waiting on a locked row gives up after the timeout; then all is served."""
    stack = await build_stack(database_url, servers, auto_approve=True, db_timeout=DB_TIMEOUT)
    records_url = await _records_url(stack)
    async with stack.api() as api:
        before = await api.get(records_url, params={"purpose": PURPOSE})
        async with _audit_head_locked(database_url):
            during = await api.get(records_url, params={"purpose": PURPOSE})
        after = [await api.get(records_url, params={"purpose": PURPOSE}) for _ in range(3)]

    _assert_clear_503(during)
    await _assert_nothing_lost(database_url, [before, *after])
