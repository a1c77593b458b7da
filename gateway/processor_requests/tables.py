"""The processor-request tables, defined into the gateway's ``MetaData``.

* ``processor_requests``: one request; its subject only as keyed identifier
  hashes (``subject_hashes``). ``sealed_subject`` holds the clear identifiers,
  sealed by the vault, only while the request is open: the suppression and
  consent stores take identifiers, not hashes. It is set to NULL the moment
  the request completes, fails or is rejected. ``open_key`` is the duplicate
  key (:func:`~gateway.processor_requests.machine.duplicate_key`) while the
  request is open, NULL after: the unique index refuses a second open
  request for the same customer, kind and subject, on every replica at once.
* ``processor_request_steps``: the steps done, one row each; a resumed request
  skips them.
* ``processor_request_bundles``: downloadable files (portability), sealed by
  the vault, written by the transaction that records their step done,
  deleted by the retention purge.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from gateway.storage.types import UTCDateTime

__all__ = ["ProcessorRequestTables", "define_processor_request_tables"]

_ID = 40
_CUSTOMER = 200


@dataclass(frozen=True, slots=True)
class ProcessorRequestTables:
    requests: Table
    steps: Table
    bundles: Table


def define_processor_request_tables(metadata: MetaData) -> ProcessorRequestTables:
    """Add the processor-request tables to ``metadata`` and return them."""
    requests = Table(
        "processor_requests",
        metadata,
        Column("id", String(_ID), primary_key=True),
        Column("customer_id", String(_CUSTOMER), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("status", String(16), nullable=False),
        Column("jurisdiction", String(8), nullable=True),
        Column("purposes", JSON, nullable=False),
        Column("lift", Boolean, nullable=False),
        Column("note", Text, nullable=True),
        Column("reason", Text, nullable=True),  # why rejected or failed; never an identifier
        Column("filed_by", String(_ID), nullable=False),
        Column("filed_class", String(16), nullable=False),
        Column("verified_by", String(200), nullable=True),
        Column("verified_at", UTCDateTime(), nullable=True),
        Column("received_at", UTCDateTime(), nullable=False),
        Column("due_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        Column("finished_at", UTCDateTime(), nullable=True),
        Column("open_key", String(64), nullable=True, unique=True),
        Column("subject_hashes", JSON, nullable=False),
        Column("sealed_subject", Text, nullable=True),
        Column("lease_until", UTCDateTime(), nullable=True),
        Column("attempts", Integer, nullable=False),
        Column("result", JSON, nullable=True),
        Index("ix_processor_requests_status", "status", "received_at"),
        Index("ix_processor_requests_customer", "customer_id", "received_at"),
    )
    steps = Table(
        "processor_request_steps",
        metadata,
        Column(
            "request_id",
            String(_ID),
            ForeignKey("processor_requests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("step", String(64), primary_key=True),
        Column("completed_at", UTCDateTime(), nullable=False),
        Column("output", JSON, nullable=False),
    )
    bundles = Table(
        "processor_request_bundles",
        metadata,
        Column(
            "request_id",
            String(_ID),
            ForeignKey("processor_requests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("name", String(64), primary_key=True),
        Column("media_type", String(64), nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("bytes", Integer, nullable=False),
        Column("content", Text, nullable=False),  # sealed by the vault
        Column("created_at", UTCDateTime(), nullable=False),
    )
    return ProcessorRequestTables(requests=requests, steps=steps, bundles=bundles)
