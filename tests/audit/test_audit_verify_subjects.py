"""Verification checks the subject-search rows against the subjects each event's hashed
content names, without reading a seq range of them per batch (real SQLite and PostgreSQL).

Every expected row is probed by its primary key, batch by batch; a row that no
content names shows in one count of the customer's rows, and a second pass then
names its event. See gateway/audit/subject_rows.py.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit import (
    AuditStore,
    AuditTables,
    CheckpointKeys,
    CheckpointSigner,
    EventDraft,
    SubjectHasher,
)

MakeDraft = Callable[..., EventDraft]

BATCH_SIZES = (1, 2, 3, 1000)


def subjects_differ(seq: int) -> str:
    return f"event {seq}: search column subjects differs from the hashed content"


async def fill(store: AuditStore, make_draft: MakeDraft, n: int, customer: str = "acme") -> None:
    """``n`` events of ``customer``, each touching two of four people."""
    for i in range(n):
        who = (f"email:p{i % 4}@x.example", f"email:p{(i + 1) % 4}@x.example")
        await store.append([make_draft(customer, who=who)])


async def verdicts(
    engine: AsyncEngine, tables: AuditTables, keys: CheckpointKeys
) -> list[tuple[bool, int | None, str]]:
    """The verdict on acme's chain, read in batches of each of ``BATCH_SIZES``."""
    out = []
    for size in BATCH_SIZES:
        result = await AuditStore(engine, tables, keys=keys, verify_batch=size).verify("acme")
        out.append((result.ok, result.first_bad_seq, result.problem))
    return out


Tamper = Callable[[AsyncConnection, AuditTables, SubjectHasher], Awaitable[None]]


async def add_a_row(conn: AsyncConnection, t: AuditTables, hasher: SubjectHasher) -> None:
    """A search for this person would list event 5, which never touched them."""
    subject = hasher.hash("acme", "email:m@x.example")
    await conn.execute(
        insert(t.subjects).values(
            customer_id="acme",
            subject_hash=subject,
            seq=5,
            occurred_at=await event_time(conn, t, "acme", 5),
        )
    )


async def event_time(conn: AsyncConnection, t: AuditTables, customer_id: str, seq: int) -> Any:
    """The time an event's subject rows are filed under (its own)."""
    e = t.events
    query = select(e.c.occurred_at).where(e.c.customer_id == customer_id, e.c.seq == seq)
    return (await conn.execute(query)).scalar_one()


async def move_rows(conn: AsyncConnection, t: AuditTables, _hasher: SubjectHasher) -> None:
    """Event 2's rows moved to event 8, which names other people: the count is unchanged."""
    s = t.subjects
    await conn.execute(update(s).where(s.c.customer_id == "acme", s.c.seq == 2).values(seq=8))


async def refile_a_row(conn: AsyncConnection, t: AuditTables, _hasher: SubjectHasher) -> None:
    """Event 4's rows filed under another time: a search bounded to event 4's time (or,
    on PostgreSQL, reading event 4's month) would miss it."""
    s = t.subjects
    later = await event_time(conn, t, "acme", 4) + timedelta(days=40)
    await conn.execute(
        update(s).where(s.c.customer_id == "acme", s.c.seq == 4).values(occurred_at=later)
    )


async def drop_a_row_and_break_a_link(
    conn: AsyncConnection, t: AuditTables, _hasher: SubjectHasher
) -> None:
    """Event 3 loses a row; the chain breaks at event 6, where reading stops."""
    s, e = t.subjects, t.events
    await conn.execute(s.delete().where(s.c.customer_id == "acme", s.c.seq == 3))
    await conn.execute(update(e).where(e.c.seq == 6).values(prev_hash="0" * 64))


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        pytest.param(add_a_row, 5, id="row-no-content-names"),
        pytest.param(move_rows, 2, id="rows-moved-to-another-event"),
        pytest.param(refile_a_row, 4, id="rows-filed-under-another-time"),
        pytest.param(drop_a_row_and_break_a_link, 3, id="row-missing-before-a-broken-link"),
    ],
)
async def test_a_subject_index_that_differs_from_the_log_is_named_at_its_first_event(
    engine: AsyncEngine,
    tables: AuditTables,
    store: AuditStore,
    keys: CheckpointKeys,
    hasher: SubjectHasher,
    make_draft: MakeDraft,
    tamper: Tamper,
    first_bad: int,
) -> None:
    """A subject row added, moved or deleted fails verification at the first event whose
    rows differ from its content (a row no content names found by the count, one
    missing by its probe), with the same verdict whatever the batch size."""
    await fill(store, make_draft, 9)
    async with engine.begin() as conn:
        await tamper(conn, tables, hasher)
    expected = (False, first_bad, subjects_differ(first_bad))
    assert await verdicts(engine, tables, keys) == [expected] * len(BATCH_SIZES)


