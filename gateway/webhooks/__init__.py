"""Webhooks to the operator's platform when a connection changes health.

A leaf like :mod:`gateway.audit`: it imports nothing else from ``gateway``.
The schema adds :func:`define_webhook_tables` to its ``MetaData``; the runtime
opens :func:`open_webhooks` in its lifespan, which yields the
:class:`WebhookOutbox` that the connection store and the token refresher write
to inside their own transactions, and runs a :class:`WebhookDispatcher` that
delivers what the outbox holds, signed (:mod:`~gateway.webhooks.signature`).

Modules: :mod:`~gateway.webhooks.event` (the body), :mod:`~gateway.webhooks.signature`
(sans-I/O signing and verification), :mod:`~gateway.webhooks.tables`,
:mod:`~gateway.webhooks.outbox` and :mod:`~gateway.webhooks.dispatcher`.
"""

from __future__ import annotations

from gateway.webhooks.dispatcher import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_ATTEMPTS,
    DeliveryPolicy,
    WebhookDispatcher,
    next_delay,
    open_webhooks,
)
from gateway.webhooks.event import ConnectionState, EventType, event_body
from gateway.webhooks.outbox import WebhookOutbox
from gateway.webhooks.signature import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    SignatureError,
    sign,
    signature_header,
    verify_signature,
)
from gateway.webhooks.tables import DeliveryState, WebhookTables, define_webhook_tables

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "ConnectionState",
    "DeliveryPolicy",
    "DeliveryState",
    "EventType",
    "SignatureError",
    "WebhookDispatcher",
    "WebhookOutbox",
    "WebhookTables",
    "define_webhook_tables",
    "event_body",
    "next_delay",
    "open_webhooks",
    "sign",
    "signature_header",
    "verify_signature",
]
