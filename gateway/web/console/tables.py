"""The auditor console's table, defined into the gateway's ``MetaData``.

* ``console_sessions``: one signed-in browser. ``id_hash`` is the SHA-256 of
  the random session id the cookie carries (the id has 256 bits of entropy,
  so no slow hash is needed); the id itself and the auditor's key are never
  stored. ``expires_at`` slides forward on use (idle timeout) but never past
  ``created_at`` plus the absolute lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Index, MetaData, String, Table

from gateway.storage.types import UTCDateTime

__all__ = ["ConsoleTables", "define_console_tables"]


@dataclass(frozen=True, slots=True)
class ConsoleTables:
    sessions: Table


def define_console_tables(metadata: MetaData) -> ConsoleTables:
    """Add the console's table to ``metadata`` and return it."""
    sessions = Table(
        "console_sessions",
        metadata,
        Column("id_hash", String(64), primary_key=True),
        Column("caller_id", String(40), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("last_seen_at", UTCDateTime(), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=False),
        Index("ix_console_sessions_expires", "expires_at"),
    )
    return ConsoleTables(sessions=sessions)
