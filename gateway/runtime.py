"""Everything long-lived a running gateway holds, built in the app's lifespan.

Routes reach it as ``request.state.runtime``; nothing here is a global.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import AuditStore, AuditWriter, SubjectHasher
from gateway.config import Settings
from gateway.connect.flow import ConnectFlow
from gateway.connect.jwks import JWKSCache
from gateway.connect.sessions import ConnectSessionStore
from gateway.connections import ConnectionStore
from gateway.provider_registry import ProviderRegistry, load_providers
from gateway.storage import audit_tables, create_engine, writer
from gateway.vault import KeyRing

OAUTH_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
OAUTH_LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=10)


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
    subjects: SubjectHasher  # per-customer keyed hashes of End User identifiers


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    oauth_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Runtime]:
    """Build the runtime; ``oauth_transport`` lets tests put a stand-in at the far edge."""
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    vault = KeyRing.parse(settings.vault_keys)
    audit_store = AuditStore(writer(engine), audit_tables)
    audit = AuditWriter(audit_store)
    async with (
        audit,
        httpx.AsyncClient(
            transport=oauth_transport,
            timeout=OAUTH_TIMEOUT,
            limits=OAUTH_LIMITS,
            follow_redirects=False,
        ) as oauth_http,
    ):
        try:
            registry = await load_providers(settings, oauth_http)
            sessions = ConnectSessionStore(
                engine,
                ttl_seconds=settings.connect_session_ttl,
                return_url_allowlist=settings.return_url_allowlist,
            )
            connections = ConnectionStore(engine, vault)
            connect = ConnectFlow(
                engine=engine,
                audit=audit,
                vault=vault,
                registry=registry,
                sessions=sessions,
                connections=connections,
                http=oauth_http,
                jwks=JWKSCache(oauth_http),
                redirect_uri=settings.redirect_uri,
                state_ttl=settings.state_ttl,
            )
            yield Runtime(
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
                subjects=SubjectHasher(settings.secret_key.encode()),
            )
        finally:
            await engine.dispose()
