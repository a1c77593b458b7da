"""The audit log by month on PostgreSQL: migration, routing, upkeep, retention by dropping.

Every test runs on a fresh database migrated through Alembic, as
``linkgate migrate`` builds it (the migration test stops at 0011, writes rows
in the old shape, then migrates on). SQLite stays unpartitioned; the migration
test runs there too, as its subject rows gain their events' times.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import (
    AuditEvent,
    AuditPartitions,
    AuditStore,
    CheckpointKeys,
    CheckpointSigner,
    EventDraft,
    genesis_hash,
    link,
)
from gateway.audit.append import event_row
from gateway.audit.partitions import month_start
from gateway.audit_jobs import audit_jobs, run_once
from gateway.config import Settings
from gateway.storage import audit_tables, create_engine
from gateway.storage.migrate import alembic_config, upgrade_async
from gateway.vault import generate_key_entry

MakeDraft = Callable[..., EventDraft]

postgres = pytest.mark.postgres


class Clock:
    """A clock the test moves: the store stamps events and checkpoints with it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def at(year: int, month: int, day: int = 1, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.fixture
async def pg_url(postgres_database: str) -> str:
    await upgrade_async(postgres_database)
    return postgres_database


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_url)
    yield engine
    await engine.dispose()


def driver_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def homes(engine: AsyncEngine, table: str) -> dict[tuple[str, int], str]:
    """Where each row lives: (customer, seq) -> the partition holding it."""
    rows = await _rows(
        engine,
        f"SELECT customer_id, seq, tableoid::regclass::text AS home FROM {table}",  # noqa: S608 - a test's own table name
    )
    return {(r.customer_id, r.seq): r.home for r in rows}


async def _rows(engine: AsyncEngine, sql: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


async def partition_names(engine: AsyncEngine) -> set[str]:
    return {p.name for p in await AuditPartitions(engine, audit_tables).partitions()}


def month_of(moment: datetime) -> str:
    return f"p{moment:%Y_%m}"


# -- migration --------------------------------------------------------------------------------


def old_chain(make_draft: MakeDraft, customer_id: str, times: list[datetime]) -> list[AuditEvent]:
    prev = genesis_hash(customer_id)
    events = []
    for seq, moment in enumerate(times, start=1):
        who = (f"email:p{seq % 3}@x.example", f"email:q{seq % 2}@x.example")
        event = link(make_draft(customer_id, who=who), seq, prev, moment)
        events.append(event)
        prev = event.hash
    return events


async def write_old_shape(engine: AsyncEngine, chains: list[list[AuditEvent]]) -> None:
    """Rows as revision 0011 stored them: subject rows without a time."""
    async with engine.begin() as conn:
        for events in chains:
            await conn.execute(audit_tables.events.insert(), [event_row(e) for e in events])
            subject_rows = [
                {"customer_id": e.customer_id, "subject_hash": s, "seq": e.seq}
                for e in events
                for s in e.subjects
            ]
            await conn.execute(
                text(
                    "INSERT INTO audit_subjects (customer_id, subject_hash, seq) "
                    "VALUES (:customer_id, :subject_hash, :seq)"
                ),
                subject_rows,
            )
            last = events[-1]
            await conn.execute(
                audit_tables.heads.insert().values(
                    customer_id=last.customer_id,
                    seq=last.seq,
                    hash=last.hash,
                    occurred_at=last.occurred_at,
                )
            )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=postgres)])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/linkgate.db"
    url: str = request.getfixturevalue("postgres_database")
    return url


