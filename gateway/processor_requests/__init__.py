"""Processor requests: End Users' privacy rights, brought by a customer, run from facts.

Privacy notice, "Your privacy rights": an End User asks the customer (the
controller); the customer brings the request to the gateway (the processor),
"We will then help them to fulfill that request in accordance with their
instructions."

Modules, one idea each:

* :mod:`~gateway.processor_requests.machine` — states, transitions, due dates,
  duplicates (sans-I/O);
* :mod:`~gateway.processor_requests.tables` — the tables;
* :mod:`~gateway.processor_requests.store` — filing, reading, claiming;
* :mod:`~gateway.processor_requests.report` — the access report (sans-I/O);
* :mod:`~gateway.processor_requests.bundle` — the portability bundle (sans-I/O);
* :mod:`~gateway.processor_requests.steps` — what each kind does, as named steps;
* :mod:`~gateway.processor_requests.runner` — runs steps, resumably;
* :mod:`~gateway.processor_requests.download` — signed, short-lived download links;
* :mod:`~gateway.processor_requests.purge` — the retention purge;
* :mod:`~gateway.processor_requests.jobs` — the background runner and purge in ``serve``;
* :mod:`~gateway.processor_requests.cli` — ``linkgate requests …`` and ``linkgate purge``.

Only the sans-I/O core and the tables are re-exported here:
``gateway.storage.schema`` imports this package's tables while the storage
package is still loading, so the I/O modules (which use the storage package)
are imported by their full path.
"""

from __future__ import annotations

from gateway.processor_requests.machine import (
    DUE_DAYS,
    OPEN,
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    Jurisdiction,
    Kind,
    Status,
    due_at,
    due_dates,
    duplicate_key,
    is_overdue,
    transition,
)
from gateway.processor_requests.tables import (
    ProcessorRequestTables,
    define_processor_request_tables,
)

__all__ = [
    "DUE_DAYS",
    "OPEN",
    "TERMINAL",
    "TRANSITIONS",
    "InvalidTransition",
    "Jurisdiction",
    "Kind",
    "ProcessorRequestTables",
    "Status",
    "define_processor_request_tables",
    "due_at",
    "due_dates",
    "duplicate_key",
    "is_overdue",
    "transition",
]
