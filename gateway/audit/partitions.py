"""The audit log's time partitions on PostgreSQL: one per calendar month (UTC), and a DEFAULT.

``audit_events`` and ``audit_subjects`` are partitioned by ``occurred_at``
(:mod:`gateway.audit.tables`) so that retention drops a month of rows
(:meth:`gateway.audit.AuditStore.prune_partitions`) instead of deleting them
row by row and leaving the dead tuples to vacuum. Upkeep (:meth:`AuditPartitions.upkeep`)
creates the current month's partitions and the next ``months_ahead`` months'
before any append needs them; the DEFAULT partition takes whatever arrives
beyond them, so an append never fails for want of a partition.

A month is created as a plain table and then attached: ``CREATE TABLE …
PARTITION OF`` would take an ACCESS EXCLUSIVE lock on the parent, which every
append queues behind, where ``ATTACH PARTITION`` takes SHARE UPDATE EXCLUSIVE,
which appends do not conflict with
(https://www.postgresql.org/docs/current/ddl-partitioning.html#DDL-PARTITIONING-DECLARATIVE-MAINTENANCE).
It conflicts with another replica's upkeep, a VACUUM or ANALYZE of the parent
or any other DDL on it, and it locks DEFAULT (ACCESS EXCLUSIVE) while it
checks that no row there belongs in the new month. So each month's DDL runs
in a transaction with a short ``lock_timeout``
(https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-LOCK-TIMEOUT):
when a lock is not granted in time the month is left to the next round, and
whatever queued behind upkeep waited at most that long. The moves below and
retention's drops do take ACCESS EXCLUSIVE on the parents, with the same bound.

A month whose rows already sit in DEFAULT (upkeep fell behind the clock)
cannot simply be created: PostgreSQL refuses a partition that rows in DEFAULT
belong to. Upkeep then moves them: in one transaction it locks both parents,
deletes the month's rows from DEFAULT into a temporary table, creates the
month's partitions and inserts the rows back through the parents. Either all
of that commits or none of it: rows are never lost.

On SQLite the tables are not partitioned: upkeep does nothing and the listing is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.errors import DATABASE_ERRORS, AuditUnavailable
from gateway.audit.tables import AuditTables, default_partition_name

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_MONTHS_AHEAD",
    "AuditPartitions",
    "Partition",
    "UpkeepReport",
    "is_partition_name",
    "month_start",
]

DEFAULT_MONTHS_AHEAD = 3
DEFAULT_LOCK_TIMEOUT = timedelta(milliseconds=500)

# SQLSTATEs meaning "not this round": a lock not granted in time, a deadlock
# broken by the server, another replica creating the same partition first.
_RETRY_NEXT_ROUND = {"55P03", "40P01", "42P07", "42P17"}


def month_start(moment: datetime) -> datetime:
    """The first instant of ``moment``'s calendar month, in UTC."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _next_month(start: datetime) -> datetime:
    return month_start(start + timedelta(days=32))


def _month_name(parent: str, start: datetime) -> str:
    return f"{parent}_p{start:%Y_%m}"