async def test_migration_keeps_every_row_and_every_chain_verifies(
    unmigrated_url: str, make_draft: MakeDraft, keys: CheckpointKeys
) -> None:
    """Events of several customers over several months, with subjects, written before 0012:
    after the migration every row is there, each in its month's partition on PostgreSQL,
    each subject row carries its event's time, and every chain verifies; a downgrade
    gives the plain tables back with the same rows."""
    await upgrade_async(unmigrated_url, "0011")
    engine = create_engine(unmigrated_url)
    try:
        months = [at(2026, 5, 3), at(2026, 6, 14), at(2026, 7, 30, 23), at(2026, 8, 1)]
        chains = [
            old_chain(make_draft, customer, [m + timedelta(minutes=n) for m in months])
            for n, customer in enumerate(("acme", "globex", "initech"))
        ]
        await write_old_shape(engine, chains)
        before_events = await _rows(engine, "SELECT count(*) AS n FROM audit_events")
        before_subjects = await _rows(engine, "SELECT count(*) AS n FROM audit_subjects")

        await upgrade_async(unmigrated_url)

        store = AuditStore(engine, audit_tables, keys=keys)
        verdicts = [(await store.verify(c[0].customer_id)).ok for c in chains]
        after_events = await _rows(engine, "SELECT count(*) AS n FROM audit_events")
        untimed = await _rows(
            engine,
            "SELECT count(*) AS n FROM audit_subjects s JOIN audit_events e "
            "ON e.customer_id = s.customer_id AND e.seq = s.seq "
            "WHERE s.occurred_at IS DISTINCT FROM e.occurred_at",
        )
        after_subjects = await _rows(engine, "SELECT count(*) AS n FROM audit_subjects")
        assert (before_events[0].n, before_subjects[0].n, [True] * 3, 0) == (
            after_events[0].n,
            after_subjects[0].n,
            verdicts,
            untimed[0].n,
        )
        if engine.dialect.name != "postgresql":
            return
        expected = {
            (e.customer_id, e.seq): f"audit_events_{month_of(e.occurred_at)}"
            for chain in chains
            for e in chain
        }
        assert expected == await homes(engine, "audit_events")
        subject_homes = {home for home in (await homes(engine, "audit_subjects")).values()}
        assert {f"audit_subjects_{month_of(m)}" for m in months} == subject_homes

        await asyncio.to_thread(_downgrade, unmigrated_url, "0011")
        kinds = await _rows(
            engine,
            "SELECT relname, relkind::text AS relkind FROM pg_class "
            "WHERE relname IN ('audit_events', 'audit_subjects') ORDER BY relname",
        )
        restored = await _rows(engine, "SELECT count(*) AS n FROM audit_events")
        assert ([("audit_events", "r"), ("audit_subjects", "r")], before_events[0].n) == (
            [(k.relname, k.relkind) for k in kinds],
            restored[0].n,
        )
    finally:
        await engine.dispose()


def _downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


# -- appends and upkeep ----------------------------------------------------------------------


@postgres
async def test_appends_land_in_their_months_partition(
    pg: AsyncEngine, make_draft: MakeDraft, keys: CheckpointKeys
) -> None:
    """An event and its subject rows are stored in the partition of the month they occurred."""
    store = AuditStore(pg, audit_tables, keys=keys)
    [event] = await store.append([make_draft(who=("email:a@x.example",))])
    month = month_of(event.occurred_at)
    assert ({("acme", 1): f"audit_events_{month}"}, {("acme", 1): f"audit_subjects_{month}"}) == (
        await homes(pg, "audit_events"),
        await homes(pg, "audit_subjects"),
    )


@postgres
async def test_upkeep_moves_rows_that_reached_default_into_their_month(
    pg: AsyncEngine, make_draft: MakeDraft, keys: CheckpointKeys
) -> None:
    """An append dated beyond the created months lands in DEFAULT rather than fail; upkeep
    then creates that month and moves the rows into it, none lost, the chain intact."""
    far = datetime.now(UTC) + timedelta(days=250)
    store = AuditStore(pg, audit_tables, keys=keys, clock=Clock(far))
    await store.append([make_draft(who=("email:a@x.example", "email:b@x.example"))])
    await store.append([make_draft(who=("email:c@x.example",))])
    stranded = set((await homes(pg, "audit_events")).values())

    report = await AuditPartitions(pg, audit_tables).upkeep()

    month = month_of(far)
    assert (
        {"audit_events_default"},
        {"audit_events_" + month: 2, "audit_subjects_" + month: 3},
    ) == (
        stranded,
        report.moved,
    )
    assert {f"audit_events_{month}"} == set((await homes(pg, "audit_events")).values())
    assert {f"audit_subjects_{month}"} == set((await homes(pg, "audit_subjects")).values())
    assert (await store.verify("acme")).ok