async def test_another_customers_subject_rows_do_not_count(
    engine: AsyncEngine,
    tables: AuditTables,
    store: AuditStore,
    keys: CheckpointKeys,
    hasher: SubjectHasher,
    make_draft: MakeDraft,
) -> None:
    """Subject rows of another customer at the same seqs (its own chain's, and one
    no content of its names) do not count against this customer's chain."""
    await fill(store, make_draft, 5)
    await fill(store, make_draft, 5, customer="globex")
    async with engine.begin() as conn:
        await conn.execute(
            insert(tables.subjects).values(
                customer_id="globex",
                subject_hash=hasher.hash("globex", "email:m@x"),
                seq=3,
                occurred_at=await event_time(conn, tables, "globex", 3),
            )
        )
    acme = await verdicts(engine, tables, keys)
    globex = await store.verify("globex")
    assert acme == [(True, None, "")] * len(BATCH_SIZES)
    assert (globex.ok, globex.first_bad_seq, globex.problem) == (False, 3, subjects_differ(3))


class Intercepting(AuditStore):
    """Runs ``after_last_batch`` once, after the batch that reaches the chain's end
    has been read and before verification counts the subject rows."""

    def __init__(self, *args: Any, after_last_batch: Callable[[], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_last_batch = after_last_batch

    async def _feed_batch(self, *args: Any, **kwargs: Any) -> int | None:
        last: int | None = await super()._feed_batch(*args, **kwargs)
        if last is None and self.after_last_batch is not None:
            run, self.after_last_batch = self.after_last_batch, None
            await run()
        return last


async def test_an_append_before_the_count_is_past_what_it_counts(
    engine: AsyncEngine,
    tables: AuditTables,
    store: AuditStore,
    keys: CheckpointKeys,
    make_draft: MakeDraft,
) -> None:
    """Events (and their subject rows) appended after the last batch was read are past
    the head the verification started from: the count leaves them out."""
    await fill(store, make_draft, 7)

    async def append() -> None:
        await fill(store, make_draft, 3)

    verifying = Intercepting(engine, tables, keys=keys, verify_batch=3, after_last_batch=append)
    result = await verifying.verify("acme")
    assert (result.ok, result.events_checked, result.head_seq) == (True, 7, 7)
    assert (await store.verify("acme")).events_checked == 10


async def test_a_prune_before_the_count_restarts_the_verification(
    engine: AsyncEngine,
    tables: AuditTables,
    store: AuditStore,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """A prune that deletes verified events and their subject rows before they are
    counted makes the count disagree; verification tells it from tampering (the first
    kept event moved) and starts over, as for a prune between batches."""
    await fill(store, make_draft, 6)
    checkpoint = await store.checkpoint(signer, "acme")
    await fill(store, make_draft, 3)
    assert checkpoint is not None
    pruned: list[int] = []

    async def prune() -> None:
        pruned.append(await store.prune("acme", checkpoint.signed_at.replace(year=3000)))

    verifying = Intercepting(engine, tables, keys=keys, after_last_batch=prune)
    result = await verifying.verify("acme")
    assert (pruned, result.ok, result.events_checked, result.head_seq) == ([6], True, 3, 9)


def _subject_statements(engine: AsyncEngine) -> list[tuple[str, Any]]:
    """Every statement the engine runs that reads audit_subjects, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "audit_subjects" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen


async def _plan(engine: AsyncEngine, statement: str, parameters: Any) -> str:
    """The database's plan for ``statement``, as text."""
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in rows)
        # A test-sized table is cheaper to read whole than through an index; the
        # question here is whether the statement lets the key bound each read.
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        return json.dumps(rows.scalar_one())


async def test_per_batch_subject_reads_are_bounded_by_the_whole_primary_key(
    engine: AsyncEngine, tables: AuditTables, keys: CheckpointKeys, make_draft: MakeDraft
) -> None:
    """What verification asks of audit_subjects once per batch names a subject, a seq
    and its time, so the primary key bounds each read to one row (and, on PostgreSQL,
    one month's partition); only the one count per
    verification reads the customer's rows whole. (A seq range of one customer's
    rows, as this check once read per batch, is bounded by the key's first column
    only: each batch read every subject row of the customer.)"""
    store = AuditStore(engine, tables, keys=keys, verify_batch=2)
    await fill(store, make_draft, 6)
    seen = _subject_statements(engine)
    assert (await store.verify("acme")).ok
    per_batch = {statement for statement, _ in seen if sum(s == statement for s, _ in seen) > 1}
    plans = [
        await _plan(engine, statement, parameters)
        for statement, parameters in {s: p for s, p in seen if s in per_batch}.items()
    ]
    assert (len(seen), len(per_batch), len(plans)) == (4, 1, 1)
    if engine.dialect.name == "sqlite":
        key = "(customer_id=? AND subject_hash=? AND seq=? AND occurred_at=?)"
        assert key in plans[0], plans[0]
    else:
        conditions = [line for line in plans[0].split('"') if "subject_hash =" in line]
        # With the time, PostgreSQL can keep each probe to one month's partition.
        assert any(
            "seq =" in condition and "occurred_at =" in condition for condition in conditions
        ), plans[0]
        assert "Hash" not in plans[0], plans[0]
