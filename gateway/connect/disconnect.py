"""Disconnecting: revoke at the provider where it can, then forget the tokens."""

from __future__ import annotations

import httpx
import structlog

from gateway.audit import Action, AuditWriter, EventDraft, Outcome
from gateway.connections import Connection, ConnectionStore
from gateway.errors import LinkgateError
from gateway.oauth import revoke_token
from gateway.observability import current_trace_id
from gateway.provider_registry import ProviderRegistry

log = structlog.get_logger(__name__)


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

    RFC 7009 §2.1: revoking the refresh token invalidates the whole grant at
    providers that support it, so it goes first; the access token follows for
    providers that revoke only what they are given. A provider that cannot be
    reached does not keep the tokens alive here: the tokens are deleted anyway,
    and the outcome says the revocation is unconfirmed.
    """
    revoked = False
    configured = registry.get(connection.provider)
    if configured is not None:
        try:
            for name in ("refresh_token", "access_token"):
                token = store.open_token(connection, name)
                if token:
                    revoked = (
                        await revoke_token(
                            http, configured.provider, configured.client, token, name
                        )
                        or revoked
                    )
        except LinkgateError as exc:
            log.warning(
                "connection.revoke_failed", connection_id=connection.id, problem=exc.problem
            )
            revoked = False
    reason = "disconnected" if revoked else "disconnected (revocation at the provider unconfirmed)"
    await store.mark_revoked(connection.id, reason)
    await audit.record(
        EventDraft(
            customer_id=connection.customer_id,
            action=Action.CONNECTION_DELETED,
            outcome=Outcome.ALLOWED,
            caller_id=actor_id,
            caller_class=actor_class,
            connection_id=connection.id,
            provider=connection.provider,
            trace_id=current_trace_id(),
        )
    )
    log.info("connection.deleted", connection_id=connection.id, revoked_at_provider=revoked)
    return revoked