@postgres
async def test_upkeep_creates_the_months_ahead_once(pg: AsyncEngine) -> None:
    """Upkeep creates the months missing up to ``months_ahead`` and nothing when they exist."""
    partitions = AuditPartitions(pg, audit_tables, months_ahead=5)
    first = await partitions.upkeep()
    again = await partitions.upkeep()
    ahead = datetime.now(UTC).replace(day=1) + timedelta(days=5 * 31)
    assert (len(first.created), again.created) == (4, [])  # months 4 and 5, both tables
    assert f"audit_events_{month_of(ahead.replace(day=1))}" in await partition_names(pg)


@postgres
async def test_upkeep_under_a_held_lock_gives_up_and_appends_go_on(
    pg: AsyncEngine, pg_url: str, make_draft: MakeDraft, keys: CheckpointKeys
) -> None:
    """While a long VACUUM or ANALYZE holds the events table (SHARE UPDATE EXCLUSIVE),
    upkeep waits only its lock timeout and leaves the months to the next round; an
    append meanwhile completes (before the holder lets go); the next round, the lock
    free, creates the months."""
    store = AuditStore(pg, audit_tables, keys=keys)
    await store.append([make_draft()])  # the statements are prepared: no catalog waits
    partitions = AuditPartitions(
        pg, audit_tables, months_ahead=6, lock_timeout=timedelta(milliseconds=300)
    )
    holder = await asyncpg.connect(driver_dsn(pg_url))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE audit_events IN SHARE UPDATE EXCLUSIVE MODE")
        upkeep = asyncio.create_task(partitions.upkeep())
        await asyncio.sleep(0.1)  # upkeep's DDL is queued for the lock now
        [event] = await store.append([make_draft()])
        report = await upkeep
        still_holding = holder.is_in_transaction()
        await transaction.rollback()
    finally:
        await holder.close()
    later = await partitions.upkeep()
    assert (event.seq, report.created, len(report.busy), still_holding) == (2, [], 3, True)
    assert len(later.created) == 2 * 3  # months 4, 5, 6 of both tables


@postgres
async def test_serve_start_up_creates_missing_months_without_a_signing_key(
    pg: AsyncEngine, pg_url: str, keys: CheckpointKeys
) -> None:
    """The audit jobs ``linkgate serve`` runs in its lifespan create a missing month before
    the app serves, though no audit signing key is configured."""
    month = month_start(month_start(datetime.now(UTC)) + timedelta(days=3 * 31))
    async with pg.begin() as conn:
        await conn.execute(
            text(f"DROP TABLE audit_events_{month_of(month)}, audit_subjects_{month_of(month)}")
        )
    missing = await partition_names(pg)
    settings = Settings(
        database_url=pg_url, vault_keys=generate_key_entry("t1"), secret_key="s" * 48
    )
    async with audit_jobs(AuditStore(pg, audit_tables, keys=keys), settings):
        present = await partition_names(pg)
    name = f"audit_events_{month_of(month)}"
    assert (settings.audit_key_file, name in missing, name in present) == ("", False, True)


# -- retention --------------------------------------------------------------------------------


