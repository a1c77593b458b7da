"""The audit store on real SQLite and PostgreSQL: appends, tampering, search, retention, outages."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit import (
    Action,
    AuditEvent,
    AuditStore,
    AuditTables,
    AuditUnavailable,
    AuditWriter,
    ChainBroken,
    CheckpointKeys,
    CheckpointSigner,
    EventDraft,
    Outcome,
    SubjectHasher,
    define_audit_tables,
    link,
)
from gateway.audit.append import event_row

MakeDraft = Callable[..., EventDraft]
NewEngine = Callable[[str], AsyncEngine]


class Clock:
    """A controllable UTC clock that ticks one second per reading."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class CountingStore(AuditStore):
    """Counts transactions, to show that the writer groups commits."""

    appends = 0

    async def append(self, drafts: Sequence[EventDraft]) -> list[AuditEvent]:
        self.appends += 1
        return await super().append(drafts)


async def fill(store: AuditStore, make_draft: MakeDraft, n: int = 10) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    for i in range(n):
        events += await store.append(
            [make_draft(record_count=i, who=(f"email:p{i % 3}@x.example",))]
        )
    return events


async def test_append_links_a_gapless_chain(store: AuditStore, make_draft: MakeDraft) -> None:
    """Appends in one batch and across batches continue one chain from seq 1."""
    first = await store.append([make_draft(), make_draft("globex"), make_draft()])
    second = await store.append([make_draft()])
    assert [(e.customer_id, e.seq) for e in [*first, *second]] == [
        ("acme", 1),
        ("globex", 1),
        ("acme", 2),
        ("acme", 3),
    ]
    assert second[0].prev_hash == first[2].hash
    result = await store.verify("acme")
    assert (True, 3, 3, second[0].hash) == (
        result.ok,
        result.events_checked,
        result.head_seq,
        result.head_hash,
    )


