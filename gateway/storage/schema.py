"""The gateway's tables (SQLAlchemy Core), one ``MetaData`` for Alembic.

Timestamps are timezone-aware UTC everywhere. Secrets never sit in a column in
clear: tokens are sealed by the vault, credentials and one-time values are
stored as hashes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.audit.tables import define_audit_tables
from gateway.processor_requests.tables import define_processor_request_tables
from gateway.storage.types import UTCDateTime
from gateway.subject_controls.tables import define_subject_control_tables
from gateway.web.console.tables import define_console_tables
from gateway.webhooks.tables import define_webhook_tables

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _utc(name: str, nullable: bool = False) -> Column[datetime]:
    return Column(name, UTCDateTime(), nullable=nullable)


# Service keys and auditor credentials. ``key_hash`` is SHA-256 of the whole
# random key: the key has 256 bits of entropy, so no slow hash is needed.
callers = Table(
    "callers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),  # service | auditor
    Column("name", String(200), nullable=False),
    Column("caller_class", String(16), nullable=False),  # internal | affiliate | third_party
    Column("key_prefix", String(24), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("customers", JSON, nullable=False),
    Column("purposes", JSON, nullable=False),
    _utc("created_at"),
    _utc("revoked_at", nullable=True),
)

connect_sessions = Table(
    "connect_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("customer_id", String(200), nullable=False),
    Column("providers", JSON, nullable=False),
    Column("return_url", Text, nullable=True),
    Column("created_by", String(40), nullable=False),
    _utc("created_at"),
    _utc("expires_at"),
)

# One row per authorization request in flight (RFC 6749 §10.12, RFC 9700 §2.1).
oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("session_id", String(40), ForeignKey("connect_sessions.id", ondelete="CASCADE")),
    Column("provider", String(64), nullable=False),
    Column("code_verifier", Text, nullable=False),  # sealed by the vault
    Column("nonce", String(128), nullable=True),
    Column("browser_binding", String(64), nullable=False),  # hash of the cookie value
    _utc("created_at"),
    _utc("expires_at"),
    _utc("used_at", nullable=True),
)

connections = Table(
    "connections",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("issuer", String(500), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("account_name", String(500), nullable=False),
    # A second id the provider has for the account, which its notifications may name
    # instead of ``subject`` (Instagram's app-scoped /me ``id``; providers.base.Account).
    Column("subject_alias", String(500), nullable=True),
    Column("scopes", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("access_token", Text, nullable=True),  # sealed
    Column("refresh_token", Text, nullable=True),  # sealed
    _utc("token_expires_at", nullable=True),
    _utc("created_at"),
    _utc("updated_at"),
    _utc("last_refreshed_at", nullable=True),
    # When the grant was last (re)linked: a provider notification about an
    # event from before it is about an earlier grant (gateway.provider_notifications).
    _utc("linked_at"),
    Column("refresh_failures", Integer, nullable=False, default=0),
    _utc("refresh_cooldown_until", nullable=True),
    UniqueConstraint("customer_id", "provider", "issuer", "subject"),
)
Index("ix_connections_customer", connections.c.customer_id, connections.c.created_at)
# A provider's notification names the account, not the customer (ConnectionStore.by_account).
Index(
    "ix_connections_account",
    connections.c.provider,
    connections.c.issuer,
    connections.c.subject,
)
Index(
    "ix_connections_account_alias",
    connections.c.provider,
    connections.c.issuer,
    connections.c.subject_alias,
)

# Per-object tokens beside a connection's grant (Meta Page access tokens), sealed by
# the vault like the connection's own (gateway.provider_tokens).
provider_tokens = Table(
    "provider_tokens",
    metadata,
    Column("connection_id", String(40), primary_key=True),
    Column("object_id", String(200), primary_key=True),
    Column("token", Text, nullable=False),  # sealed
    _utc("created_at"),
)

# The linked identity's claims kept at connect time for providers without a userinfo
# endpoint (Apple), sealed by the vault like tokens: they hold an email address
# (gateway.account_claims). Deleted with the connection's tokens.
account_claims = Table(
    "account_claims",
    metadata,
    Column("connection_id", String(40), primary_key=True),
    Column("claims", Text, nullable=False),  # sealed JSON object
    _utc("updated_at"),
)

# The audit log's own tables (gateway.audit owns their shape).
audit_tables = define_audit_tables(metadata)

# The webhook outbox (gateway.webhooks owns its shape).
webhook_tables = define_webhook_tables(metadata, UTCDateTime)

# Consents and the suppression list (gateway.subject_controls owns their shape).
subject_control_tables = define_subject_control_tables(metadata)

# Processor requests (gateway.processor_requests owns their shape).
processor_request_tables = define_processor_request_tables(metadata)

# Auditor console sessions (gateway.web.console owns their shape).
console_tables = define_console_tables(metadata)
