"""Writing webhook events into the outbox, inside the caller's transaction.

The transactional outbox: the event row is inserted by the same transaction
that changes the connection's status, so either both are committed or
neither; a crash between the change and the delivery loses nothing, because
the dispatcher (:mod:`gateway.webhooks.dispatcher`) finds the row later.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.webhooks.event import ConnectionState, EventType, event_body, new_event_id
from gateway.webhooks.tables import DeliveryState, WebhookTables

__all__ = ["WebhookOutbox"]

log = structlog.get_logger("gateway.webhooks")


class WebhookOutbox:
    """Adds events to the outbox; a disabled outbox (no webhook URL configured) adds none."""

    def __init__(
        self,
        tables: WebhookTables | None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._tables = tables
        self._clock = clock

    @classmethod
    def disabled(cls) -> WebhookOutbox:
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self._tables is not None

    async def add(
        self, conn: AsyncConnection, event_type: EventType, connection: ConnectionState
    ) -> str | None:
        """Insert the event in ``conn``'s open transaction; its id, or ``None`` when disabled."""
        if self._tables is None:
            return None
        now = self._clock()
        event_id = new_event_id()
        await conn.execute(
            self._tables.deliveries.insert().values(
                id=event_id,
                event_type=event_type.value,
                customer_id=connection.customer_id,
                connection_id=connection.id,
                body=event_body(event_id, event_type, now, connection),
                state=DeliveryState.PENDING,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
        log.info(
            "webhook.queued",
            event_id=event_id,
            event_type=event_type.value,
            connection_id=connection.id,
        )
        return event_id
