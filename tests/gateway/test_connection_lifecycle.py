"""Ending a grant and deleting a connection take every token with them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import Action, AuditOutbox, AuditStore, AuditWriter, EventDraft, Outcome
from gateway.connections import Connection, ConnectionStore, Status
from gateway.oauth import TokenSet
from gateway.provider_tokens import ScopedTokenStore
from gateway.storage import audit_tables, connections, create_engine, writer
from gateway.storage.schema import provider_tokens
from gateway.vault import KeyRing, generate_key_entry
from providers.base import Account

RING = KeyRing.parse(generate_key_entry("k1"))


async def _linked(store: ConnectionStore, engine: AsyncEngine) -> str:
    connection, _ = await store.link(
        customer_id="acme", provider="facebook",
        account=Account(subject="u1", name="Ada", issuer="facebook"),
        tokens=TokenSet(access_token="at", token_type="Bearer", expires_at=None,
                        refresh_token="rt"),
        scopes=("pages_read_engagement",),
    )  # fmt: skip
    await ScopedTokenStore(engine, RING).replace(connection.id, {"page_1": "page-token"})
    return connection.id


async def test_suppressing_forgets_own_and_scoped_tokens(database_url: str) -> None:
    """Consent withdrawal (suppressed) leaves no access, refresh or Page token behind."""
    engine = create_engine(database_url)
    try:
        store = ConnectionStore(engine, RING)
        connection_id = await _linked(store, engine)

        await store.end_grant(connection_id, status=Status.SUPPRESSED, reason="consent withdrawn")

        async with engine.connect() as conn:
            row = (await conn.execute(select(connections))).mappings().one()
            scoped = (
                await conn.execute(select(func.count()).select_from(provider_tokens))
            ).scalar()
    finally:
        await engine.dispose()
    assert (row["status"], row["access_token"], row["refresh_token"]) == ("suppressed", None, None)
    assert scoped == 0


async def test_deleting_removes_the_row_and_its_scoped_tokens(database_url: str) -> None:
    """Erasing the account holder deletes the connection and its Page tokens."""
    engine = create_engine(database_url)
    try:
        store = ConnectionStore(engine, RING)
        connection_id = await _linked(store, engine)

        await store.delete(connection_id)

        async with engine.connect() as conn:
            rows = (await conn.execute(select(func.count()).select_from(connections))).scalar()
            scoped = (
                await conn.execute(select(func.count()).select_from(provider_tokens))
            ).scalar()
    finally:
        await engine.dispose()
    assert (rows, scoped) == (0, 0)


async def test_a_link_made_while_the_audit_log_is_down_is_audited_once_by_the_drain(
    database_url: str,
) -> None:
    """The link stands (the provider already issued its tokens) and so does its
    ``connection.created`` event, committed with the row and appended by the drain."""
    engine = create_engine(database_url)
    try:
        audit_store = AuditStore(writer(engine), audit_tables, read_engine=engine)
        outbox = AuditOutbox(engine, audit_tables, audit_store, AuditWriter(audit_store))

        def created(linked: Connection) -> EventDraft:
            return EventDraft(
                customer_id="acme",
                action=Action.CONNECTION_CREATED,
                outcome=Outcome.ALLOWED,
                connection_id=linked.id,
                provider=linked.provider,
            )

        connection, was_new = await ConnectionStore(engine, RING, audit=outbox).link(
            customer_id="acme",
            provider="facebook",
            account=Account(subject="u1", name="Ada", issuer="facebook"),
            tokens=TokenSet(
                access_token="at", token_type="Bearer", expires_at=None, refresh_token="rt"
            ),
            scopes=("pages_read_engagement",),
            audit_as=created,
        )  # fmt: skip  (the writer was never started: every append fails)
        assert was_new
        assert [e async for e in audit_store.events("acme")] == []

        assert await outbox.drain() == 1
        assert await outbox.drain() == 0
        events = [e async for e in audit_store.events("acme")]
        assert [(str(e.action), e.connection_id) for e in events] == [
            ("connection.created", connection.id)
        ]
        assert (await audit_store.verify("acme")).ok
    finally:
        await engine.dispose()