async def test_concurrent_writer_appends_leave_a_valid_chain(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """Fifty tasks recording at once through the writer get seqs 1..50 in fewer commits."""
    store = CountingStore(engine, tables)
    async with AuditWriter(store) as writer:
        events = await asyncio.gather(
            *(writer.record(make_draft(record_count=i)) for i in range(50))
        )
    assert list(range(1, 51)) == sorted(e.seq for e in events)
    assert store.appends < 50
    result = await store.verify("acme")
    assert (result.ok, result.head_seq) == (True, 50)


async def test_concurrent_direct_appends_serialize_per_customer(
    store: AuditStore, make_draft: MakeDraft
) -> None:
    """Twenty transactions racing on one customer (no writer) still leave a gapless chain."""
    batches = await asyncio.gather(
        *(store.append([make_draft(), make_draft("globex")]) for _ in range(20))
    )
    acme = sorted(e.seq for batch in batches for e in batch if e.customer_id == "acme")
    assert list(range(1, 21)) == acme
    assert (await store.verify("acme")).ok
    assert (await store.verify("globex")).ok


async def test_appends_from_two_engines_serialize(
    engine: AsyncEngine,
    tables: AuditTables,
    database_url: str,
    new_engine: NewEngine,
    make_draft: MakeDraft,
) -> None:
    """Two engines (two replicas' pools) appending for one customer share one chain."""
    stores = [AuditStore(engine, tables), AuditStore(new_engine(database_url), tables)]
    await asyncio.gather(*(stores[i % 2].append([make_draft(record_count=i)]) for i in range(30)))
    result = await stores[0].verify("acme")
    assert (result.ok, result.head_seq) == (True, 30)


async def test_a_store_behind_another_replica_continues_its_chain(
    engine: AsyncEngine,
    tables: AuditTables,
    database_url: str,
    new_engine: NewEngine,
    make_draft: MakeDraft,
) -> None:
    """A store whose last head was moved on by another replica appends after that one's events."""
    stores = [AuditStore(engine, tables), AuditStore(new_engine(database_url), tables)]
    seqs = []
    for turn in range(6):  # each store's remembered head is stale on its every other turn
        events = await stores[turn % 2].append([make_draft(), make_draft("globex")])
        seqs += [event.seq for event in events if event.customer_id == "acme"]
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert (await stores[0].verify("acme")).ok
    assert (await stores[1].verify("globex")).ok


# -- tampering directly in the database -------------------------------------------------------

Tamper = Callable[[AsyncConnection, AuditTables], Awaitable[None]]


async def change_byte(conn: AsyncConnection, t: AuditTables) -> None:
    e = t.events
    content = (await conn.execute(select(e.c.content).where(e.c.seq == 4))).scalar_one()
    await conn.execute(
        update(e).where(e.c.seq == 4).values(content=content.replace('"facebook"', '"facebooc"'))
    )


async def mistype_a_field(conn: AsyncConnection, t: AuditTables) -> None:
    e = t.events
    content = (await conn.execute(select(e.c.content).where(e.c.seq == 4))).scalar_one()
    await conn.execute(
        update(e)
        .where(e.c.seq == 4)
        .values(content=content.replace('"dropped":{"public-or-direct":1}', '"dropped":[1]'))
    )


async def delete_row(conn: AsyncConnection, t: AuditTables) -> None:
    await conn.execute(delete(t.subjects).where(t.subjects.c.seq == 4))
    await conn.execute(delete(t.events).where(t.events.c.seq == 4))


async def swap_rows(conn: AsyncConnection, t: AuditTables) -> None:
    e = t.events
    cols = (e.c.content, e.c.prev_hash, e.c.hash, e.c.occurred_at)
    a = (await conn.execute(select(*cols).where(e.c.seq == 4))).one()
    b = (await conn.execute(select(*cols).where(e.c.seq == 5))).one()
    for seq, row in ((4, b), (5, a)):
        await conn.execute(update(e).where(e.c.seq == seq).values(**row._asdict()))


async def insert_row(conn: AsyncConnection, t: AuditTables) -> None:
    e = t.events
    await conn.execute(update(e).where(e.c.seq >= 7).values(seq=e.c.seq + 1000))
    await conn.execute(update(e).where(e.c.seq >= 1000).values(seq=e.c.seq - 999))
    row = (await conn.execute(select(e).where(e.c.seq == 6))).one()._asdict()
    row["content"] = row["content"].replace('"seq":6', '"seq":7').replace('"support"', '"legal"')
    await conn.execute(e.insert().values(**{**row, "seq": 7}))


async def truncate_tail(conn: AsyncConnection, t: AuditTables) -> None:
    e = t.events
    head = (await conn.execute(select(e.c.hash).where(e.c.seq == 7))).scalar_one()
    await conn.execute(delete(t.subjects).where(t.subjects.c.seq > 7))
    await conn.execute(delete(e).where(e.c.seq > 7))
    await conn.execute(update(t.heads).values(seq=7, hash=head))


async def forge_signature(conn: AsyncConnection, t: AuditTables) -> None:
    c = t.checkpoints
    note = (await conn.execute(select(c.c.note).where(c.c.seq == 10))).scalar_one()
    text, _, line = note.partition("\n\n")
    name, encoded = line.removeprefix("\u2014 ").split()
    sig = bytearray(base64.b64decode(encoded))
    sig[10] ^= 0x40
    forged = f"{text}\n\n\u2014 {name} {base64.b64encode(bytes(sig)).decode()}\n"
    await conn.execute(update(c).values(note=forged))


async def edit_search_column(conn: AsyncConnection, t: AuditTables) -> None:
    await conn.execute(update(t.events).where(t.events.c.seq == 3).values(caller_id="svc-other"))


async def drop_subject_row(conn: AsyncConnection, t: AuditTables) -> None:
    await conn.execute(delete(t.subjects).where(t.subjects.c.seq == 2))


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        pytest.param(change_byte, 4, id="changed-byte"),
        pytest.param(mistype_a_field, 4, id="field-of-another-json-type"),
        pytest.param(delete_row, 4, id="deleted-row"),
        pytest.param(swap_rows, 4, id="swapped-rows"),
        pytest.param(insert_row, 7, id="inserted-row"),
        pytest.param(truncate_tail, 8, id="truncated-tail-after-checkpoint"),
        pytest.param(forge_signature, 10, id="forged-checkpoint-signature"),
        pytest.param(edit_search_column, 3, id="edited-search-column"),
        pytest.param(drop_subject_row, 2, id="dropped-subject-row"),
    ],
)
async def test_tampering_in_the_database_is_detected_and_located(
    engine: AsyncEngine,
    tables: AuditTables,
    store: AuditStore,
    keys: CheckpointKeys,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
    tamper: Tamper,
    first_bad: int,
) -> None:
    """Each kind of direct SQL tampering fails verification at the right seq, with the
    same verdict whether the chain is read in one batch or across batch boundaries."""
    await fill(store, make_draft)
    assert await store.checkpoint(signer, "acme") is not None
    assert (await store.verify("acme")).ok
    async with engine.begin() as conn:
        await tamper(conn, tables)
    result = await store.verify("acme")
    assert (False, first_bad) == (result.ok, result.first_bad_seq), result.problem
    batched = [
        await AuditStore(engine, tables, keys=keys, verify_batch=size).verify("acme")
        for size in (1, 3)
    ]
    assert batched == [result, result]