async def three_months(
    pg: AsyncEngine,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
    clock: Clock,
    store: AuditStore,
    *,
    globex_signed: bool = True,
    early: bool = True,
) -> None:
    """acme and globex write in January, February and March 2025, with checkpoints signed
    on 2 February (covering January; unless not ``early``) and 12 February (covering
    February so far)."""
    await AuditPartitions(pg, audit_tables).create_months(at(2025, 1), at(2025, 3))
    for day in (5, 20):
        clock.now = at(2025, 1, day)
        await store.append([make_draft("acme", who=("email:a@x.example",)), make_draft("globex")])
    clock.now = at(2025, 2, 2)
    if early:
        await store.checkpoint(signer, "acme")
        if globex_signed:
            await store.checkpoint(signer, "globex")
    clock.now = at(2025, 2, 10)
    await store.append([make_draft("acme", who=("email:a@x.example",)), make_draft("globex")])
    clock.now = at(2025, 2, 12)
    await store.checkpoint(signer, "acme")
    if globex_signed:
        await store.checkpoint(signer, "globex")
    clock.now = at(2025, 3, 3)
    await store.append([make_draft("acme"), make_draft("globex")])


@postgres
@pytest.mark.parametrize(
    ("early", "first_kept"),
    [
        pytest.param(True, 3, id="checkpoint-at-the-months-end"),
        pytest.param(False, 4, id="checkpoint-in-the-next-month"),
    ],
)
async def test_prune_drops_an_expired_month_every_checkpoint_covers(
    pg: AsyncEngine,
    signer: CheckpointSigner,
    keys: CheckpointKeys,
    make_draft: MakeDraft,
    early: bool,
    first_kept: int,
) -> None:
    """With both customers' checkpoints past January, a cut-off of 20 February drops
    January's partitions (and only those: February is not wholly expired), and both
    chains still verify, each from the checkpoint it was pruned to (the first one
    after January: February's events up to it go with the month)."""
    clock = Clock(at(2025, 1, 1))
    store = AuditStore(pg, audit_tables, keys=keys, clock=clock)
    await three_months(pg, signer, make_draft, clock, store, early=early)

    dropped = await store.prune_partitions(at(2025, 2, 20))

    left = await partition_names(pg)
    assert sorted(p.name for p in dropped) == ["audit_events_p2025_01", "audit_subjects_p2025_01"]
    assert {"audit_events_p2025_02", "audit_subjects_p2025_02"} <= left
    assert "audit_events_p2025_01" not in left
    results = [await store.verify(c) for c in ("acme", "globex")]
    kept = 5 - first_kept
    assert [(r.ok, r.events_checked) for r in results] == [(True, kept), (True, kept)]
    firsts = await _rows(
        pg, "SELECT customer_id, min(seq) AS first FROM audit_events GROUP BY 1 ORDER BY 1"
    )
    outliving = await _rows(
        pg,
        f"SELECT count(*) AS n FROM audit_subjects WHERE seq < {first_kept}",  # noqa: S608
    )
    assert [(r.customer_id, r.first) for r in firsts] == [
        ("acme", first_kept),
        ("globex", first_kept),
    ]
    assert outliving[0].n == 0  # no subject row outlives its event


class DroppingStore(AuditStore):
    """Drops the months expired at ``cut_off`` once, after the first batch one of its
    verifications reads (that batch's read transaction ended)."""

    cut_off: datetime | None = None
    dropped: list[str]

    async def _feed_batch(self, *args: Any, **kwargs: Any) -> int | None:
        last: int | None = await super()._feed_batch(*args, **kwargs)
        if last is not None and self.cut_off is not None:
            cut_off, self.cut_off = self.cut_off, None
            self.dropped = [p.name for p in await self.prune_partitions(cut_off)]
        return last


