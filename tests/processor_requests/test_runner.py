"""The runner and the store on real databases: resuming, duplicates, overdue, the purge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from gateway.audit import Action
from gateway.processor_requests.jobs import services
from gateway.processor_requests.machine import Jurisdiction, Kind, Status
from gateway.processor_requests.purge import purge
from gateway.processor_requests.runner import Runner
from gateway.processor_requests.steps import Services
from gateway.processor_requests.store import DuplicateRequest, Filing, RequestStore
from gateway.runtime import Runtime, open_runtime
from gateway.storage.schema import connect_sessions, processor_request_tables
from policies import email_identifier, phone_identifier
from tests.conftest import make_settings

# The events an erasure's run leaves, sorted by name: its filing, each step and its end.
ERASURE_EVENTS = [
    "completed",
    "delete_stored_files",
    "disconnect_account_holder",
    "received",
    "suppress",
    "verified",
    "withdraw_consents",
]
CUSTOMER = "acme"
SUBJECT = (email_identifier("jane@customer.example"), phone_identifier("+1 415 555 0100"))


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    async with open_runtime(make_settings(database_url)) as built:
        yield built


def _later(runtime: Runtime, minutes: int) -> Services:
    """The same services with a clock ``minutes`` ahead (a restart after the lease lapsed)."""
    base = services(runtime)
    store = RequestStore(
        runtime.engine,
        processor_request_tables,
        vault=runtime.vault,
        hasher=runtime.subjects,
        outbox=runtime.audit_outbox,
        clock=lambda: datetime.now(UTC) + timedelta(minutes=minutes),
    )
    return Services(**{**{f: getattr(base, f) for f in base.__slots__}, "store": store})


async def _step_events(runtime: Runtime, request_id: str) -> list[str]:
    page = await runtime.audit_store.search(
        [CUSTOMER], action=Action.PROCESSOR_REQUEST_STEP.value, limit=1000
    )
    prefix = f"processor_request/{request_id}/"
    return sorted(
        (e.resource or "").removeprefix(prefix)
        for e in page.events
        if (e.resource or "").startswith(prefix)
    )


async def test_a_restart_mid_request_resumes_without_repeating_a_step(runtime: Runtime) -> None:
    """Stopped after two steps, a later runner does the other two; each step happens once."""
    first = services(runtime)
    filed = await first.store.file(
        Filing(customer_id=CUSTOMER, kind=Kind.ERASURE, identifiers=SUBJECT, verified_by="dpo"),
        actor_id="svc_test",
        actor_class="internal",
    )
    claimed = await first.store.claim()
    assert claimed is not None
    paused = await Runner(first).run(claimed, max_steps=2)
    assert paused.status is Status.RUNNING
    assert await first.store.claim() is None  # the lease still holds

    restarted = _later(runtime, minutes=10)
    resumed = await Runner(restarted).run_next()

    assert resumed is not None
    assert resumed.status is Status.COMPLETED
    assert await _step_events(runtime, filed.id) == ERASURE_EVENTS
    assert (await runtime.suppressions.counts(CUSTOMER))["erasure"] == 1


async def test_identifiers_are_deleted_when_the_request_finishes(runtime: Runtime) -> None:
    """The sealed clear identifiers live only while the request is open."""
    svc = services(runtime)
    filed = await svc.store.file(
        Filing(customer_id=CUSTOMER, kind=Kind.OBJECTION, identifiers=SUBJECT, verified_by="dpo"),
        actor_id="svc_test",
        actor_class="internal",
    )
    t = processor_request_tables.requests
    query = select(t.c.sealed_subject).where(t.c.id == filed.id)
    async with runtime.engine.connect() as conn:
        assert (await conn.execute(query)).scalar_one() is not None
    await Runner(svc).run_all()
    async with runtime.engine.connect() as conn:
        assert (await conn.execute(query)).scalar_one() is None


async def test_a_later_request_lifts_a_restriction(runtime: Runtime) -> None:
    """Restriction for one purpose, then lifted by a restriction request with lift."""
    svc = services(runtime)
    for lift in (False, True):
        await svc.store.file(
            Filing(
                customer_id=CUSTOMER,
                kind=Kind.RESTRICTION,
                identifiers=SUBJECT,
                purposes=("marketing.communications",),
                lift=lift,
                verified_by="dpo",
            ),
            actor_id="svc_test",
            actor_class="internal",
        )
        await Runner(svc).run_all()
    assert (await runtime.suppressions.counts(CUSTOMER))["restriction"] == 0


async def test_duplicates_of_an_open_request_are_refused_and_closed_ones_are_not(
    runtime: Runtime,
) -> None:
    """Same customer, kind and subject: refused while open, accepted once the first finished."""
    svc = services(runtime)
    filing = Filing(customer_id=CUSTOMER, kind=Kind.ACCESS, identifiers=SUBJECT)
    await svc.store.file(filing, actor_id="svc_test", actor_class="internal")
    with pytest.raises(DuplicateRequest):
        await svc.store.file(filing, actor_id="svc_test", actor_class="internal")
    other = Filing(customer_id="globex", kind=Kind.ACCESS, identifiers=SUBJECT)
    assert (await svc.store.file(other, actor_id="svc_test", actor_class="internal")).id


async def test_overdue_requests_are_listed(runtime: Runtime) -> None:
    """31 days on, a GDPR request still open is overdue; a CCPA one is not yet."""
    svc = services(runtime)
    for kind, jurisdiction in ((Kind.ACCESS, "gdpr"), (Kind.ERASURE, "ccpa")):
        await svc.store.file(
            Filing(
                customer_id=CUSTOMER,
                kind=kind,
                identifiers=SUBJECT,
                jurisdiction=Jurisdiction(jurisdiction),
            ),
            actor_id="svc_test",
            actor_class="internal",
        )
    later = _later(runtime, minutes=31 * 24 * 60).store
    overdue = await later.search([CUSTOMER], overdue=True)
    assert [r.kind for r in overdue] == [Kind.ACCESS]


async def test_the_purge_deletes_expired_sessions_and_audits_it(runtime: Runtime) -> None:
    """An expired connect session is deleted and a retention.purged event says so."""
    past = datetime.now(UTC) - timedelta(hours=1)
    async with runtime.engine.begin() as conn:
        await conn.execute(
            insert(connect_sessions).values(
                id="cs_old",
                token_hash="0" * 64,
                customer_id=CUSTOMER,
                providers=[],
                created_by="svc_test",
                created_at=past - timedelta(minutes=15),
                expires_at=past,
            )
        )
    report = await purge(runtime.engine, runtime.audit_outbox, runtime.policy.policy)
    assert report.totals() == {"connect_sessions": 1}
    page = await runtime.audit_store.search([CUSTOMER], action=Action.RETENTION_PURGED.value)
    assert [(e.resource, e.record_count) for e in page.events] == [("connect_sessions", 1)]


async def test_a_request_filed_while_the_audit_log_is_down_is_audited_once_by_the_drain(
    runtime: Runtime,
) -> None:
    """Filed (and so guarded by the duplicate check) with its events committed alongside:
    a caller filing again meets its own request, and the drain appends the events once."""
    store = services(runtime).store
    await runtime.audit.stop()  # every append fails from here on
    filing = Filing(customer_id=CUSTOMER, kind=Kind.ERASURE, identifiers=SUBJECT, verified_by="dpo")
    filed = await store.file(filing, actor_id="svc_test", actor_class="internal")
    with pytest.raises(DuplicateRequest):
        await store.file(filing, actor_id="svc_test", actor_class="internal")
    assert await _step_events(runtime, filed.id) == []

    assert await runtime.audit_outbox.drain() == 2
    assert await runtime.audit_outbox.drain() == 0
    assert await _step_events(runtime, filed.id) == ["received", "verified"]
    assert (await runtime.audit_store.verify(CUSTOMER)).ok
