"""audit log partitioned by month on PostgreSQL; audit_subjects carries occurred_at

Revision ID: 0012
Revises: 0011

PostgreSQL: ``audit_events`` and ``audit_subjects`` become ``PARTITION BY RANGE
(occurred_at)`` with one partition per calendar month (UTC) from the oldest
stored event's month to three months ahead, and a DEFAULT partition. The rows
are copied (each subject row with its event's time), the old tables dropped,
all in the migration's one transaction. The search indexes are created after
the copy, as partitioned indexes (one sort per partition instead of a
million index insertions).

SQLite: no partitions; ``audit_subjects`` gains ``occurred_at`` filled from
the events, and both primary keys gain ``occurred_at`` (table copies), so the
schema is the one the code declares on both databases.

The partition DDL is written here rather than imported from
``gateway.audit.partitions``: a migration must keep doing what it did when it
was written.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_MONTHS_AHEAD = 3
_ORPHANS = (
    "audit_subjects holds {count} rows whose event is gone, so they have no time to be "
    "filed under. They index nothing; find them with SELECT customer_id, seq FROM "
    "audit_subjects s WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.customer_id "
    "= s.customer_id AND e.seq = s.seq), delete them, and migrate again."
)
_EVENT_INDEXES = {
    "ix_audit_events_action": ["customer_id", "action", "seq"],
    "ix_audit_events_caller": ["customer_id", "caller_id", "seq"],
    "ix_audit_events_connection": ["customer_id", "connection_id", "seq"],
    "ix_audit_events_outcome": ["customer_id", "outcome", "seq"],
    "ix_audit_events_time": ["customer_id", "occurred_at", "seq"],
}


def _event_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("caller_id", sa.String(length=128), nullable=True),
        sa.Column("connection_id", sa.String(length=128), nullable=True),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
    ]


def _progress(step: str) -> None:
    """One line per step on stderr: on a log of millions of events this migration takes
    minutes (about a minute per million events on the 2-core test VM), all of it in
    statements that report nothing themselves."""
    print(f"  0012 {time.strftime('%H:%M:%S')} {step}", file=sys.stderr, flush=True)


def _month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _next_month(start: datetime) -> datetime:
    return _month_start(start + timedelta(days=32))


def _literal(moment: datetime) -> str:
    return f"'{moment:%Y-%m-%d %H:%M:%S}+00'"


def upgrade() -> None:
    _refuse_orphans()
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def _refuse_orphans() -> None:
    """Before anything changes: every subject row takes its event's time, and one without
    an event (which no append or prune leaves) has no time to be filed under. Refuse
    rather than drop it; ``linkgate migrate`` prints the text, which names the fix."""
    orphans = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM audit_subjects s WHERE NOT EXISTS "
                "(SELECT 1 FROM audit_events e "
                "WHERE e.customer_id = s.customer_id AND e.seq = s.seq)"
            )
        )
        .scalar()
    )
    if orphans:
        raise CommandError(_ORPHANS.format(count=orphans))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _downgrade_postgresql()
    else:
        _downgrade_sqlite()


# -- PostgreSQL ------------------------------------------------------------------------------


def _create_tables(*, partitioned: bool) -> None:
    """Both tables as revision 0012 has them (partitioned by month, ``occurred_at`` in
    both keys) or as 0011 had them (plain, subject rows without a time)."""
    timed = ["occurred_at"] if partitioned else []
    options: dict[str, Any] = (
        {"postgresql_partition_by": "RANGE (occurred_at)"} if partitioned else {}
    )
    op.create_table(
        "audit_events",
        *_event_columns(),
        sa.PrimaryKeyConstraint("customer_id", "seq", *timed, name="pk_audit_events"),
        **options,
    )
    op.create_table(
        "audit_subjects",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("subject_hash", sa.String(length=96), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        *[sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False)] * partitioned,
        sa.PrimaryKeyConstraint(
            "customer_id", "subject_hash", "seq", *timed, name="pk_audit_subjects"
        ),
        **options,
    )


def _step_aside(suffix: str) -> None:
    """Rename both tables to ``<name>_<suffix>`` and free their index and key names
    (names are per schema) for the tables that replace them; the rows stay until copied."""
    for table in ("audit_events", "audit_subjects"):
        op.rename_table(table, f"{table}_{suffix}")
        op.execute(
            f"ALTER TABLE {table}_{suffix} RENAME CONSTRAINT pk_{table} TO pk_{table}_{suffix}"
        )
    for name in _EVENT_INDEXES:
        op.drop_index(name, table_name=f"audit_events_{suffix}")


def _move_rows(suffix: str, copy_subjects: str) -> None:
    """Copy the events from the tables set aside as ``<name>_<suffix>``, the subject rows
    by ``copy_subjects``; index the events (after the copy: one sort per table instead
    of an index insertion per row); drop the old tables (a partitioned one with its
    partitions)."""
    columns = ", ".join(c.name for c in _event_columns())
    _progress("copying the audit events")
    op.execute(
        f"INSERT INTO audit_events ({columns}) SELECT {columns} FROM audit_events_{suffix}"  # noqa: S608
    )
    _progress("copying the subject rows")
    op.execute(copy_subjects)
    _progress("indexing the audit events")
    for name, index_columns in _EVENT_INDEXES.items():
        op.create_index(name, "audit_events", index_columns, unique=False)
    op.drop_table(f"audit_subjects_{suffix}")
    op.drop_table(f"audit_events_{suffix}")


def _upgrade_postgresql() -> None:
    bind = op.get_bind()
    _step_aside("unpartitioned")
    _create_tables(partitioned=True)
    oldest = bind.execute(sa.text("SELECT min(occurred_at) FROM audit_events_unpartitioned"))
    now = _month_start(datetime.now(UTC))
    first = min(_month_start(oldest.scalar() or now), now)
    newest = bind.execute(sa.text("SELECT max(occurred_at) FROM audit_events_unpartitioned"))
    last = now
    for _ in range(_MONTHS_AHEAD):
        last = _next_month(last)
    last = max(last, _month_start(newest.scalar() or now))
    start = first
    while start <= last:
        end = _next_month(start)
        for parent in ("audit_events", "audit_subjects"):
            op.execute(
                f"CREATE TABLE {parent}_p{start:%Y_%m} PARTITION OF {parent} "
                f"FOR VALUES FROM ({_literal(start)}) TO ({_literal(end)})"
            )
        start = end
    for parent in ("audit_events", "audit_subjects"):
        op.execute(f"CREATE TABLE {parent}_default PARTITION OF {parent} DEFAULT")
    # Every subject row takes its event's time; one without an event (which no
    # append or prune leaves) has no time to be filed under: refuse rather than drop it.
    _move_rows(
        "unpartitioned",
        "INSERT INTO audit_subjects (customer_id, subject_hash, seq, occurred_at) "
        "SELECT s.customer_id, s.subject_hash, s.seq, e.occurred_at "
        "FROM audit_subjects_unpartitioned s JOIN audit_events_unpartitioned e "
        "ON e.customer_id = s.customer_id AND e.seq = s.seq",
    )
    _progress("analyzing the partitioned tables")
    op.execute("ANALYZE audit_events")
    op.execute("ANALYZE audit_subjects")
    _progress("done")


def _downgrade_postgresql() -> None:
    _step_aside("partitioned")
    _create_tables(partitioned=False)
    _move_rows(
        "partitioned",
        "INSERT INTO audit_subjects (customer_id, subject_hash, seq) "
        "SELECT customer_id, subject_hash, seq FROM audit_subjects_partitioned",
    )


# -- SQLite ----------------------------------------------------------------------------------


def _upgrade_sqlite() -> None:
    with op.batch_alter_table("audit_subjects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE audit_subjects SET occurred_at = (SELECT e.occurred_at FROM audit_events e "
        "WHERE e.customer_id = audit_subjects.customer_id AND e.seq = audit_subjects.seq)"
    )
    with op.batch_alter_table("audit_subjects", schema=None, recreate="always") as batch_op:
        batch_op.alter_column(
            "occurred_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.drop_constraint("pk_audit_subjects", type_="primary")
        batch_op.create_primary_key(
            "pk_audit_subjects", ["customer_id", "subject_hash", "seq", "occurred_at"]
        )
    with op.batch_alter_table("audit_events", schema=None, recreate="always") as batch_op:
        batch_op.drop_constraint("pk_audit_events", type_="primary")
        batch_op.create_primary_key("pk_audit_events", ["customer_id", "seq", "occurred_at"])


def _downgrade_sqlite() -> None:
    with op.batch_alter_table("audit_events", schema=None, recreate="always") as batch_op:
        batch_op.drop_constraint("pk_audit_events", type_="primary")
        batch_op.create_primary_key("pk_audit_events", ["customer_id", "seq"])
    with op.batch_alter_table("audit_subjects", schema=None, recreate="always") as batch_op:
        batch_op.drop_constraint("pk_audit_subjects", type_="primary")
        batch_op.create_primary_key("pk_audit_subjects", ["customer_id", "subject_hash", "seq"])
        batch_op.drop_column("occurred_at")
