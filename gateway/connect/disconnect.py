"""Disconnecting: revoke at the provider where it can, then forget the tokens, audited."""

from __future__ import annotations

import httpx
import structlog

from gateway.audit import Action, EventDraft, Outcome
from gateway.connections import Connection, ConnectionStore
from gateway.errors import LinkgateError
from gateway.oauth import revoke_token
from gateway.observability import current_trace_id
from gateway.provider_registry import ProviderRegistry

log = structlog.get_logger(__name__)


async def revoke_at_provider(
    connection: Connection,
    *,
    store: ConnectionStore,
    registry: ProviderRegistry,
    http: httpx.AsyncClient,
) -> bool:
    """Revoke the connection's grant at its provider; whether the provider confirmed it.

    RFC 7009 §2.1: revoking the refresh token invalidates the whole grant at
    providers that support it, so it goes first; the access token follows for
    providers that revoke only what they are given. An unreachable provider is
    logged and reported as unconfirmed; callers delete the tokens either way.
    """
    configured = registry.get(connection.provider)
    if configured is None:
        return False
    revoked = False
    try:
        for name in ("refresh_token", "access_token"):
            token = store.open_token(connection, name)
            if token:
                confirmed = await revoke_token(
                    http, configured.provider, configured.client, token, name
                )
                revoked = confirmed or revoked
    except LinkgateError as exc:
        log.warning("connection.revoke_failed", connection_id=connection.id, problem=exc.problem)
        return False
    return revoked


async def disconnect(
    connection: Connection,
    *,
    actor_id: str,
    actor_class: str | None,
    store: ConnectionStore,
    registry: ProviderRegistry,
    http: httpx.AsyncClient,
) -> bool:
    """Returns whether the provider confirmed the revocation.

    ``actor_id`` is who asked: a service id, or the connect session of the
    admin who clicked Disconnect in the portal.

    A provider that cannot be reached does not keep the tokens alive here: the
    tokens are deleted anyway, and the outcome says the revocation is unconfirmed.

    The revocation comes first, outside any transaction: it is a call to the
    provider, which no rollback takes back, and revoking twice is harmless
    (RFC 7009 §2.2: the server answers 200 for a token already invalid). Then
    the status change and its ``connection.deleted`` event commit together,
    the event through the audit outbox (:mod:`gateway.audit.outbox`), so a
    process that dies in between has changed nothing the gateway holds, and
    a retry (or a resumed erasure, which skips a connection already revoked)
    writes the event once. Like a consent withdrawal, a disconnect ends a use
    of data, so it takes effect even when the audit log cannot be appended to
    right now: its event is durable in the outbox and reaches the chain with
    the drain.
    """
    revoked = await revoke_at_provider(connection, store=store, registry=registry, http=http)
    reason = "disconnected" if revoked else "disconnected (revocation at the provider unconfirmed)"
    event = EventDraft(
        customer_id=connection.customer_id,
        action=Action.CONNECTION_DELETED,
        outcome=Outcome.ALLOWED,
        caller_id=actor_id,
        caller_class=actor_class,
        connection_id=connection.id,
        provider=connection.provider,
        trace_id=current_trace_id(),
    )
    await store.mark_revoked(connection.id, reason, audit_as=event)
    log.info("connection.deleted", connection_id=connection.id, revoked_at_provider=revoked)
    return revoked
