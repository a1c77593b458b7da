"""Disconnecting: revoke at the provider where it can, then forget the tokens."""

from __future__ import annotations

import httpx
import structlog

from gateway import audit as audit_log
from gateway.audit import Action, AuditWriter, EventDraft, Outcome
from gateway.connections import Connection, ConnectionStore
from gateway.errors import AuditUnavailable, LinkgateError
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
    audit: AuditWriter,
    store: ConnectionStore,
    registry: ProviderRegistry,
    http: httpx.AsyncClient,
) -> bool:
    """Returns whether the provider confirmed the revocation.

    ``actor_id`` is who asked: a service id, or the connect session of the
    admin who clicked Disconnect in the portal.

    A provider that cannot be reached does not keep the tokens alive here: the
    tokens are deleted anyway, and the outcome says the revocation is unconfirmed.

    The event is durable first (the audit writer commits on its own connection,
    so it cannot share the change's transaction): an audit log that cannot be
    written is ``AuditUnavailable`` (503) with nothing done, and the retry does
    it all. Recorded after, a failed event was lost to every caller that skips
    an already revoked connection on retry (the erasure step in
    processor_requests.steps). Keeping the tokens until then releases nothing:
    no records leave while the audit log is down either.
    """
    draft = EventDraft(
        customer_id=connection.customer_id,
        action=Action.CONNECTION_DELETED,
        outcome=Outcome.ALLOWED,
        caller_id=actor_id,
        caller_class=actor_class,
        connection_id=connection.id,
        provider=connection.provider,
        trace_id=current_trace_id(),
    )
    try:
        await audit.record(draft)
    except audit_log.AuditUnavailable as exc:
        raise AuditUnavailable(str(exc)) from None
    revoked = await revoke_at_provider(connection, store=store, registry=registry, http=http)
    reason = "disconnected" if revoked else "disconnected (revocation at the provider unconfirmed)"
    await store.mark_revoked(connection.id, reason)
    log.info("connection.deleted", connection_id=connection.id, revoked_at_provider=revoked)
    return revoked
