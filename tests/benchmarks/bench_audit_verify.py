"""Benchmark (not a test): audit chain verification, events verified per second at two sizes.

Run: ``.venv/bin/python tests/benchmarks/bench_audit_verify.py [--events N ...]
[--only sqlite|postgres]`` (default 50,000 and 200,000 events, about two
minutes here; ``--events 100000 400000`` about three and a half, and
``--events 1000000`` works too, most of its time spent generating and loading).

One customer holds every event, as in bench_audit_search.py, whose generator
and bulk loader this reuses: linked records-read events touching one to three
of 20,000 people, loaded into each database's migrated schema. For each size
and database, :meth:`AuditStore.verify` (what ``POST /v1/audit/verify`` and
``linkgate audit verify`` run) is timed against a baseline of **reading the
same event rows in the same batches** (the store's batch size, a read
transaction each, ordered by seq), with nothing checked. Their ratio is what
the checks cost on top of reading the log; that it stays the same from one
size to the next is what linear scaling looks like (a verification whose
per-batch work grows with the log, as one scanning all of the customer's
subject rows per batch did, falls further behind the baseline at each size).
SQLite uses a temporary file; PostgreSQL a throwaway database on
``LINKGATE_TEST_POSTGRES_URL``. A full run writes ``var/bench/bench_audit_verify.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import AuditStore, SubjectHasher
from gateway.audit.store import DEFAULT_VERIFY_BATCH
from gateway.storage import audit_tables, create_engine
from gateway.storage.migrate import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit_search import CUSTOMER, PEOPLE, Rows, fill, generate, throwaway_postgres
from contract import REPO, row, write

DEFAULT_SIZES = (50_000, 200_000)


def first(rows: Rows, events: int) -> Rows:
    """The first ``events`` events of ``rows``, their subject rows and their head."""
    event_rows, subject_rows, _head = rows
    kept = event_rows[:events]
    return kept, [r for r in subject_rows if r[2] <= events], (events, kept[-1][-1])


async def read_in_batches(engine: AsyncEngine) -> int:
    """The baseline: every event row read as verification reads them, checked for nothing."""
    e = audit_tables.events
    after, read = 0, 0
    async with engine.connect() as conn:
        while True:
            async with conn.begin():
                rows = (
                    await conn.execute(
                        select(e)
                        .where(e.c.customer_id == CUSTOMER, e.c.seq > after)
                        .order_by(e.c.seq)
                        .limit(DEFAULT_VERIFY_BATCH)
                    )
                ).all()
            if not rows:
                return read
            read += len(rows)
            after = rows[-1].seq


async def bench(url: str, label: str, rows: Rows) -> list[dict[str, Any]]:
    """Load ``rows`` into a migrated database at ``url``; time a plain read, then verify."""
    events = len(rows[0])
    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
    engine = create_engine(url)
    try:
        await fill(engine, url, rows)
        if url.startswith("postgresql"):
            async with engine.begin() as conn:  # committed: statistics as autovacuum leaves them
                await conn.exec_driver_sql("ANALYZE")
        store = AuditStore(engine, audit_tables)
        started = time.perf_counter()
        read = await read_in_batches(engine)
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = await store.verify(CUSTOMER)
        verify_seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    if not result.ok or result.events_checked != events or read != events:
        raise SystemExit(f"{label}: verification of {events:,} events failed: {result}")
    read_rate, verify_rate = events / read_seconds, events / verify_seconds
    print(
        f"{label} at {events:,} events: read {read_rate:,.0f}/s; verified {verify_rate:,.0f}/s "
        f"= {verify_seconds / events * 1e6:.1f} µs per event, "
        f"{read_rate / verify_rate:.2f}x the read's time",
        flush=True,
    )
    at = f"at {events:,} events"
    baseline = f"{label} events read per second, same batches, {at}"
    return [
        row(baseline, read_rate, "events/s"),
        row(
            f"{label} events verified per second {at}",
            verify_rate,
            "events/s",
            (baseline, read_rate),
        ),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    hasher = SubjectHasher(secrets.token_bytes(32))
    people = [hasher.hash(CUSTOMER, f"email:person{i}@customer.example") for i in range(PEOPLE)]
    started = time.perf_counter()
    everything = generate(max(args.events), people)
    print(f"generated {max(args.events):,} linked events in {time.perf_counter() - started:.0f} s")
    results: list[dict[str, Any]] = []
    for size in sorted(args.events):
        rows = first(everything, size)
        if args.only != "postgres":
            with tempfile.TemporaryDirectory() as tmp:
                results += await bench(f"sqlite+aiosqlite:///{tmp}/bench.db", "SQLite", rows)
        if args.only != "sqlite":
            async with throwaway_postgres() as url:
                results += await bench(url, "PostgreSQL", rows)
    if args.only:
        return  # a partial run does not overwrite the published figures
    path = write("audit_verify", results)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
