"""The records path skips the consent/suppression lookup for customers without any.

What it may not do: let a suppression recorded through this process go
unapplied for a moment, or one recorded through another replica for longer
than ``PRESENCE_TTL``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import AuditOutbox, AuditStore, AuditWriter, SubjectHasher
from gateway.storage import audit_tables, create_engine, writer
from gateway.storage.schema import subject_control_tables
from gateway.subject_controls import (
    ConsentStore,
    SubjectControls,
    SuppressionKind,
    SuppressionStore,
)
from gateway.subject_controls.lookup import PRESENCE_TTL, ControlsPresence, Presence
from policies import email_identifier, load_policy
from tests.subject_controls.conftest import CUSTOMER, make_actor

JANE = (email_identifier("jane@customer.example"),)
PURPOSE = "essential.service"
MARKETING = "marketing.communications"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Replica:
    """What one gateway process holds: its own presence cache, and the stores writing to it."""

    def __init__(
        self, engine: AsyncEngine, hasher: SubjectHasher, audit: AuditWriter, outbox: AuditOutbox
    ) -> None:
        policy = load_policy()
        self.engine = engine
        self.clock = FakeClock()
        self.presence = ControlsPresence(clock=self.clock)
        self.controls = SubjectControls(
            engine, subject_control_tables, hasher=hasher, presence=self.presence
        )
        self.suppressions = SuppressionStore(
            engine,
            subject_control_tables,
            hasher=hasher,
            audit=outbox,
            taxonomy=policy.taxonomy,
            presence=self.presence,
        )
        self.consents = ConsentStore(
            engine,
            subject_control_tables,
            hasher=hasher,
            audit=audit,
            outbox=outbox,
            policy=policy,
            presence=self.presence,
        )

    async def suppressed(self) -> bool:
        view = await self.controls.for_identifiers(CUSTOMER, PURPOSE, JANE, consent_required=False)
        return view.suppressed(JANE[0], PURPOSE)

    async def consented(self) -> bool:
        view = await self.controls.for_identifiers(CUSTOMER, MARKETING, JANE, consent_required=True)
        return view.consented(JANE[0])


@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[tuple[Replica, Replica]]:
    engine = create_engine(database_url)
    hasher = SubjectHasher(secrets.token_bytes(32))
    try:
        audit_store = AuditStore(writer(engine), audit_tables, read_engine=engine)
        async with AuditWriter(audit_store) as audit:
            outbox = AuditOutbox(engine, audit_tables, audit_store, audit)
            yield Replica(engine, hasher, audit, outbox), Replica(engine, hasher, audit, outbox)
    finally:
        await engine.dispose()


def test_the_window_is_a_few_seconds() -> None:
    assert 0 < PRESENCE_TTL <= 5


async def test_a_suppression_through_this_process_applies_at_once(
    replicas: tuple[Replica, Replica],
) -> None:
    one, _ = replicas
    assert not await one.suppressed()
    assert one.presence.get(CUSTOMER) == Presence(suppressions=False, consents=False)
    await one.suppressions.add(
        CUSTOMER, JANE, kind=SuppressionKind.ERASURE, reason="request pr_1", actor=make_actor()
    )
    assert await one.suppressed()  # no clock advance: the write dropped the cached answer


async def test_a_suppression_through_another_replica_applies_within_the_ttl(
    replicas: tuple[Replica, Replica],
) -> None:
    one, two = replicas
    assert not await one.suppressed()  # "acme has no suppressions" is now cached in one
    await two.suppressions.add(
        CUSTOMER, JANE, kind=SuppressionKind.ERASURE, reason="request pr_1", actor=make_actor()
    )
    assert await two.suppressed()
    one.clock.now += PRESENCE_TTL - 0.1
    assert not await one.suppressed()  # the documented window
    one.clock.now += 0.2
    assert await one.suppressed()


async def test_a_consent_through_this_process_applies_at_once(
    replicas: tuple[Replica, Replica],
) -> None:
    one, _ = replicas
    assert not await one.consented()
    await one.consents.record(CUSTOMER, JANE, purpose=MARKETING, actor=make_actor())
    assert await one.consented()


def test_a_read_that_began_before_a_write_does_not_cache_its_answer() -> None:
    presence = ControlsPresence(clock=FakeClock())
    read_at = presence.generation
    presence.changed(CUSTOMER)  # a suppression committed while the read was in flight
    presence.put(CUSTOMER, Presence(suppressions=False, consents=False), read_at=read_at)
    assert presence.get(CUSTOMER) is None


def test_entries_are_bounded() -> None:
    presence = ControlsPresence(size=2, clock=FakeClock())
    for customer in ("a", "b", "c"):
        presence.put(customer, Presence(False, False), read_at=presence.generation)
    assert presence.get("a") is None
    assert presence.get("c") is not None


async def test_concurrent_misses_share_one_read(replicas: tuple[Replica, Replica]) -> None:
    """The entry expires under load: 32 pages judged at once, one presence read."""
    one, _ = replicas
    assert not await one.suppressed()
    one.clock.now += PRESENCE_TTL + 0.01
    reads: list[str] = []

    def on_execute(*args: Any) -> None:
        if "EXISTS" in args[2].upper():
            reads.append(args[2])

    event.listen(one.engine.sync_engine, "before_cursor_execute", on_execute)
    answers = await asyncio.gather(*(one.suppressed() for _ in range(32)))
    assert answers == [False] * 32
    assert len(reads) == 1


async def test_a_miss_after_a_write_does_not_join_a_read_begun_before_it() -> None:
    presence = ControlsPresence(clock=FakeClock())
    release = asyncio.Event()
    none, some = Presence(False, False), Presence(suppressions=True, consents=False)

    async def old_read() -> Presence:
        await release.wait()
        return none

    async def new_read() -> Presence:
        return some

    before = asyncio.create_task(presence.load(CUSTOMER, old_read))
    await asyncio.sleep(0)
    presence.changed(CUSTOMER)  # a suppression committed while the read was in flight
    assert await presence.load(CUSTOMER, new_read) == some
    release.set()
    assert await before == none
    assert presence.get(CUSTOMER) == some
