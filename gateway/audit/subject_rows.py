"""How verification checks the subject rows against the subjects each event's content names.

``audit_subjects`` is the subject-search index: its primary key
``(customer_id, subject_hash, seq)`` leads with the subject, so no index
finds a seq range of one customer's rows. Reading "the subject rows of
events a..b" scans every subject row of the customer, and did so once per
batch of a verification: quadratic in the log's size (at 100,000 events of
one customer, 31 ms of every 2,000-event batch on PostgreSQL). Appends write
about a dozen subject rows per records read, so a second index that serves a
seq range would cost every append to save a verification; none is added.

The same exact comparison is made from two questions the primary key
answers without such a scan:

* **Is every expected row there?** One statement per batch probes the
  primary key for each ``(subject_hash, seq)`` the batch's contents name
  and returns those not found (:meth:`SubjectRows.missing`).
* **Is there any other row?** Once per verification, one count of the
  customer's subject rows over the seqs verified, compared with how many
  rows the contents name (:class:`SubjectTally`). Every expected row being
  present and the two numbers being equal means no other row exists, as
  the key makes each ``(customer_id, subject_hash, seq)`` row distinct (were
  it to grow a column, a duplicate would still show in the count).

A count says that a row is extra, not where. Only then (tampering, or a prune
that deleted events meanwhile, which verification tells apart and restarts
after) a second pass names the event: the customer's rows counted per
stretch of ``width`` seqs in one statement, then the first stretch that
disagrees read row by row (:meth:`SubjectRows.by_seq`).

Every statement also names the events' times (a subject row is filed
under its event's ``occurred_at``, migration 0012): on PostgreSQL, whose
tables are partitioned by month, each probe then reads one month's index
instead of every month's, and the count reads only the months verified, so a
checkpoint over an hour of new events counts that month, not the whole log.
A row filed under a time no verified event has cannot misdirect a search
(the search joins a subject row to its event on customer, seq and time), so
the count leaves it out; one filed under its event's seq but another time is
missing to its probe, and named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, DateTime, Text, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement, FromClause

from gateway.audit.tables import AuditTables

__all__ = ["SubjectRows", "SubjectTally"]


class SubjectTally:
    """How many subject rows the verified events' contents name: in all, and per
    stretch of ``width`` seqs from the first (for naming an event when the count
    of stored rows disagrees).

    The seqs it covers run from the first event expected to the last, and stop
    at a row that does not decode (its subjects are unknown; verification
    already fails there, and a problem after it cannot be the first).
    ``first`` and ``last`` are 0 until an event is expected (seqs count from 1);
    ``since`` and ``until`` are the earliest and latest of those events' times.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.first = 0
        self.last = 0
        self.since: datetime | None = None
        self.until: datetime | None = None
        self.total = 0
        self.by_stretch: Counter[int] = Counter()
        self._stopped = False

    def expect(self, seq: int, subjects: int, occurred_at: datetime) -> None:
        """The event at ``seq``, of ``occurred_at``, names ``subjects`` distinct subjects."""
        if self._stopped:
            return
        if not self.first:
            self.first = seq
        self.last = seq
        # min/max, not first/last: a tampered time may be out of order.
        self.since = min(self.since or occurred_at, occurred_at)
        self.until = max(self.until or occurred_at, occurred_at)
        self.total += subjects
        self.by_stretch[(seq - self.first) // self.width] += subjects

    def stop(self) -> None:
        """The row read next did not decode: count nothing from here on."""
        self._stopped = True

    def stretch(self, number: int) -> tuple[int, int]:
        """The first and last seq of stretch ``number``."""
        start = self.first + number * self.width
        return start, min(start + self.width - 1, self.last)


class SubjectRows:
    """The statements verification asks of ``audit_subjects`` (SQLite and PostgreSQL)."""

    def __init__(self, tables: AuditTables, dialect: Dialect) -> None:
        self._s = tables.subjects
        self._postgres = dialect.name == "postgresql"
        stored = tables.subjects.c.occurred_at.type.dialect_impl(dialect)
        # SQLite's probes travel as JSON, past the column type: stored text for a time.
        self._stored_time: Callable[[Any], Any] = stored.bind_processor(dialect) or (
            lambda value: value
        )

    async def missing(
        self,
        conn: AsyncConnection,
        customer_id: str,
        expected: Sequence[tuple[int, str, datetime]],
    ) -> list[int]:
        """The seqs, ascending, whose expected ``(seq, subject_hash, occurred_at)`` row is
        not stored.

        One statement for the batch, each triple a primary-key probe: on
        PostgreSQL three arrays taken apart by ``unnest``, on SQLite one JSON
        array by ``json_each`` (https://sqlite.org/json1.html#jeach), as the
        append writes them.
        """
        if not expected:
            return []
        s = self._s
        probes: FromClause
        seq: ColumnElement[Any]
        subject_hash: ColumnElement[Any]
        occurred_at: ColumnElement[Any]
        if self._postgres:
            seqs, hashes, times = zip(*expected, strict=True)
            probes = (
                func.unnest(
                    bindparam("seqs", list(seqs), type_=ARRAY(BigInteger)),
                    bindparam("hashes", list(hashes), type_=ARRAY(Text)),
                    bindparam("times", list(times), type_=ARRAY(DateTime(timezone=True))),
                )
                .table_valued("seq", "subject_hash", "occurred_at")
                .render_derived()
            )
            seq, subject_hash = probes.c.seq, probes.c.subject_hash
            occurred_at = probes.c.occurred_at
        else:
            triples = [(seq, h, self._stored_time(at)) for seq, h, at in expected]
            # As text: SQLite 3.45 and later read a BLOB argument as its binary JSONB.
            probes = func.json_each(
                bindparam("triples", orjson.dumps(triples).decode(), type_=Text)
            ).table_valued("value")
            seq = func.json_extract(probes.c.value, "$[0]")
            subject_hash = func.json_extract(probes.c.value, "$[1]")
            occurred_at = func.json_extract(probes.c.value, "$[2]")
        # A scalar subquery with LIMIT is never turned into a join: PostgreSQL runs
        # it per pair as a primary-key probe, where NOT EXISTS may become a hash
        # anti join that reads every subject row of the customer (as it did here
        # on a table whose statistics undercounted the customer's rows).
        found = (
            select(literal(1))
            .where(
                s.c.customer_id == customer_id,
                s.c.subject_hash == subject_hash,
                s.c.seq == seq,
                s.c.occurred_at == occurred_at,
            )
            .limit(1)
            .scalar_subquery()
        )
        query = select(seq).select_from(probes).where(found.is_(None))
        return sorted({int(row[0]) for row in await conn.execute(query)})

    async def count(self, conn: AsyncConnection, customer_id: str, tally: SubjectTally) -> int:
        """How many subject rows the customer has for the events ``tally`` expected."""
        query = select(func.count()).where(*self._filed(customer_id, tally))
        return int((await conn.execute(query)).scalar_one())

    async def count_by_stretch(
        self, conn: AsyncConnection, customer_id: str, tally: SubjectTally
    ) -> Counter[int]:
        """:meth:`count` per stretch of ``tally.width`` seqs from ``tally.first``."""
        s = self._s
        stretch = ((s.c.seq - tally.first) // tally.width).label("stretch")
        query = (
            select(stretch, func.count()).where(*self._filed(customer_id, tally)).group_by(stretch)
        )
        return Counter({int(n): int(count) for n, count in await conn.execute(query)})

    async def by_seq(
        self, conn: AsyncConnection, customer_id: str, tally: SubjectTally, first: int, last: int
    ) -> dict[int, list[str]]:
        """The customer's subject rows for the seqs ``first..last`` of those ``tally``
        expected, by seq."""
        s = self._s
        rows = await conn.execute(
            select(s.c.seq, s.c.subject_hash).where(
                *self._filed(customer_id, tally), s.c.seq >= first, s.c.seq <= last
            )
        )
        out: dict[int, list[str]] = {}
        for seq, subject_hash in rows:
            out.setdefault(int(seq), []).append(subject_hash)
        return out

    def _filed(self, customer_id: str, tally: SubjectTally) -> list[ColumnElement[bool]]:
        """Rows of the customer filed under the seqs and times of the events ``tally``
        expected (the times bound the months PostgreSQL reads)."""
        s = self._s
        return [
            s.c.customer_id == customer_id,
            s.c.seq >= tally.first,
            s.c.seq <= tally.last,
            s.c.occurred_at >= tally.since,
            s.c.occurred_at <= tally.until,
        ]
