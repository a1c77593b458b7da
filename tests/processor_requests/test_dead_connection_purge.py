"""The retention purge of a dead connection's tokens, on the live sandbox stack.

policy.toml keeps ``user.authorization`` (tokens of dead connections) for 7
days: a connection left in ``needs_reauth`` longer than that loses its sealed
tokens (its own and its scoped ones), keeps its row (the audit trail still
names it), and the purge says so in the audit log. The purge runs with a clock
moved forward, as it would run in ``serve`` a week later.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from gateway.audit import Action
from gateway.processor_requests.purge import PurgeReport, purge
from gateway.runtime import Runtime, open_runtime
from gateway.storage import connections
from tests.gateway.conftest import CUSTOMER, Stack

PURPOSE = "essential.service"


async def _dead_connection(stack: Stack) -> str:
    """Linked, then its refresh refused by the provider: needs_reauth with tokens still kept."""
    await stack.link()
    async with stack.api() as api:
        [linked] = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()[
            "connections"
        ]
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
    await stack.sandbox_faults(refresh="invalid_grant")
    async with stack.api() as api:
        refused = await api.get(
            f"/v1/connections/{linked['id']}/records/posts", params={"purpose": PURPOSE}
        )
    assert refused.status_code == 409, refused.text
    return str(linked["id"])


async def _tokens(runtime: Runtime, connection_id: str) -> tuple[str | None, bytes | None, bool]:
    async with runtime.engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    connections.c.status, connections.c.access_token, connections.c.refresh_token
                ).where(connections.c.id == connection_id)
            )
        ).one()
    return row.status, row.access_token, row.refresh_token is not None


async def _purge(runtime: Runtime, days_later: int) -> PurgeReport:
    later = datetime.now(UTC) + timedelta(days=days_later)
    return await purge(
        runtime.engine, runtime.audit_outbox, runtime.policy.policy, now=lambda: later
    )


async def test_a_dead_connections_tokens_are_purged_after_their_retention_period(
    stack: Stack,
) -> None:
    connection_id = await _dead_connection(stack)
    async with open_runtime(stack.settings) as runtime:
        status, access, has_refresh = await _tokens(runtime, connection_id)
        assert (status, access is not None, has_refresh) == ("needs_reauth", True, True)
        # A per-object token kept beside it, as Facebook's Page tokens are.
        scoped = runtime.connections.scoped
        await scoped.replace(connection_id, {"page-1": "scoped-token-canary"})

        within = await _purge(runtime, days_later=6)
        assert "connection_tokens" not in within.totals()
        assert (await _tokens(runtime, connection_id))[1] is not None

        assert await scoped.object_ids(connection_id) == ["page-1"]

        past = await _purge(runtime, days_later=8)
        assert past.deleted["connection_tokens"] == {CUSTOMER: 1}
        assert past.deleted["scoped_tokens"] == {CUSTOMER: 1}
        assert await _tokens(runtime, connection_id) == ("needs_reauth", None, False)
        assert await scoped.object_ids(connection_id) == []

        again = await _purge(runtime, days_later=8)
        assert "connection_tokens" not in again.totals()

        events = await runtime.audit_store.search([CUSTOMER], action=Action.RETENTION_PURGED.value)
        purged = sorted(
            (e.resource, e.record_count)
            for e in events.events
            if e.resource in {"connection_tokens", "scoped_tokens"}
        )
        assert purged == [("connection_tokens", 1), ("scoped_tokens", 1)]

    async with stack.api() as api:
        shown = await api.get(f"/v1/connections/{connection_id}")
        still_refused = await api.get(
            f"/v1/connections/{connection_id}/records/posts", params={"purpose": PURPOSE}
        )
    assert shown.status_code == 200
    assert shown.json()["status"] == "needs_reauth"
    assert still_refused.json()["type"].endswith("connection-needs-reauth")


async def test_a_live_connections_tokens_are_never_purged(stack: Stack) -> None:
    await stack.link()
    async with stack.api() as api:
        [linked] = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()[
            "connections"
        ]
    async with open_runtime(stack.settings) as runtime:
        report = await _purge(runtime, days_later=365)
        assert "connection_tokens" not in report.totals()
        status, access, has_refresh = await _tokens(runtime, linked["id"])
    assert (status, access is not None, has_refresh) == ("active", True, True)
    async with stack.api() as api:
        read = await api.get(
            f"/v1/connections/{linked['id']}/records/posts", params={"purpose": PURPOSE}
        )
    assert read.status_code == 200, read.text