async def test_appended_forged_tail_is_detected(
    engine: AsyncEngine, tables: AuditTables, store: AuditStore, make_draft: MakeDraft
) -> None:
    """A well-formed event appended in SQL without moving the head is found after the head."""
    events = await fill(store, make_draft, 3)
    forged = link(make_draft(), 4, events[-1].hash, events[-1].occurred_at)
    async with engine.begin() as conn:
        await conn.execute(tables.events.insert().values(**event_row(forged)))
    result = await store.verify("acme")
    assert (result.ok, result.first_bad_seq) == (False, 4)


# -- checkpoints and retention ----------------------------------------------------------------


async def test_checkpoint_refuses_to_sign_a_broken_chain(
    engine: AsyncEngine,
    tables: AuditTables,
    store: AuditStore,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """Signing over a tampered chain would launder it, so checkpoint raises instead."""
    await fill(store, make_draft, 5)
    async with engine.begin() as conn:
        await change_byte(conn, tables)
    with pytest.raises(ChainBroken, match="event 4"):
        await store.checkpoint(signer, "acme")
    assert await store.checkpoints("acme") == []


async def test_checkpoint_is_reused_while_head_is_unchanged(
    store: AuditStore, signer: CheckpointSigner, make_draft: MakeDraft
) -> None:
    """A second checkpoint with no new events returns the first; new events get a new one."""
    assert await store.checkpoint(signer, "acme") is None
    await fill(store, make_draft, 3)
    first = await store.checkpoint(signer, "acme")
    again = await store.checkpoint(signer, "acme")
    await fill(store, make_draft, 2)
    second = await store.checkpoint(signer, "acme")
    assert first is not None
    assert second is not None
    assert (first, 3, 5, first.hash) == (again, first.seq, second.seq, second.prev_checkpoint_hash)


async def test_prune_stops_at_a_checkpoint_and_chain_still_verifies(
    engine: AsyncEngine,
    tables: AuditTables,
    signer: CheckpointSigner,
    keys: object,
    make_draft: MakeDraft,
) -> None:
    """Retention removes events only up to a checkpoint signed before the cutoff."""
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    store = AuditStore(engine, tables, keys=keys, clock=clock)  # type: ignore[arg-type]
    await fill(store, make_draft, 4)
    await store.checkpoint(signer, "acme")  # seq 4
    await fill(store, make_draft, 3)
    cutoff = clock.now + timedelta(seconds=1)
    await fill(store, make_draft, 2)
    await store.checkpoint(signer, "acme")  # seq 9, after the cutoff
    deleted = await store.prune("acme", cutoff)
    result = await store.verify("acme")
    assert (deleted, result.ok, result.events_checked, result.head_seq) == (4, True, 5, 9)
    assert await store.prune("acme", cutoff) == 0
    page = await store.search(["acme"], limit=100)
    assert list(range(9, 4, -1)) == [e.seq for e in page.events]


async def test_prune_refuses_to_delete_tampered_events(
    engine: AsyncEngine,
    tables: AuditTables,
    store: AuditStore,
    signer: CheckpointSigner,
    make_draft: MakeDraft,
) -> None:
    """Events altered before pruning are not deleted: deletion would destroy the evidence."""
    await fill(store, make_draft, 6)
    await store.checkpoint(signer, "acme")
    async with engine.begin() as conn:
        await change_byte(conn, tables)
    with pytest.raises(ChainBroken):
        await store.prune("acme", datetime.now(UTC) + timedelta(days=1))
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(tables.events))).scalar()
    assert count == 6


