"""Everything long-lived a running gateway holds, built in the app's lifespan.

Routes reach it as ``request.state.runtime``; nothing here is a global.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass, field

import httpx
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from gateway.audit import AuditOutbox, AuditStore, AuditWriter, SubjectHasher
from gateway.audit_jobs import checkpoint_keys, load_signer
from gateway.callers import CallerCache
from gateway.config import Settings
from gateway.connect.flow import ConnectFlow
from gateway.connect.jwks import JWKSCache
from gateway.connect.sessions import ConnectSessionStore
from gateway.connections import ConnectionCache, ConnectionStore
from gateway.cursor import CursorKey
from gateway.observability import GatewayMetrics, TracedTransport, TraceSummaryRecorder
from gateway.provider_registry import ProviderRegistry, load_providers
from gateway.records import RecordsService
from gateway.refresh import TokenRefresher
from gateway.single_flight import LoadsInFlight
from gateway.storage import audit_tables, create_engine, writer
from gateway.storage.schema import subject_control_tables, webhook_tables
from gateway.storage.wal import WalCheckpointer, sqlite_file
from gateway.subject_controls import ConsentStore, SubjectControls, SuppressionStore
from gateway.subject_controls.lookup import ControlsPresence
from gateway.upstream import RetryPolicy, UpstreamClients, open_upstream_clients
from gateway.vault import KeyRing
from gateway.webhooks import DeliveryPolicy, open_webhooks
from policies import PolicyEngine, load_policy

OAUTH_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
OAUTH_LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=10)
# How long shutdown waits for refreshes and cache loads still in flight. Longer
# than a token request may take (OAUTH_TIMEOUT: 5 s to connect, 10 s to read),
# so a refresh stuck on a slow provider fails on its own timeout (its cooldown
# stored) before it would be cancelled.
SETTLE_GRACE = 20.0


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    vault: KeyRing
    oauth_http: httpx.AsyncClient  # token, JWKS, discovery, revocation: low volume
    providers: ProviderRegistry
    sessions: ConnectSessionStore
    connections: ConnectionStore
    connect: ConnectFlow
    audit_store: AuditStore
    audit: AuditWriter  # group commit: record() returns once the event is durable
    # Events committed with their change (refresh, link, disconnect, withdrawal, suppression):
    # delivered like any other, drained at startup and periodically if left behind.
    audit_outbox: AuditOutbox
    subjects: SubjectHasher  # per-customer keyed hashes of End User identifiers
    upstream: UpstreamClients  # one pooled API client per provider
    refresher: TokenRefresher  # single-flight token refresh
    policy: PolicyEngine
    records: RecordsService  # fetch → normalize → decide → audit → respond
    consents: ConsentStore  # End Users' marketing consents, per customer
    suppressions: SuppressionStore  # erasure, restriction, objection, consent withdrawal
    # Service keys seen in the last few seconds: no database read per request.
    callers: CallerCache = field(default_factory=CallerCache)
    # Refreshes and cache loads that may outlive the request that started them.
    loads: LoadsInFlight = field(default_factory=LoadsInFlight)


def _watched_pool(
    metrics: GatewayMetrics, engine: AsyncEngine, settings: Settings
) -> AbstractContextManager[None]:
    """Report the engine's pool (``db.client.connection.count``) if it is a queue pool."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):  # an in-memory SQLite database: one static connection
        return nullcontext()
    # gateway.storage.create_engine: as much overflow again as the pool's size.
    return metrics.watch_pool(
        pool, name=engine.dialect.name, maximum=pool.size() + settings.db_pool_size
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    oauth_transport: httpx.AsyncBaseTransport | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    upstream_retry: RetryPolicy | None = None,
    trace_summaries: TraceSummaryRecorder | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    metrics: GatewayMetrics | None = None,
    settle_grace: float = SETTLE_GRACE,
) -> AsyncIterator[Runtime]:
    """Build the runtime; the transports let tests put a stand-in at the far edge.

    On the way out, in this order: the refreshes and cache loads still in
    flight settle (their callers may have gone, their writes and audit events
    have not), the webhook dispatcher, upstream clients and the audit outbox's
    drain stop, the OAuth client closes, the audit writer drains, the engine
    is disposed.
    """
    # Outbound calls get client spans (token refresh, upstream attempts, OAuth).
    tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer("gateway")
    metrics = metrics or GatewayMetrics.disabled()
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        timeout=settings.db_timeout,
        # On SQLite the WAL is checkpointed by a thread of its own (below), not
        # by whichever commit takes it past 1000 pages (gateway.storage.wal).
        checkpoint_on_commit=False,
    )
    database_file = sqlite_file(engine)
    try:
        vault = KeyRing.parse(settings.vault_keys)
        audit_store = AuditStore(
            writer(engine),
            audit_tables,
            read_engine=engine,
            keys=checkpoint_keys(settings, load_signer(settings)),
        )
        audit = AuditWriter(audit_store, observer=metrics)
        audit_outbox = AuditOutbox(engine, audit_tables, audit_store, audit)
        loads = LoadsInFlight()
        async with (
            # Exits last: the audit writer drains while checkpoints still run.
            WalCheckpointer(database_file) if database_file else nullcontext(),
            audit,
            httpx.AsyncClient(
                # Limits go to the transport: httpx ignores the client's once one is given.
                transport=TracedTransport(
                    oauth_transport or httpx.AsyncHTTPTransport(limits=OAUTH_LIMITS),
                    tracer,
                    metrics,
                ),
                timeout=OAUTH_TIMEOUT,
                limits=OAUTH_LIMITS,
                follow_redirects=False,
            ) as oauth_http,
            AsyncExitStack() as stack,
        ):
            # Before anything is served: what a crashed process left in the outbox.
            await stack.enter_async_context(
                audit_outbox.draining(
                    interval=settings.audit_outbox_drain_interval,
                    grace=settings.audit_outbox_drain_grace,
                )
            )
            registry = await load_providers(settings, oauth_http)
            sessions = ConnectSessionStore(
                engine,
                ttl_seconds=settings.connect_session_ttl,
                return_url_allowlist=settings.return_url_allowlist,
            )
            webhooks = await stack.enter_async_context(
                open_webhooks(
                    writer(engine),
                    webhook_tables,
                    url=settings.webhook_url,
                    secret=settings.webhook_secret,
                    policy=DeliveryPolicy(
                        max_attempts=settings.webhook_max_attempts,
                        backoff=settings.webhook_backoff,
                    ),
                )
            )
            connections = ConnectionStore(
                engine, vault, webhooks, cache=ConnectionCache(loads=loads), audit=audit_outbox
            )
            upstream = await stack.enter_async_context(
                open_upstream_clients(
                    registry,
                    request_timeout=settings.upstream_timeout,
                    max_connections=settings.upstream_max_connections,
                    max_body=settings.upstream_max_body,
                    transport=upstream_transport,
                    policy=upstream_retry,
                    errors={name: p.provider.errors for name, p in registry.items()},
                    headers={name: p.provider.api_headers for name, p in registry.items()},
                    tracer=tracer,
                    metrics=metrics,
                )
            )
            subjects = SubjectHasher(settings.secret_key.encode())
            refresher = TokenRefresher(
                engine=engine,
                vault=vault,
                registry=registry,
                http=oauth_http,
                audit=audit_outbox,
                margin=settings.refresh_margin,
                webhooks=webhooks,
                cache=connections.cache,  # a refresh or status change shows at once here
                tracer=tracer,
                loads=loads,
                metrics=metrics,
            )
            policy = PolicyEngine(load_policy())
            # Which customers have any consent or suppression: shared by the stores
            # that write them and the records path that skips the lookup without.
            presence = ControlsPresence(loads=loads)
            consents = ConsentStore(
                engine,
                subject_control_tables,
                hasher=subjects,
                audit=audit,
                outbox=audit_outbox,
                policy=policy.policy,
                presence=presence,
            )
            suppressions = SuppressionStore(
                engine,
                subject_control_tables,
                hasher=subjects,
                audit=audit_outbox,
                taxonomy=policy.policy.taxonomy,
                presence=presence,
            )
            records = RecordsService(
                connections=connections,
                providers=registry,
                upstream=upstream,
                refresher=refresher,
                policy=policy,
                audit=audit,
                subjects=subjects,
                cursors=CursorKey(settings.secret_key.encode()),
                controls=SubjectControls(
                    engine, subject_control_tables, hasher=subjects, presence=presence
                ),
                trace_summary=trace_summaries.audit_summary if trace_summaries else None,
                metrics=metrics,
            )
            connect = ConnectFlow(
                engine=engine,
                vault=vault,
                registry=registry,
                sessions=sessions,
                connections=connections,
                http=oauth_http,
                jwks=JWKSCache(oauth_http),
                redirect_uri=settings.redirect_uri,
                state_ttl=settings.state_ttl,
            )
            runtime = Runtime(
                settings=settings,
                engine=engine,
                vault=vault,
                oauth_http=oauth_http,
                providers=registry,
                sessions=sessions,
                connections=connections,
                connect=connect,
                audit_store=audit_store,
                audit=audit,
                audit_outbox=audit_outbox,
                subjects=subjects,
                upstream=upstream,
                refresher=refresher,
                policy=policy,
                records=records,
                consents=consents,
                suppressions=suppressions,
                callers=CallerCache(loads=loads),
                loads=loads,
            )
            # Read by the metrics export thread from here on (in memory, no query).
            stack.enter_context(metrics.watch_audit_writer(audit))
            stack.enter_context(_watched_pool(metrics, engine, settings))
            try:
                yield runtime
            finally:
                # First: a refresh still running uses the OAuth client, its row
                # lock, the webhook outbox and the audit writer, all closed below.
                await loads.settle(settle_grace)
    finally:
        # Last, after the audit writer has drained and the webhook dispatcher
        # stopped: a connection they hold while the pool is disposed, or open
        # from the pool dispose() puts in its place, is checked in to a pool
        # nobody disposes, and is never closed (aiosqlite then warns "was
        # deleted before being closed" when the collector finds it).
        await engine.dispose()
