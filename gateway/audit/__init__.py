"""The tamper-evident audit log: every access to End User data, hash-chained per customer.

A leaf of the gateway: it imports nothing else from ``gateway``. The gateway
adds :func:`define_audit_tables` to its ``MetaData``, builds one
:class:`AuditStore` and one :class:`AuditWriter` in its lifespan, and records
each access with ``await writer.record(draft)`` before responding. A change
that must commit before its event can be appended writes the draft into an
:class:`AuditOutbox` in its own transaction instead.

Modules: :mod:`~gateway.audit.event` (the values), :mod:`~gateway.audit.chain`
(hashing and verification, sans-I/O), :mod:`~gateway.audit.checkpoint` (signed
notes), :mod:`~gateway.audit.subjects` (keyed subject hashes),
:mod:`~gateway.audit.tables`, :mod:`~gateway.audit.partitions` (the tables' month
partitions on PostgreSQL: upkeep, listing), :mod:`~gateway.audit.store` (verification, and the
one object that appends, :mod:`~gateway.audit.append`, and searches,
:mod:`~gateway.audit.search`), :mod:`~gateway.audit.writer` (group commit),
:mod:`~gateway.audit.outbox` (events committed with the change they record),
:mod:`~gateway.audit.disclosures` (the 12-month disclosure accounting) and
:mod:`~gateway.audit.errors`.
"""

from __future__ import annotations

from gateway.audit.chain import (
    CHAIN_PREFIX,
    ChainVerifier,
    VerifyResult,
    canonical_content,
    decode_event,
    event_hash,
    genesis_hash,
    link,
    link_with_content,
    verify_chain,
)
from gateway.audit.checkpoint import (
    DEFAULT_KEY_NAME,
    Checkpoint,
    CheckpointKeys,
    CheckpointSigner,
    generate_key_file,
    prunable_up_to,
)
from gateway.audit.disclosures import (
    Disclosures,
    account_disclosures,
    is_disclosure,
    months_before,
)
from gateway.audit.errors import AuditError, AuditUnavailable, ChainBroken, KeyFileError
from gateway.audit.event import (
    Action,
    AuditEvent,
    EventDraft,
    OutboxEntry,
    Outcome,
    format_time,
    parse_time,
)
from gateway.audit.outbox import AuditOutbox
from gateway.audit.partitions import AuditPartitions, Partition, UpkeepReport, is_partition_name
from gateway.audit.store import AuditCursor, AuditPage, AuditStore
from gateway.audit.subjects import SubjectHasher
from gateway.audit.tables import AuditTables, define_audit_tables
from gateway.audit.writer import AuditWriter, BatchObserver

__all__ = [
    "CHAIN_PREFIX",
    "DEFAULT_KEY_NAME",
    "Action",
    "AuditCursor",
    "AuditError",
    "AuditEvent",
    "AuditOutbox",
    "AuditPage",
    "AuditPartitions",
    "AuditStore",
    "AuditTables",
    "AuditUnavailable",
    "AuditWriter",
    "BatchObserver",
    "ChainBroken",
    "ChainVerifier",
    "Checkpoint",
    "CheckpointKeys",
    "CheckpointSigner",
    "Disclosures",
    "EventDraft",
    "KeyFileError",
    "OutboxEntry",
    "Outcome",
    "Partition",
    "SubjectHasher",
    "UpkeepReport",
    "VerifyResult",
    "account_disclosures",
    "canonical_content",
    "decode_event",
    "define_audit_tables",
    "event_hash",
    "format_time",
    "generate_key_file",
    "genesis_hash",
    "is_disclosure",
    "is_partition_name",
    "link",
    "link_with_content",
    "months_before",
    "parse_time",
    "prunable_up_to",
    "verify_chain",
]
