"""Subject-control stores on a real, migrated database, and the live gateway stack."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import AuditOutbox, AuditStore, AuditWriter, SubjectHasher
from gateway.callers import Caller, CallerKind
from gateway.storage import audit_tables, create_engine, writer
from gateway.storage.schema import subject_control_tables
from gateway.subject_controls import ConsentStore, SubjectControls, SuppressionStore
from policies import load_policy
from policies.vocabulary import CallerClass
from tests.gateway.conftest import stack  # noqa: F401 - re-exported fixture

CUSTOMER = "acme"


@dataclass
class Stores:
    engine: AsyncEngine
    hasher: SubjectHasher
    consents: ConsentStore
    suppressions: SuppressionStore
    controls: SubjectControls
    audit: AuditWriter
    audit_outbox: AuditOutbox

    async def audit_events(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(audit_tables.events).order_by(
                    audit_tables.events.c.customer_id, audit_tables.events.c.seq
                )
            )
            return [dict(row) for row in rows.mappings()]

    async def table_text(self) -> str:
        """Every row of the consent and suppression tables, as one string."""
        parts: list[str] = []
        async with self.engine.connect() as conn:
            for table in (
                subject_control_tables.consents,
                subject_control_tables.consent_subjects,
                subject_control_tables.suppressions,
                subject_control_tables.suppression_subjects,
            ):
                parts.extend(repr(tuple(row)) for row in await conn.execute(select(table)))
        return "\n".join(parts)


def make_actor(caller_id: str = "svc_test", customers: tuple[str, ...] = (CUSTOMER,)) -> Caller:
    return Caller(
        id=caller_id,
        kind=CallerKind.SERVICE,
        name="crm",
        caller_class=CallerClass.INTERNAL,
        customers=frozenset(customers),
        purposes=frozenset({"essential.service"}),
        created_at=datetime.now(UTC),
    )


async def open_stores(database_url: str, secret: bytes) -> AsyncIterator[Stores]:
    engine = create_engine(database_url)
    hasher = SubjectHasher(secret)
    policy = load_policy()
    try:
        audit_store = AuditStore(writer(engine), audit_tables, read_engine=engine)
        async with AuditWriter(audit_store) as audit:
            outbox = AuditOutbox(engine, audit_tables, audit_store, audit)
            yield Stores(
                engine=engine,
                hasher=hasher,
                consents=ConsentStore(
                    engine,
                    subject_control_tables,
                    hasher=hasher,
                    audit=audit,
                    outbox=outbox,
                    policy=policy,
                ),
                suppressions=SuppressionStore(
                    engine,
                    subject_control_tables,
                    hasher=hasher,
                    audit=outbox,
                    taxonomy=policy.taxonomy,
                ),
                controls=SubjectControls(engine, subject_control_tables, hasher=hasher),
                audit=audit,
                audit_outbox=outbox,
            )
    finally:
        await engine.dispose()


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[Stores]:
    async for opened in open_stores(database_url, secrets.token_bytes(32)):
        yield opened
