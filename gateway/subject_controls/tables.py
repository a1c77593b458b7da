"""The consent and suppression tables, defined into the gateway's ``MetaData``.

No identifier is ever stored in clear: a subject is the set of its identifiers'
per-customer keyed hashes (:class:`gateway.audit.SubjectHasher`), one row per
hash in the ``*_subjects`` tables, whose primary keys start with
``(customer_id, subject_hash)`` so that the per-request lookup for a page's
subjects is one index range scan per table.

* ``consents``: one marketing consent of one End User for one purpose, with
  the customer's evidence note; withdrawing stamps ``withdrawn_at`` (the row
  stays: when consent was given and withdrawn is itself evidence).
* ``consent_subjects``: the identifier hashes of a consent's subject.
* ``suppressions``: one erasure, restriction, objection or consent withdrawal;
  ``purposes`` is empty when it covers every purpose.
* ``suppression_subjects``: one row per identifier hash and covered purpose
  (``scope`` is ``*`` for every purpose), so a lookup needs no join.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import JSON, Column, ForeignKey, Index, MetaData, String, Table, Text

from gateway.storage.types import UTCDateTime

__all__ = ["ALL_PURPOSES", "SubjectControlTables", "define_subject_control_tables"]

ALL_PURPOSES = "*"  # ``scope`` of a suppression that covers every purpose

_ID = 40
_CUSTOMER = 200  # as connections.customer_id
_SUBJECT = 96  # "hmac-sha256:" + hex
_PURPOSE = 200


@dataclass(frozen=True, slots=True)
class SubjectControlTables:
    consents: Table
    consent_subjects: Table
    suppressions: Table
    suppression_subjects: Table


def define_subject_control_tables(metadata: MetaData) -> SubjectControlTables:
    """Add the consent and suppression tables to ``metadata`` and return them."""
    consents = Table(
        "consents",
        metadata,
        Column("id", String(_ID), primary_key=True),
        Column("customer_id", String(_CUSTOMER), nullable=False),
        Column("purpose", String(_PURPOSE), nullable=False),
        Column("evidence", Text, nullable=True),
        Column("recorded_at", UTCDateTime(), nullable=False),
        Column("recorded_by", String(_ID), nullable=False),
        Column("withdrawn_at", UTCDateTime(), nullable=True),
        Column("withdrawn_by", String(_ID), nullable=True),
        Index("ix_consents_customer", "customer_id", "recorded_at"),
    )
    consent_subjects = Table(
        "consent_subjects",
        metadata,
        Column("customer_id", String(_CUSTOMER), primary_key=True),
        Column("subject_hash", String(_SUBJECT), primary_key=True),
        Column(
            "consent_id",
            String(_ID),
            ForeignKey("consents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    suppressions = Table(
        "suppressions",
        metadata,
        Column("id", String(_ID), primary_key=True),
        Column("customer_id", String(_CUSTOMER), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("purposes", JSON, nullable=False),  # [] = every purpose
        Column("reason", Text, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("created_by", String(_ID), nullable=False),
        Index("ix_suppressions_customer", "customer_id", "created_at"),
    )
    suppression_subjects = Table(
        "suppression_subjects",
        metadata,
        Column("customer_id", String(_CUSTOMER), primary_key=True),
        Column("subject_hash", String(_SUBJECT), primary_key=True),
        Column(
            "suppression_id",
            String(_ID),
            ForeignKey("suppressions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("scope", String(_PURPOSE), primary_key=True),
    )
    return SubjectControlTables(
        consents=consents,
        consent_subjects=consent_subjects,
        suppressions=suppressions,
        suppression_subjects=suppression_subjects,
    )