def is_partition_name(
    name: str, parents: tuple[str, ...] = ("audit_events", "audit_subjects")
) -> bool:
    """Whether ``name`` is one of the partitions upkeep or the migration names
    (for schema comparisons, which would otherwise see them as unknown tables)."""
    for parent in parents:
        if name == default_partition_name(parent):
            return True
        rest = name.removeprefix(f"{parent}_p")
        if rest != name and len(rest) == 7 and rest[4] == "_" and rest.replace("_", "").isdigit():
            return True
    return False


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: its month ``[start, end)``, or DEFAULT (``start`` and ``end`` ``None``)."""

    parent: str
    name: str
    start: datetime | None
    end: datetime | None
    rows: int | None  # PostgreSQL's estimate (pg_class.reltuples); None: never analyzed

    @property
    def is_default(self) -> bool:
        return self.start is None


@dataclass(frozen=True, slots=True)
class UpkeepReport:
    """What one round of upkeep did."""

    created: list[str] = field(default_factory=list)  # partitions created
    moved: dict[str, int] = field(default_factory=dict)  # partition -> rows moved from DEFAULT
    busy: list[str] = field(default_factory=list)  # months left to the next round


def _literal(moment: datetime) -> str:
    """A bound as a SQL literal: DDL takes no bind parameters; the text is ours, never input."""
    return f"'{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}+00'"


class AuditPartitions:
    """Create, list and drop the month partitions of the audit tables."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: AuditTables,
        *,
        months_ahead: int = DEFAULT_MONTHS_AHEAD,
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if months_ahead < 0:
            raise ValueError(f"months_ahead must be 0 or more, not {months_ahead}")
        self._engine = engine
        self._t = tables
        self._months_ahead = months_ahead
        self._lock_timeout_ms = max(1, int(lock_timeout.total_seconds() * 1000))
        self._clock = clock
        self._quote = engine.dialect.identifier_preparer.quote

    @property
    def enabled(self) -> bool:
        """Whether the tables are partitioned (PostgreSQL) at all."""
        return self._engine.dialect.name == "postgresql"

    @property
    def _parents(self) -> tuple[Table, Table]:
        return self._t.events, self._t.subjects

    @staticmethod
    def busy(exc: DBAPIError) -> bool:
        """Whether ``exc`` means "not this round": a lock not granted within the timeout,
        a deadlock the server broke, another replica creating the same partition."""
        return getattr(exc.orig, "sqlstate", None) in _RETRY_NEXT_ROUND

    async def lock_parents(self, conn: AsyncConnection) -> None:
        """Hold both partitioned tables (ACCESS EXCLUSIVE) until the transaction ends."""
        names = ", ".join(self._quote(t.name) for t in self._parents)
        await conn.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")

    async def set_lock_timeout(self, conn: AsyncConnection) -> None:
        """Bound how long the open transaction waits for any lock (``SET LOCAL``)."""
        await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {self._lock_timeout_ms}")

    # -- listing ---------------------------------------------------------------------------

    async def partitions(self) -> list[Partition]:
        """Every partition of both tables, by table then month (DEFAULT last), with bounds
        and row estimates."""
        if not self.enabled:
            return []
        query = text(
            "SELECT parent.relname AS parent, child.relname AS name, "
            "(regexp_match(pg_get_expr(child.relpartbound, child.oid), "
            "$$FROM \\('([^']+)'\\)$$))[1]::timestamptz AS start, "
            "(regexp_match(pg_get_expr(child.relpartbound, child.oid), "
            "$$TO \\('([^']+)'\\)$$))[1]::timestamptz AS end_, "
            "child.reltuples AS rows "
            "FROM pg_inherits i "
            "JOIN pg_class parent ON parent.oid = i.inhparent "
            "JOIN pg_class child ON child.oid = i.inhrelid "
            "WHERE parent.relname = ANY(:parents) AND pg_table_is_visible(parent.oid) "
            "ORDER BY parent.relname, start NULLS LAST"
        )
        try:
            async with self._engine.connect() as conn:
                rows = (
                    await conn.execute(query, {"parents": [t.name for t in self._parents]})
                ).all()
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit partitions unreadable: {type(exc).__name__}") from exc
        return [
            Partition(
                parent=r.parent,
                name=r.name,
                start=r.start,
                end=r.end_,
                rows=None if r.rows < 0 else int(r.rows),
            )
            for r in rows
        ]

    # -- upkeep ----------------------------------------------------------------------------

    async def upkeep(self, months_ahead: int | None = None) -> UpkeepReport:
        """Create the missing month partitions from this month to ``months_ahead`` (default:
        the instance's) ahead, and those of any month DEFAULT holds rows of (moving the rows)."""
        first = month_start(self._clock())
        last = first
        for _ in range(self._months_ahead if months_ahead is None else months_ahead):
            last = _next_month(last)
        return await self.create_months(first, last)

    async def create_months(self, first: datetime, last: datetime) -> UpkeepReport:
        """Create the missing month partitions of every month from ``first``'s to ``last``'s,
        and those of any month DEFAULT holds rows of (moving the rows)."""
        report = UpkeepReport()
        if not self.enabled:
            return report
        wanted = [month_start(first)]
        while wanted[-1] < month_start(last):
            wanted.append(_next_month(wanted[-1]))
        try:
            existing = {(p.parent, p.start) for p in await self.partitions() if not p.is_default}
            stranded = await self._months_in_default()
            months = sorted(set(wanted) | set(stranded))
            for index, start in enumerate(months):
                missing = [t for t in self._parents if (t.name, start) not in existing]
                if not (missing or start in stranded):
                    continue
                if not await self._create_month(start, missing, stranded.get(start, 0), report):
                    # The lock is held: queueing the next month's DDL behind the
                    # same holder would only hold appends up again. Next round.
                    report.busy.extend(f"{later:%Y-%m}" for later in months[index:])
                    break
        except AuditUnavailable:
            raise
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit partition upkeep failed: {type(exc).__name__}") from exc
        return report

    async def _months_in_default(self) -> dict[datetime, int]:
        """Months that rows in the DEFAULT partitions belong to, with their row counts
        (DEFAULT is empty unless appends outran upkeep, so this scan is short)."""
        counts: dict[datetime, int] = {}
        async with self._engine.connect() as conn:
            for parent in self._parents:
                default = self._quote(default_partition_name(parent.name))
                rows = await conn.execute(
                    text(
                        "SELECT date_trunc('month', occurred_at, 'UTC') AS month, count(*) AS n "  # noqa: S608
                        f"FROM {default} GROUP BY 1"
                    )
                )
                for month, n in rows:
                    counts[month_start(month)] = counts.get(month_start(month), 0) + int(n)
        return counts

    async def _create_month(
        self, start: datetime, missing: list[Table], stranded: int, report: UpkeepReport
    ) -> bool:
        """Create one month's partitions (moving its rows out of DEFAULT); ``False`` when
        a lock was not granted in time (nothing done)."""
        end = _next_month(start)
        bounds = f"FOR VALUES FROM ({_literal(start)}) TO ({_literal(end)})"
        moved: dict[str, int] = {}
        try:
            async with self._engine.begin() as conn:
                await self.set_lock_timeout(conn)
                if stranded:
                    # Both parents at once, before any row moves: no append can
                    # add to DEFAULT between the move and the new partitions.
                    await self.lock_parents(conn)
                for parent in self._parents:
                    name = _month_name(parent.name, start)
                    moving = 0
                    if stranded:
                        moving = await self._move_out_of_default(conn, parent, start, end, bounds)
                    elif parent in missing:
                        # Attaching creates the parent's indexes on the (empty) table.
                        await conn.exec_driver_sql(
                            f"CREATE TABLE {self._quote(name)} "
                            f"(LIKE {self._quote(parent.name)} INCLUDING DEFAULTS)"
                        )
                        await conn.exec_driver_sql(
                            f"ALTER TABLE {self._quote(parent.name)} "
                            f"ATTACH PARTITION {self._quote(name)} {bounds}"
                        )
                    if moving:
                        moved[name] = moving
        except DBAPIError as exc:
            if not self.busy(exc):
                raise
            return False
        report.created.extend(_month_name(t.name, start) for t in missing)
        report.moved.update(moved)
        return True

    async def _move_out_of_default(
        self, conn: AsyncConnection, parent: Table, start: datetime, end: datetime, bounds: str
    ) -> int:
        """Within the caller's transaction (holding both parents): the month's rows out of
        DEFAULT, the month's partition created (if missing), the rows back in it."""
        default = self._quote(default_partition_name(parent.name))
        moving = self._quote(f"moving_{parent.name}")
        name = self._quote(_month_name(parent.name, start))
        await conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {moving} (LIKE {self._quote(parent.name)}) ON COMMIT DROP"
        )
        moved = await conn.execute(
            text(
                f"WITH out AS (DELETE FROM {default} "  # noqa: S608
                "WHERE occurred_at >= :start AND occurred_at < :end RETURNING *) "
                f"INSERT INTO {moving} SELECT * FROM out"
            ),
            {"start": start, "end": end},
        )
        await conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {self._quote(parent.name)} {bounds}"
        )
        await conn.exec_driver_sql(f"INSERT INTO {name} SELECT * FROM {moving}")  # noqa: S608
        return int(moved.rowcount)

    # -- retention -------------------------------------------------------------------------

    async def customers_in(self, conn: AsyncConnection, partition: str) -> dict[str, int]:
        """Each customer with events in an ``audit_events`` partition, and its newest seq there.

        A loose index scan over the partition's primary key (customer_id, seq,
        occurred_at): one index descent per customer, not a scan of the month
        (https://wiki.postgresql.org/wiki/Loose_indexscan).
        """
        quoted = self._quote(partition)
        rows = await conn.execute(
            text(
                "WITH RECURSIVE c(customer_id) AS ("  # noqa: S608
                f"(SELECT customer_id FROM {quoted} ORDER BY customer_id LIMIT 1) "
                "UNION ALL "
                f"SELECT (SELECT p.customer_id FROM {quoted} p "
                "WHERE p.customer_id > c.customer_id ORDER BY p.customer_id LIMIT 1) "
                "FROM c WHERE c.customer_id IS NOT NULL) "
                f"SELECT c.customer_id, (SELECT max(p.seq) FROM {quoted} p "
                "WHERE p.customer_id = c.customer_id) AS newest "
                "FROM c WHERE c.customer_id IS NOT NULL"
            )
        )
        return {r.customer_id: int(r.newest) for r in rows}

    async def drop(self, conn: AsyncConnection, names: list[str]) -> None:
        """Drop partitions in the caller's transaction (which holds the parents' locks)."""
        await conn.exec_driver_sql(f"DROP TABLE {', '.join(self._quote(n) for n in names)}")
