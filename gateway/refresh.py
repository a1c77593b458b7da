"""Token refresh, single-flight within a process and across processes.

When a connection's access token expires within the margin, or the provider
answers 401 once (RFC 6750 §3.1 ``invalid_token``), the gateway refreshes it
(RFC 6749 §6) — exactly once, however many requests noticed at the same time:

* within a process, one task per connection that every waiter awaits
  (:class:`~gateway.single_flight.SingleFlight`);
* across processes, a write transaction that locks the connection row
  (PostgreSQL ``SELECT … FOR UPDATE``; SQLite ``BEGIN IMMEDIATE`` through
  :func:`gateway.storage.writer`) and re-reads it: if the sealed access token is
  no longer the one the waiter saw, someone else refreshed and that token is used.

The rotated refresh token is stored in the same transaction (RFC 9700 §4.14.2:
a rotated token is single use, so losing it would end the grant); a provider
that sends none keeps the old one (RFC 6749 §6). ``invalid_grant`` (§5.2) moves
the connection to ``needs_reauth``; a transient failure sets a growing cooldown
so one broken connection cannot hammer the provider.

A request that joins another's refresh shows it in its own trace, and so in
its audit event's trace summary: a ``token.refresh.joined`` span covers the
wait, with ``linkgate.refreshed`` (whether the token it held was replaced),
``linkgate.refresh.trace_id`` (the trace of the request whose refresh it
joined, where its ``token.refresh`` span and token request are) and a span
link to that request's span. Only the leader's trace holds the token request.

The audit event (``connection.refreshed`` or ``connection.needs_reauth``) goes
into the audit outbox (:mod:`gateway.audit.outbox`) in that same transaction,
then into the chain before the refresh returns. If the audit log cannot take
it then, the refresh still succeeds: the new token and its event are both
committed, and the outbox's drain appends the event later. A reader is not
failed for a change that has happened and is on record.

A process killed after the provider rotated but before that commit loses the
new token; the next refresh then gets ``invalid_grant`` and the connection moves
to ``needs_reauth``, audited and announced by webhook, never silently broken.
A refresh still running when the gateway stops is awaited, commit and audit
event included, before the runtime closes what it uses; one that outlasts the
runtime's settle timeout is cancelled, its transaction rolls back, and the next
refresh is in the same position as after that crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import structlog
from opentelemetry import trace
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import Action, AuditOutbox, EventDraft, OutboxEntry, Outcome
from gateway.connections import Connection, ConnectionCache, Status, from_row, sealed_tokens
from gateway.errors import (
    ConnectionNeedsReauth,
    ConnectionRevoked,
    ConnectionSuppressed,
    LinkgateError,
    NotFound,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from gateway.oauth import OAuthError, TokenSet, refresh_tokens
from gateway.observability import GatewayMetrics, RefreshOutcome
from gateway.provider_registry import ProviderRegistry
from gateway.provider_tokens import exchange_token
from gateway.single_flight import LoadsInFlight, SingleFlight
from gateway.storage import connections, writer
from gateway.vault import KeyRing, token_row
from gateway.webhooks import EventType, WebhookOutbox
from providers.base import ErrorKind

__all__ = ["DEFAULT_COOLDOWN", "TokenRefresher", "cooldown_for", "needs_refresh", "require_usable"]

log = structlog.get_logger("gateway.refresh")

DEFAULT_COOLDOWN = 30.0  # seconds after the first transient failure; doubles per failure
MAX_COOLDOWN = 15 * 60.0


def needs_refresh(expires_at: datetime | None, now: datetime, margin: int) -> bool:
    """True when the token expires within ``margin`` seconds of ``now``.

    No expiry (RFC 6749 §5.1 makes ``expires_in`` optional) means: use it until a 401.
    """
    if expires_at is None:
        return False
    return expires_at - now <= timedelta(seconds=margin)


def cooldown_for(failures: int, base: float = DEFAULT_COOLDOWN) -> float:
    """Seconds to wait after the ``failures``-th consecutive transient failure."""
    return float(min(MAX_COOLDOWN, base * 2 ** max(0, failures - 1)))


def _generic_token_error_kind(error: str) -> ErrorKind:
    """Without a provider rule: ``invalid_grant`` needs the customer (RFC 6749 §5.2), else retry."""
    return ErrorKind.REAUTH if error == OAuthError.INVALID_GRANT else ErrorKind.RETRY_LATER


def require_usable(connection: Connection) -> None:
    """Raise the connection's problem unless it may be used to call the provider."""
    if connection.status is Status.NEEDS_REAUTH:
        raise ConnectionNeedsReauth(
            connection.status_reason or "the customer must link the account again",
            connection_id=connection.id,
        )
    if connection.status is Status.REVOKED:
        raise ConnectionRevoked(connection_id=connection.id)
    if connection.status is Status.SUPPRESSED:
        raise ConnectionSuppressed(connection_id=connection.id)


