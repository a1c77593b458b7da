"""The webhook outbox's tables, defined into the gateway's ``MetaData``.

* ``webhook_deliveries``: one row per event, written in the same transaction
  as the connection change it reports (the transactional outbox), so a crash
  can lose neither without the other. ``body`` is the exact JSON every attempt
  sends. ``state`` is ``pending`` until a 2xx (``delivered``) or until the last
  attempt failed (``abandoned``); ``next_attempt_at`` is when a dispatcher may
  claim it next, and doubles as the claim's lease.
* ``webhook_attempts``: one row per attempt: when, how long, the status code
  or the error, and when the next attempt is due (none once settled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

__all__ = ["DeliveryState", "WebhookTables", "define_webhook_tables"]


class DeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class WebhookTables:
    deliveries: Table
    attempts: Table


def define_webhook_tables(metadata: MetaData, datetime_type: Any) -> WebhookTables:
    """Add the webhook tables to ``metadata``; ``datetime_type`` is the schema's UTC column type."""
    deliveries = Table(
        "webhook_deliveries",
        metadata,
        Column("id", String(40), primary_key=True),
        Column("event_type", String(64), nullable=False),
        Column("customer_id", String(200), nullable=False),
        Column("connection_id", String(40), nullable=False),
        Column("body", Text, nullable=False),
        Column("state", String(16), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("created_at", datetime_type, nullable=False),
        Column("next_attempt_at", datetime_type, nullable=True),
        Column("delivered_at", datetime_type, nullable=True),
        Column("last_status_code", Integer, nullable=True),
        Column("last_error", Text, nullable=True),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_customer", "customer_id", "created_at"),
    )
    attempts = Table(
        "webhook_attempts",
        metadata,
        Column(
            "delivery_id",
            String(40),
            ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("attempt", Integer, nullable=False),
        Column("attempted_at", datetime_type, nullable=False),
        Column("duration_ms", Integer, nullable=False),
        Column("status_code", Integer, nullable=True),
        Column("error", Text, nullable=True),
        Column("next_attempt_at", datetime_type, nullable=True),
        PrimaryKeyConstraint("delivery_id", "attempt", name="pk_webhook_attempts"),
    )
    return WebhookTables(deliveries=deliveries, attempts=attempts)