@postgres
async def test_a_month_dropped_under_a_verification_restarts_it(
    pg: AsyncEngine, signer: CheckpointSigner, keys: CheckpointKeys, make_draft: MakeDraft
) -> None:
    """January is dropped after a verification read its first event: the verification
    finds the gap, sees the log's first event moved, and starts over from the checkpoint
    January was pruned to, reporting what a verification after the drop reports."""
    clock = Clock(at(2025, 1, 1))
    store = AuditStore(pg, audit_tables, keys=keys, clock=clock)
    await three_months(pg, signer, make_draft, clock, store)
    verifying = DroppingStore(pg, audit_tables, keys=keys, verify_batch=1)
    verifying.cut_off = at(2025, 2, 20)

    result = await verifying.verify("acme")

    assert verifying.dropped == ["audit_events_p2025_01", "audit_subjects_p2025_01"]
    assert (result.ok, result.events_checked, result) == (True, 2, await store.verify("acme"))


@postgres
async def test_prune_deletes_rows_when_one_customer_is_not_covered(
    pg: AsyncEngine, signer: CheckpointSigner, keys: CheckpointKeys, make_draft: MakeDraft
) -> None:
    """globex never signed a checkpoint: January stays whole, and acme's expired events go
    by the row delete instead; both chains verify."""
    clock = Clock(at(2025, 1, 1))
    store = AuditStore(pg, audit_tables, keys=keys, clock=clock)
    await three_months(pg, signer, make_draft, clock, store, globex_signed=False)

    dropped = await store.prune_partitions(at(2025, 2, 20))
    deleted = await store.prune("acme", at(2025, 2, 20))

    assert (dropped, deleted) == ([], 3)
    assert "audit_events_p2025_01" in await partition_names(pg)
    assert [(await store.verify(c)).ok for c in ("acme", "globex")] == [True, True]
    assert {("globex", 1), ("globex", 2)} <= set(await homes(pg, "audit_events"))


@postgres
async def test_run_once_reports_the_dropped_months(
    pg: AsyncEngine, signer: CheckpointSigner, keys: CheckpointKeys, make_draft: MakeDraft
) -> None:
    """The retention job drops whole months first, then deletes the rest per customer, and
    reports both."""
    clock = Clock(at(2025, 1, 1))
    store = AuditStore(pg, audit_tables, keys=keys, clock=clock)
    await three_months(pg, signer, make_draft, clock, store)
    clock.now = at(2025, 3, 4)
    report = await run_once(store, signer, retention_days=12, now=lambda: at(2025, 3, 4))
    assert (sorted(report.dropped), report.pruned, report.refused) == (
        ["audit_events_p2025_01", "audit_subjects_p2025_01"],
        {"acme": 1, "globex": 1},
        {},
    )
    assert [(await store.verify(c)).ok for c in ("acme", "globex")] == [True, True]


# -- search -----------------------------------------------------------------------------------


@postgres
async def test_subject_search_newest_first_across_months(
    pg: AsyncEngine, keys: CheckpointKeys, make_draft: MakeDraft, hasher: Any
) -> None:
    """A subject's events over three months come back newest first, page by page across
    the months' boundaries, and a time-bounded search returns only its month's events."""
    clock = Clock(at(2025, 1, 1))
    store = AuditStore(pg, audit_tables, keys=keys, clock=clock)
    await AuditPartitions(pg, audit_tables).create_months(at(2025, 1), at(2025, 3))
    mine: list[int] = []
    for month in (1, 2, 3):
        for day in (3, 9, 27):
            clock.now = at(2025, month, day)
            events = await store.append(
                [make_draft(who=("email:me@x.example",)), make_draft(who=("email:you@x.example",))]
            )
            mine.append(events[0].seq)
    subject = hasher.hash("acme", "email:me@x.example")
    found: list[int] = []
    cursor = None
    while True:
        page = await store.search(["acme"], subject_hash=subject, limit=4, before=cursor)
        found += [e.seq for e in page.events]
        cursor = page.next_cursor
        if cursor is None:
            break
    february = await store.search(
        ["acme"], subject_hash=subject, since=at(2025, 2), until=at(2025, 3)
    )
    assert (sorted(mine, reverse=True), sorted(mine[3:6], reverse=True)) == (
        found,
        [e.seq for e in february.events],
    )