@dataclass(frozen=True, slots=True)
class _Failure:
    error: LinkgateError
    action: Action | None = None
    retry_after: float | None = None  # the provider's own minimum pause, if it gave one


class TokenRefresher:
    """Hands out usable access tokens, refreshing them single-flight."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        vault: KeyRing,
        registry: ProviderRegistry,
        http: httpx.AsyncClient,
        audit: AuditOutbox,
        margin: int,
        cooldown: float = DEFAULT_COOLDOWN,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        webhooks: WebhookOutbox | None = None,
        cache: ConnectionCache | None = None,
        tracer: trace.Tracer | None = None,
        loads: LoadsInFlight | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._cache = cache  # the records path's recently read rows: kept in step here
        self._vault = vault
        self._registry = registry
        self._http = http
        self._audit = audit
        self._margin = margin
        self._cooldown = cooldown
        self._clock = clock
        self._webhooks = webhooks or WebhookOutbox.disabled()
        self._inflight: SingleFlight[str, Connection] = SingleFlight(loads)
        # The span of the request that started each refresh in flight, by connection id.
        self._leaders: dict[str, trace.SpanContext] = {}
        self._tracer = tracer or trace.NoOpTracer()
        self._metrics = metrics or GatewayMetrics.disabled()  # linkgate.token.refreshes

    def access_token(self, connection: Connection) -> str:
        token = (
            self._vault.open(
                connection.sealed_access_token, row=token_row(connection.id, "access_token")
            )
            if connection.sealed_access_token
            else None
        )
        if token is None:
            raise ConnectionNeedsReauth("the connection holds no access token")
        return token

    async def fresh(self, connection: Connection) -> Connection:
        """``connection`` itself, or refreshed first when its token is about to expire."""
        if needs_refresh(connection.token_expires_at, self._clock(), self._margin):
            return await self.refresh(connection, forced=False)
        return connection

    async def refresh(self, connection: Connection, *, forced: bool = True) -> Connection:
        """Refresh unless someone already replaced the token ``connection`` holds.

        ``forced`` is for a provider 401: the token is dead whatever its expiry says.
        """
        # Its own task, shielded: a caller that goes away must not cancel the
        # refresh others await. The runtime settles it before shutting down.
        key = connection.id
        name = f"refresh-{key}"
        if not self._inflight.in_flight(key):
            # Kept before the load's task first runs: requests may join it before then.
            started_by = self._leaders[key] = trace.get_current_span().get_span_context()
            load = partial(self._refresh, key, connection.sealed_access_token, forced, started_by)
            return await self._inflight.run(key, load, name=name)
        load = partial(self._refresh, key, connection.sealed_access_token, forced)
        # Another request's refresh is in flight: this request waits on it and
        # sends no token request of its own, so without this span its trace
        # (and audit summary) would not show that its token was refreshed.
        leader = self._leaders.get(key)
        if leader is not None and not leader.is_valid:
            leader = None  # started outside any trace
        attributes: dict[str, str | bool] = {"linkgate.provider": connection.provider}
        if leader is not None:
            attributes["linkgate.refresh.trace_id"] = trace.format_trace_id(leader.trace_id)
        with self._tracer.start_as_current_span(
            "token.refresh.joined",
            attributes=attributes,
            links=[trace.Link(leader)] if leader is not None else (),
        ) as span:
            joined = await self._inflight.run(key, load, name=name)
            span.set_attribute(
                "linkgate.refreshed", joined.sealed_access_token != connection.sealed_access_token
            )
        return joined

    async def _refresh(
        self,
        connection_id: str,
        seen: str | None,
        forced: bool,
        started_by: trace.SpanContext | None = None,  # kept in _leaders until this ends
    ) -> Connection:
        """:meth:`_refresh_row`, then the connection cache holds what the row now says."""
        try:
            connection = await self._refresh_row(connection_id, seen, forced)
        except BaseException:
            # needs_reauth, revoked, cooling off, gone: the next request re-reads the row.
            if self._cache is not None:
                self._cache.forget(connection_id)
            raise
        finally:
            if started_by is not None and self._leaders.get(connection_id) is started_by:
                del self._leaders[connection_id]
        if self._cache is not None:
            self._cache.forget(connection_id)  # bumps the generation: older reads stay out
            self._cache.put(connection)
        return connection

    async def _refresh_row(self, connection_id: str, seen: str | None, forced: bool) -> Connection:
        failure: _Failure | None = None
        refreshed = False
        async with writer(self._engine).begin() as conn:
            row = (
                (
                    await conn.execute(
                        select(connections)
                        .where(connections.c.id == connection_id)
                        .with_for_update()  # PostgreSQL row lock; SQLite holds BEGIN IMMEDIATE
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no connection {connection_id!r}")
            current = from_row(row)
            require_usable(current)
            now = self._clock()
            if current.sealed_access_token != seen:
                return current  # refreshed by another task or process since we read it
            if not forced and not needs_refresh(current.token_expires_at, now, self._margin):
                return current
            cooldown_until = row["refresh_cooldown_until"]
            if cooldown_until is not None and cooldown_until > now:
                wait = int((cooldown_until - now).total_seconds()) + 1
                raise UpstreamUnavailable(
                    "refreshing this connection's token failed recently; cooling off",
                    headers={"Retry-After": str(wait)},
                )
            # A child of the server span of the request that started the refresh;
            # the token request's client span (gateway.observability) nests in it.
            with self._tracer.start_as_current_span(
                "token.refresh", attributes={"linkgate.provider": current.provider}
            ) as span:
                outcome = await self._call_provider(current)
                span.set_attribute("linkgate.refreshed", isinstance(outcome, TokenSet))
                if not isinstance(outcome, TokenSet):
                    span.set_attribute("error.type", type(outcome.error).__name__)
                    span.set_status(trace.StatusCode.ERROR)
            if isinstance(outcome, TokenSet):
                values = {
                    **sealed_tokens(self._vault, connection_id, outcome),
                    "status": Status.ACTIVE.value,
                    "status_reason": None,
                    "last_refreshed_at": now,
                    "refresh_failures": 0,
                    "refresh_cooldown_until": None,
                    "updated_at": now,
                }
                refreshed = True
            elif outcome.action is Action.CONNECTION_NEEDS_REAUTH:
                values = {
                    "status": Status.NEEDS_REAUTH.value,
                    "status_reason": outcome.error.detail,
                    "updated_at": now,
                }
                failure = outcome
            else:
                failures = int(row["refresh_failures"] or 0) + 1
                pause = max(cooldown_for(failures, self._cooldown), outcome.retry_after or 0.0)
                values = {
                    "refresh_failures": failures,
                    "refresh_cooldown_until": now + timedelta(seconds=pause),
                    "updated_at": now,
                }
                outcome.error.headers["Retry-After"] = str(int(pause))
                failure = outcome
            # Written and read back in one round trip: between the provider's answer
            # and the commit there is only this statement and the audit outbox row,
            # so a crash in that window (tests/trust/test_refresh_crash.py) is as
            # unlikely as it can be made while the event is committed with the token.
            updated = from_row(
                (
                    await conn.execute(
                        update(connections)
                        .where(connections.c.id == connection_id)
                        .values(values)
                        .returning(*connections.c)
                    )
                )
                .mappings()
                .one()
            )
            if failure is not None and failure.action is Action.CONNECTION_NEEDS_REAUTH:
                await self._webhooks.add(conn, EventType.NEEDS_REAUTH, updated)  # same transaction
            # What happened to the connection, committed with it (same transaction).
            entry: OutboxEntry | None = None
            if refreshed:
                entry = await self._audit.add(
                    conn, _event(updated, Action.CONNECTION_REFRESHED, Outcome.ALLOWED)
                )
            elif failure is not None and failure.action is not None:
                entry = await self._audit.add(
                    conn,
                    _event(updated, failure.action, Outcome.ERROR, failure.error.type_uri),
                )
        # Committed; now into the chain (or, if the log cannot take it, left to the drain).
        if entry is not None:
            await self._audit.deliver(entry)
        if refreshed:
            self._metrics.token_refresh(updated.provider, RefreshOutcome.REFRESHED)
            log.info("token.refreshed", connection_id=connection_id)
            return updated
        assert failure is not None
        if failure.action is not None:
            self._metrics.token_refresh(updated.provider, RefreshOutcome.NEEDS_REAUTH)
            log.warning("connection.needs_reauth", connection_id=connection_id)
        else:
            self._metrics.token_refresh(updated.provider, RefreshOutcome.FAILED)
            log.warning("token.refresh_failed", connection_id=connection_id)
        raise failure.error

    async def _call_provider(self, connection: Connection) -> TokenSet | _Failure:
        configured = self._registry.require(connection.provider)
        refresh_token = (
            self._vault.open(
                connection.sealed_refresh_token, row=token_row(connection.id, "refresh_token")
            )
            if connection.sealed_refresh_token
            else None
        )
        exchange = configured.provider.oauth.refresh_by_exchange
        if exchange is not None and connection.sealed_access_token:
            # No refresh token at this provider (Instagram ig_refresh_token): the live
            # long-lived access token is what gets traded for a fresh one.
            refresh_token = self.access_token(connection)
        if refresh_token is None:
            return _Failure(
                ConnectionNeedsReauth(
                    "the provider issued no refresh token", connection_id=connection.id
                ),
                Action.CONNECTION_NEEDS_REAUTH,
            )
        try:
            if exchange is not None:
                return await exchange_token(
                    self._http, configured.provider, configured.client, refresh_token, exchange
                )
            return await refresh_tokens(
                self._http, configured.provider, configured.client, refresh_token
            )
        except OAuthError as exc:
            # The provider's ErrorTable.token rules read its own codes (AADSTS…) first.
            verdict = configured.provider.errors.classify_token(exc.status, exc.body)
            kind = verdict.kind if verdict else _generic_token_error_kind(exc.error)
            code = (verdict.code if verdict else exc.error)[:64]
            if kind is ErrorKind.REAUTH:
                # RFC 6749 §5.2: the grant is expired, revoked or was never ours; only
                # the customer can fix that, by linking the account again.
                return _Failure(
                    ConnectionNeedsReauth(
                        f"the provider refused the refresh token ({code})",
                        connection_id=connection.id,
                    ),
                    Action.CONNECTION_NEEDS_REAUTH,
                )
            retry_after = verdict.retry_after if verdict else None
            if kind is ErrorKind.PERMANENT:
                error: LinkgateError = UpstreamError(f"token refresh refused ({code})")
            elif kind is ErrorKind.USAGE_CAPPED:
                error = UpstreamRateLimited(f"token refresh hit a usage cap ({code})")
            else:
                error = UpstreamUnavailable(f"token refresh failed ({code})")
            return _Failure(error, retry_after=retry_after)
        except UpstreamError as exc:
            return _Failure(UpstreamUnavailable(f"token refresh failed: {exc.detail}"))


def _event(
    connection: Connection, action: Action, outcome: Outcome, problem_type: str | None = None
) -> EventDraft:
    return EventDraft(
        customer_id=connection.customer_id,
        action=action,
        outcome=outcome,
        problem_type=problem_type,
        connection_id=connection.id,
        provider=connection.provider,
    )