async def test_reading_a_row_of_the_wrong_json_type_reports_the_chain_broken(
    engine: AsyncEngine, tables: AuditTables, store: AuditStore, make_draft: MakeDraft
) -> None:
    """Search and export meet a tampered row whose field has another JSON type as an
    unreadable event (ChainBroken, which the API answers as audit-chain-broken), not as
    the AttributeError the event's checks raise on it (an HTTP 500)."""
    await fill(store, make_draft, 6)
    async with engine.begin() as conn:
        await mistype_a_field(conn, tables)
    with pytest.raises(ChainBroken, match="event 4 of acme is unreadable"):
        await store.search(["acme"])
    with pytest.raises(ChainBroken, match="event 4 of acme is unreadable"):
        [event async for event in store.events("acme")]


# -- search ---------------------------------------------------------------------------------


async def test_search_by_subject_newest_first_with_pagination(
    store: AuditStore, hasher: SubjectHasher, make_draft: MakeDraft
) -> None:
    """Every event touching a subject comes back newest first, page by page, and no other."""
    for i in range(30):
        who = ("email:jane@customer.example",) if i % 3 == 0 else ("email:joe@x.example",)
        await store.append([make_draft(record_count=i, who=who), make_draft("globex", who=who)])
    subject = hasher.hash("acme", "email:jane@customer.example")
    seqs: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await store.search(["acme"], subject_hash=subject, before=cursor, limit=4)
        seqs += [e.seq for e in page.events]
        pages += 1
        assert all(subject in e.subjects for e in page.events)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert (list(range(28, 0, -3)), 3) == (seqs, pages)


async def test_search_filters_combine(
    engine: AsyncEngine, tables: AuditTables, make_draft: MakeDraft
) -> None:
    """Caller, action, outcome, connection and time filters narrow the result together."""
    clock = Clock(datetime(2026, 3, 1, tzinfo=UTC))
    store = AuditStore(engine, tables, clock=clock)
    await store.append([make_draft(caller_id="svc-a")])  # seq 1 at +1s
    await store.append([make_draft(caller_id="svc-b")])  # seq 2 at +2s
    await store.append(
        [
            make_draft(
                caller_id="svc-b",
                action=Action.CALLER_REFUSED,
                outcome=Outcome.DENIED,
                problem_type="forbidden",
            )
        ]
    )  # seq 3 at +3s
    await store.append([make_draft(caller_id="svc-b", connection_id="conn-2")])  # seq 4
    start = datetime(2026, 3, 1, tzinfo=UTC)

    async def seqs(**filters: object) -> list[int]:
        page = await store.search(["acme"], **filters)  # type: ignore[arg-type]
        return [e.seq for e in page.events]

    assert await seqs(caller_id="svc-b") == [4, 3, 2]
    assert await seqs(action="caller.refused", outcome="denied") == [3]
    assert await seqs(connection_id="conn-2") == [4]
    window = {"since": start + timedelta(seconds=2), "until": start + timedelta(seconds=4)}
    assert await seqs(**window) == [3, 2]


async def test_search_never_crosses_customers(store: AuditStore, make_draft: MakeDraft) -> None:
    """A search returns only the customers asked for; two customers merge by time."""
    await store.append([make_draft("acme"), make_draft("globex"), make_draft("initech")])
    only = await store.search(["globex"])
    both = await store.search(["acme", "initech"])
    assert [e.customer_id for e in only.events] == ["globex"]
    assert {"acme", "initech"} == {e.customer_id for e in both.events}


async def test_subject_search_over_two_customers_takes_a_hash_each(
    store: AuditStore, hasher: SubjectHasher, make_draft: MakeDraft
) -> None:
    """The same person has one hash per customer; passing both finds both customers' events."""
    who = ("email:jane@customer.example",)
    await store.append([make_draft("acme", who=who), make_draft("globex", who=who)])
    hashes = [hasher.hash(c, who[0]) for c in ("acme", "globex")]
    one = await store.search(["acme", "globex"], subject_hash=hashes[0])
    both = await store.search(["acme", "globex"], subject_hash=hashes)
    assert (["acme"], {"acme", "globex"}) == (
        [e.customer_id for e in one.events],
        {e.customer_id for e in both.events},
    )


