"""Several `linkgate serve` processes on one PostgreSQL database, with concurrent traffic.

(The cross-process single-flight refresh is proven in tests/records.)
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from sqlalchemy import select

from gateway.audit import Action, AuditStore
from gateway.storage import audit_tables, create_engine
from tests.replicas.conftest import CUSTOMER, PURPOSE, Replica, StartCluster

pytestmark = pytest.mark.postgres

READS_PER_REPLICA = 40
CONCURRENCY = 24


async def _read(client: httpx.AsyncClient, connection_id: str) -> httpx.Response:
    return await client.get(
        f"/v1/connections/{connection_id}/records/posts", params={"purpose": PURPOSE}
    )


class Acknowledged:
    """Trace ids of 200 responses per replica; lets the test wait for a count."""

    def __init__(self, *names: str) -> None:
        self.traces: dict[str, list[str]] = {name: [] for name in names}
        self._waiting: list[tuple[str, int, asyncio.Event]] = []

    def add(self, name: str, trace_id: str) -> None:
        self.traces[name].append(trace_id)
        for wanted, count, reached in self._waiting:
            if wanted == name and len(self.traces[name]) >= count:
                reached.set()

    async def reach(self, name: str, count: int) -> None:
        reached = asyncio.Event()
        self._waiting.append((name, count, reached))
        if len(self.traces[name]) >= count:
            reached.set()
        await reached.wait()


async def _audit_trace_ids(database_url: str) -> set[str]:
    events = audit_tables.events
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(events.c.trace_id).where(events.c.action == Action.RECORDS_READ.value)
            )
            return {row.trace_id for row in rows}
    finally:
        await engine.dispose()


async def test_audit_chain_stays_gapless_and_valid_under_reads_through_three_replicas(
    start_cluster: StartCluster, audit: AuditStore
) -> None:
    """Concurrent reads through three processes: one event per read, seq 1..N, chain verifies."""
    cluster = await start_cluster(3)
    assert (await cluster.link(cluster.replicas[0], cluster.replicas[0])).status_code == 200
    connection_id = await cluster.connection_id(cluster.replicas[0])
    clients = [cluster.api(replica) for replica in cluster.replicas]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def read(client: httpx.AsyncClient) -> httpx.Response:
        async with gate:
            return await _read(client, connection_id)

    try:
        responses = await asyncio.gather(
            *(read(client) for _ in range(READS_PER_REPLICA) for client in clients)
        )
    finally:
        for client in clients:
            await client.aclose()
    assert [r.status_code for r in responses] == [200] * (READS_PER_REPLICA * 3)
    events = [event async for event in audit.events(CUSTOMER)]
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    reads = [event for event in events if event.action is Action.RECORDS_READ]
    assert sorted(e.trace_id or "" for e in reads) == sorted(
        r.json()["trace_id"] for r in responses
    )
    result = await audit.verify(CUSTOMER)
    assert (result.ok, result.events_checked) == (True, len(events))


async def test_connect_flow_started_on_one_replica_finishes_on_another(
    start_cluster: StartCluster,
) -> None:
    """The portal click lands on replica 1, the provider's callback on replica 2: linked."""
    cluster = await start_cluster(2)
    first, second = cluster.replicas
    callback = await cluster.link(first, second)
    assert callback.status_code == 200, callback.text
    async with cluster.api(first) as api:
        listed = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    [connection] = listed.json()["connections"]
    assert (connection["provider"], connection["status"]) == ("sandbox", "active")


async def test_a_replica_killed_mid_traffic_loses_no_acknowledged_audit_event(
    start_cluster: StartCluster, audit: AuditStore
) -> None:
    """SIGKILL one of two replicas under load: every 200 it or the other sent is in the log."""
    cluster = await start_cluster(2)
    survivor, victim = cluster.replicas
    assert (await cluster.link(survivor, survivor)).status_code == 200
    connection_id = await cluster.connection_id(survivor)
    acknowledged = Acknowledged(survivor.name, victim.name)
    refused = 0
    stop = asyncio.Event()

    async def traffic(replica: Replica) -> None:
        nonlocal refused
        async with cluster.api(replica) as client:
            while not stop.is_set():
                try:
                    response = await _read(client, connection_id)
                except httpx.TransportError:
                    refused += 1  # never acknowledged: the process died under it
                    await asyncio.sleep(0.01)
                    continue
                if response.status_code == 200:
                    acknowledged.add(replica.name, response.json()["trace_id"])

    workers = [
        asyncio.create_task(traffic(replica))
        for replica in itertools.islice(itertools.cycle(cluster.replicas), 16)
    ]
    try:
        async with asyncio.timeout(60):
            await acknowledged.reach(victim.name, 60)
            await asyncio.to_thread(victim.kill)
            await acknowledged.reach(survivor.name, len(acknowledged.traces[survivor.name]) + 60)
    finally:
        stop.set()
        await asyncio.gather(*workers)

    logged = await _audit_trace_ids(cluster.database_url)
    missing = {
        name: [trace for trace in traces if trace not in logged]
        for name, traces in acknowledged.traces.items()
    }
    assert missing == {survivor.name: [], victim.name: []}
    assert refused > 0, "the kill landed mid-traffic"
    assert (await audit.verify(CUSTOMER)).ok
