"""The database going away mid-traffic: clear 503 problems, nothing lost once it is back."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import select
from sqlalchemy.engine import make_url

from gateway.app import create_app
from gateway.audit import AuditStore
from gateway.storage import audit_tables, connections, create_engine
from tests.conftest import Servers, _admin, make_settings
from tests.gateway.conftest import CUSTOMER, Stack


async def _allow_connections(database: str, allowed: bool) -> None:
    await _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
    if not allowed:
        await _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 - our own test database name
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
async def test_an_unreachable_database_is_a_503_and_nothing_is_lost(
    database_url: str, stack: Stack
) -> None:
    """While PostgreSQL refuses connections every call is a 503 problem; afterwards all works."""
    await stack.link()
    database = str(make_url(stack.settings.database_url).database)
    async with stack.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()[
            "connections"
        ]
        records_url = f"/v1/connections/{connection['id']}/records/posts"
        params = {"purpose": "essential.service"}
        assert (await api.get(records_url, params=params)).status_code == 200

        await _allow_connections(database, False)
        try:
            during = [
                await api.get("/v1/connections", params={"customer_id": CUSTOMER}),
                await api.get(records_url, params=params),
                await api.get("/readyz"),
            ]
        finally:
            await _allow_connections(database, True)
        after = await api.get(records_url, params=params)

    for response in during:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "Traceback" not in response.text
    assert after.status_code == 200
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(connections))).mappings().one()
        verified = await AuditStore(engine, audit_tables).verify(CUSTOMER)
    finally:
        await engine.dispose()
    assert row["status"] == "active"
    assert verified.ok


async def test_a_database_never_migrated_is_not_ready(tmp_path: Path, servers: Servers) -> None:
    """The server is up but holds no Linkgate tables: /readyz is a 503 naming linkgate migrate.

    Readiness said "ready" (SELECT 1 answered) while every request failed, so
    a rollout would have routed traffic to a replica that could serve none.
    """
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/never-migrated.db")
    url = servers.reserve()
    gateway = servers.serve(url, create_app(settings, tracer_provider=TracerProvider()))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        ready = await client.get("/readyz")

    assert ready.status_code == 503, ready.text
    assert ready.headers["content-type"] == "application/problem+json"
    assert ready.json()["type"].endswith("/not-ready")
    assert "linkgate migrate" in ready.json()["detail"]
