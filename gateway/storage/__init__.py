"""Storage: the schema, the engine, and migrations."""

from __future__ import annotations

from gateway.storage.engine import create_engine, writer
from gateway.storage.schema import (
    account_claims,
    audit_tables,
    callers,
    connect_sessions,
    connections,
    metadata,
    oauth_states,
    provider_tokens,
)

__all__ = [
    "account_claims",
    "audit_tables",
    "callers",
    "connect_sessions",
    "connections",
    "create_engine",
    "metadata",
    "oauth_states",
    "provider_tokens",
    "writer",
]
