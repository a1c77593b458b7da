"""The audit log's tables, defined into whatever ``MetaData`` the gateway's schema uses.

* ``audit_events``: one row per event, keyed ``(customer_id, seq, occurred_at)``.
  ``content`` holds the exact canonical JSON the hash covers (text, not
  JSONB, so the bytes an export hands to an auditor are the bytes that were
  hashed). The columns beside it exist only for search and are checked
  against ``content`` on verification.
* ``audit_subjects``: one row per subject hash per event, with its event's
  ``occurred_at``; its primary key ``(customer_id, subject_hash, seq,
  occurred_at)`` is the subject-search index.
* ``audit_heads``: the chain head per customer. Appends lock this row, which
  serializes appends for one customer and lets other customers proceed.
* ``audit_checkpoints``: signed notes (:mod:`gateway.audit.checkpoint`); never pruned.
* ``audit_outbox``: drafts written by the transaction that changed state, not
  yet in the chain (:mod:`gateway.audit.outbox`). A row is deleted by the
  transaction that appends its event, so a row present means "not in the
  chain yet"; ``draft`` is the draft's fields as JSON (hashes, never clear
  identifiers or secrets, as every draft).

On PostgreSQL ``audit_events`` and ``audit_subjects`` are ``PARTITION BY RANGE
(occurred_at)``, one partition per calendar month (UTC) and a DEFAULT one
(:mod:`gateway.audit.partitions`), so that retention drops a month instead of
deleting millions of rows. PostgreSQL
requires a partitioned table's primary key to hold the partition key
(https://www.postgresql.org/docs/current/ddl-partitioning.html#DDL-PARTITIONING-DECLARATIVE-LIMITATIONS),
hence ``occurred_at`` in both keys. SQLite is not partitioned but has the same
keys: one definition for both dialects (``metadata.create_all``, the
migration check) rather than a key per dialect, and ``(customer_id, seq)``
stays the key's leading prefix, which every chain read uses. What the keys no
longer enforce alone, one event per seq, the append guarantees (the head row
lock or compare-and-set moves a chain one seq at a time) and verification
checks (a second row at a seq breaks the chain).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    event,
)
from sqlalchemy.engine import Connection

__all__ = ["AuditTables", "aware_utc", "default_partition_name", "define_audit_tables"]

_ID = 128  # customer, caller and connection ids
_HASH = 64  # hex SHA-256
_SUBJECT = 96  # "hmac-sha256:" + hex
_OUTBOX_ID = 40  # "aob_" + 32 hex


@dataclass(frozen=True, slots=True)
class AuditTables:
    events: Table
    subjects: Table
    heads: Table
    checkpoints: Table
    outbox: Table


def define_audit_tables(metadata: MetaData) -> AuditTables:
    """Add the audit tables to ``metadata`` and return them."""
    events = Table(
        "audit_events",
        metadata,
        Column("customer_id", String(_ID), nullable=False),
        Column("seq", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("action", String(64), nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("caller_id", String(_ID)),
        Column("connection_id", String(_ID)),
        Column("trace_id", String(64)),
        Column("content", Text, nullable=False),
        Column("prev_hash", String(_HASH), nullable=False),
        Column("hash", String(_HASH), nullable=False),
        PrimaryKeyConstraint("customer_id", "seq", "occurred_at", name="pk_audit_events"),
        Index("ix_audit_events_time", "customer_id", "occurred_at", "seq"),
        Index("ix_audit_events_caller", "customer_id", "caller_id", "seq"),
        Index("ix_audit_events_connection", "customer_id", "connection_id", "seq"),
        Index("ix_audit_events_action", "customer_id", "action", "seq"),
        Index("ix_audit_events_outcome", "customer_id", "outcome", "seq"),
        postgresql_partition_by="RANGE (occurred_at)",
    )
    subjects = Table(
        "audit_subjects",
        metadata,
        Column("customer_id", String(_ID), nullable=False),
        Column("subject_hash", String(_SUBJECT), nullable=False),
        Column("seq", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint(
            "customer_id", "subject_hash", "seq", "occurred_at", name="pk_audit_subjects"
        ),
        postgresql_partition_by="RANGE (occurred_at)",
    )
    for table in (events, subjects):
        # A partitioned table created by ``create_all`` (tests, benchmarks) takes
        # rows at once, as a migrated one does: into DEFAULT until upkeep adds months.
        event.listen(table, "after_create", _create_default_partition)
    heads = Table(
        "audit_heads",
        metadata,
        Column("customer_id", String(_ID), primary_key=True),
        Column("seq", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
        Column("hash", String(_HASH), nullable=False),
        Column("occurred_at", DateTime(timezone=True)),
    )
    checkpoints = Table(
        "audit_checkpoints",
        metadata,
        Column("customer_id", String(_ID), nullable=False),
        Column("seq", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
        Column("signed_at", DateTime(timezone=True), nullable=False),
        Column("key_id", String(160), nullable=False),
        Column("note", Text, nullable=False),
        PrimaryKeyConstraint("customer_id", "seq", name="pk_audit_checkpoints"),
    )
    outbox = Table(
        "audit_outbox",
        metadata,
        Column("id", String(_OUTBOX_ID), primary_key=True),
        Column("customer_id", String(_ID), nullable=False),
        Column("written_at", DateTime(timezone=True), nullable=False),
        Column("draft", Text, nullable=False),
        Index("ix_audit_outbox_written", "written_at", "id"),
    )
    return AuditTables(
        events=events, subjects=subjects, heads=heads, checkpoints=checkpoints, outbox=outbox
    )


def default_partition_name(parent: str) -> str:
    """The name of the partition that takes the rows no month partition takes."""
    return f"{parent}_default"


def _create_default_partition(target: Table, connection: Connection, **_: Any) -> None:
    if connection.dialect.name == "postgresql":
        quote = connection.dialect.identifier_preparer.quote
        connection.exec_driver_sql(
            f"CREATE TABLE {quote(default_partition_name(target.name))} "
            f"PARTITION OF {quote(target.name)} DEFAULT"
        )


def aware_utc(moment: datetime | None) -> datetime | None:
    """A time read from these tables as an aware UTC datetime: SQLite hands back
    naive ones for ``DateTime(timezone=True)`` (they were stored as UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
