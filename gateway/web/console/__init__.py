"""The auditor console: signed-in pages over the audit log and processor requests.

Modules, one idea each:

* :mod:`~gateway.web.console.tables` — the ``console_sessions`` table;
* :mod:`~gateway.web.console.sessions` — server-side sessions and their cookie;
* :mod:`~gateway.web.console.chart` — the disclosures chart (sans-I/O SVG geometry);
* :mod:`~gateway.web.console.auth` — sign-in, sign-out, the signed-in guard, CSRF;
* :mod:`~gateway.web.console.audit_pages` — event search, one event, chain verification,
  disclosures;
* :mod:`~gateway.web.console.request_pages` — processor requests: file, list, follow,
  download;
* :mod:`~gateway.web.console.routes` — the routes, for ``gateway.app``.

Only the tables are re-exported here: ``gateway.storage.schema`` imports them
while the storage package is still loading, so the other modules (which use
the storage package) are imported by their full path.
"""

from __future__ import annotations

from gateway.web.console.tables import ConsoleTables, define_console_tables

__all__ = ["ConsoleTables", "define_console_tables"]
