"""Subject controls: End Users' marketing consents and the suppression list, per customer.

What the privacy notice's consent and data-subject-rights passages need the
gateway to remember about an End User, kept as keyed identifier hashes only:

* :class:`ConsentStore` — marketing consent recorded and withdrawn by the
  customer (``PUT``/``DELETE /v1/customers/{customer_id}/consents``);
* :class:`SuppressionStore` — erasure, restriction, objection and consent
  withdrawal, written by processor requests (in process) and listed by
  ``GET /v1/customers/{customer_id}/suppressions``;
* :class:`SubjectControls` — the per-request, read-only view
  (:class:`PageControls`) that the records service hands the policy engine.

Modules: :mod:`~gateway.subject_controls.tables`,
:mod:`~gateway.subject_controls.subjects` (parsing and hashing a subject),
:mod:`~gateway.subject_controls.consents`,
:mod:`~gateway.subject_controls.suppressions`,
:mod:`~gateway.subject_controls.lookup`.
"""

from __future__ import annotations

from gateway.subject_controls.consents import Consent, ConsentStore, Withdrawal, consent_purpose
from gateway.subject_controls.lookup import PageControls, PageHashes, SubjectControls
from gateway.subject_controls.subjects import (
    MAX_IDENTIFIERS,
    MAX_NOTE,
    check_note,
    hash_identifiers,
    parse_subject,
    subject_counts,
)
from gateway.subject_controls.suppressions import Suppression, SuppressionKind, SuppressionStore
from gateway.subject_controls.tables import (
    ALL_PURPOSES,
    SubjectControlTables,
    define_subject_control_tables,
)

__all__ = [
    "ALL_PURPOSES",
    "MAX_IDENTIFIERS",
    "MAX_NOTE",
    "Consent",
    "ConsentStore",
    "PageControls",
    "PageHashes",
    "SubjectControlTables",
    "SubjectControls",
    "Suppression",
    "SuppressionKind",
    "SuppressionStore",
    "Withdrawal",
    "check_note",
    "consent_purpose",
    "define_subject_control_tables",
    "hash_identifiers",
    "parse_subject",
    "subject_counts",
]
