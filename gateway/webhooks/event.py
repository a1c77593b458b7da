"""What a webhook says: a connection changed health.

The body is built once, when the change is written to the outbox, and stored
as the exact bytes every attempt sends and signs. It carries the connection's
identity and status and nothing else: never a token, never End User data.
"""

from __future__ import annotations

import enum
import json
import uuid
from datetime import datetime
from typing import Protocol

__all__ = ["ConnectionState", "EventType", "event_body", "new_event_id"]


class EventType(enum.StrEnum):
    NEEDS_REAUTH = "connection.needs_reauth"  # refresh refused (RFC 6749 §5.2 invalid_grant)
    RECOVERED = "connection.recovered"  # back to active after the customer linked it again
    REVOKED = "connection.revoked"  # disconnected


class ConnectionState(Protocol):
    """The parts of a connection a webhook reports (``gateway.connections.Connection`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def customer_id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def status_reason(self) -> str | None: ...


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex[:24]}"


def event_body(
    event_id: str, event_type: EventType, created_at: datetime, connection: ConnectionState
) -> str:
    """The JSON body: ``{id, type, created_at, data: {connection_id, customer_id, …}}``."""
    return json.dumps(
        {
            "id": event_id,
            "type": event_type.value,
            "created_at": created_at.isoformat(),
            "data": {
                "connection_id": connection.id,
                "customer_id": connection.customer_id,
                "provider": connection.provider,
                "status": str(connection.status),
                "reason": connection.status_reason,
            },
        },
        separators=(",", ":"),
    )