# -- the store unavailable ------------------------------------------------------------------


async def test_unreachable_store_raises_audit_unavailable(
    tmp_path: Path, database_url: str, new_engine: NewEngine, make_draft: MakeDraft
) -> None:
    """An engine pointed at a database that does not exist fails closed with AuditUnavailable."""
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'audit.db'}"
    else:
        url = database_url.rsplit("/", 1)[0] + "/linkgate_audit_dropped_does_not_exist"
    store = AuditStore(new_engine(url), define_audit_tables(MetaData()))
    with pytest.raises(AuditUnavailable):
        await store.append([make_draft()])
    async with AuditWriter(store) as writer:
        with pytest.raises(AuditUnavailable):
            await writer.record(make_draft())
    with pytest.raises(AuditUnavailable):
        await store.verify("acme")


async def test_store_comes_back_and_nothing_is_lost(
    tmp_path: Path, new_engine: NewEngine, make_draft: MakeDraft
) -> None:
    """Records refused during an outage are not half-written; once back, the chain continues."""
    path = tmp_path / "later" / "audit.db"
    engine = new_engine(f"sqlite+aiosqlite:///{path}")
    metadata = MetaData()
    store = AuditStore(engine, define_audit_tables(metadata))
    async with AuditWriter(store) as writer:
        with pytest.raises(AuditUnavailable):
            await writer.record(make_draft())
        path.parent.mkdir()
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        event = await writer.record(make_draft())
    assert (event.seq, (await store.verify("acme")).ok) == (1, True)


async def test_failed_append_leaves_nothing_partial(
    engine: AsyncEngine, tables: AuditTables, store: AuditStore, make_draft: MakeDraft
) -> None:
    """When one customer's insert fails, the whole batch rolls back, other customers included."""
    # A clock that stands still: the blocker then has the very key the append
    # writes (customer, seq and time, the partitioned tables' key).
    moment = datetime.now(UTC)
    store = AuditStore(engine, tables, clock=lambda: moment)
    await store.append([make_draft("acme")])
    blocker = link(make_draft("globex"), 1, "00" * 32, moment)
    async with engine.begin() as conn:
        await conn.execute(tables.events.insert().values(**event_row(blocker)))
    with pytest.raises(AuditUnavailable):
        await store.append([make_draft("acme", who=("email:a@x.example",)), make_draft("globex")])
    async with engine.connect() as conn:
        acme = (
            await conn.execute(
                select(func.count())
                .select_from(tables.events)
                .where(tables.events.c.customer_id == "acme")
            )
        ).scalar()
        subjects = (await conn.execute(select(func.count()).select_from(tables.subjects))).scalar()
    result = await store.verify("acme")
    assert (acme, subjects, result.ok, result.head_seq) == (1, 0, True, 1)


APPENDER = """
import asyncio, sys
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine
from gateway.audit import Action, AuditStore, EventDraft, Outcome, define_audit_tables

async def main(url: str, n: int) -> None:
    engine = create_async_engine(url, connect_args={"timeout": 30} if "sqlite" in url else {})
    store = AuditStore(engine, define_audit_tables(MetaData()))
    draft = EventDraft(customer_id="acme", action=Action.RECORDS_READ, outcome=Outcome.ALLOWED)
    for _ in range(n):
        await store.append([draft])
    await engine.dispose()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_appends_from_two_processes_leave_a_valid_chain(
    store: AuditStore, database_url: str
) -> None:
    """Two OS processes appending for one customer at once leave one gapless, valid chain."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", APPENDER, database_url, "25", cwd=Path(__file__).parents[2]
        )
        for _ in range(2)
    ]
    codes = [await asyncio.wait_for(p.wait(), timeout=120) for p in procs]
    result = await store.verify("acme")
    assert (codes, result.ok, result.head_seq) == ([0, 0], True, 50), result.problem
