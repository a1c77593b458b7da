"""No secret leaks under any fault: one table of faults, every sink scanned after each.

The canaries are the connection's real access and refresh tokens, the
authorization codes the browser carried, the provider client secret and the
service key. Each fault of the trust suite is applied to a live gateway (the
provider misbehaving over raw TCP, the token endpoint refusing, the ID token
rejected, the database refusing, stalling or locked), the calls a user would
make are made, and then every place a secret could surface is searched: the
JSON log lines, the finished spans, the audit events, every response body
(problem+json and HTML pages) and the database's plaintext. The gateway killed
mid-refresh runs as separate processes; tests/trust/test_refresh_crash.py scans
their logs the same way.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select
from sqlalchemy.engine import make_url

from gateway.app import create_app
from gateway.callers import CallerKind, create_caller
from gateway.storage import audit_tables, connections, create_engine
from gateway.vault import KeyRing, token_row
from policies.vocabulary import CallerClass
from tests.conftest import Servers, make_settings, sandbox_app, sandbox_provider_settings
from tests.gateway.test_secret_hygiene import _database_plaintext
from tests.trust.chaos_upstream import MODES, ChaosUpstream
from tests.trust.stalling_proxy import StallingProxy
from tests.trust.test_database_faults import _allow_connections
from tests.trust.test_provider_faults import FAST_RETRIES
from tests.trust.test_slow_database import _audit_head_locked

CUSTOMER = "acme"
PURPOSE = "essential.service"


@dataclass
class Scene:
    """A linked gateway whose provider API and database a fault may tamper with."""

    database_url: str  # direct; the gateway itself may go through ``proxy``
    gateway_url: str
    sandbox_url: str
    service_key: str
    client_secret: str
    vault: KeyRing
    chaos: ChaosUpstream
    proxy: StallingProxy | None
    connection_id: str = ""
    connect_url: str = ""
    codes: list[str] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)

    def api(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.service_key}"}
        return httpx.AsyncClient(base_url=self.gateway_url, headers=headers, timeout=30)

    async def sandbox(self, path: str, json: dict[str, Any] | None = None) -> None:
        async with httpx.AsyncClient(base_url=self.sandbox_url) as client:
            (await client.post(path, json=json)).raise_for_status()

    async def link(self) -> httpx.Response:
        """The browser's round trip; the code it carried is kept as a canary."""
        async with self.api() as api:
            session = await api.post("/v1/connect-sessions", json={"customer_id": CUSTOMER})
        self.connect_url = session.json()["connect_url"]
        async with httpx.AsyncClient(timeout=30) as browser:
            start = await browser.get(f"{self.connect_url}/sandbox")
            answer = await browser.get(start.headers["location"])
            callback = answer.headers["location"]
            self.codes.extend(parse_qs(urlsplit(callback).query).get("code", []))
            page = await browser.get(callback)
        self.responses.append(page)
        return page

    async def calls(self) -> httpx.Response:
        """What users do during a fault: read records, list connections, open the portal."""
        async with self.api() as api:
            read = await api.get(
                f"/v1/connections/{self.connection_id}/records/posts", params={"purpose": PURPOSE}
            )
            listed = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
        async with httpx.AsyncClient(timeout=30) as browser:
            portal = await browser.get(self.connect_url)
        self.responses.extend([read, listed, portal])
        return read

    async def tokens(self) -> list[str]:
        engine = create_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(select(connections))).mappings().one()
        finally:
            await engine.dispose()
        return [
            self.vault.open(row[column], row=token_row(row["id"], column))
            for column in ("access_token", "refresh_token")
            if row[column]
        ]


Fault = Callable[[Scene], Awaitable[httpx.Response]]


def provider(mode: str) -> Fault:
    async def fault(scene: Scene) -> httpx.Response:
        scene.chaos.mode = mode
        try:
            return await scene.calls()
        finally:
            scene.chaos.mode = "ok"

    return fault


async def provider_rate_limited(scene: Scene) -> httpx.Response:
    await scene.sandbox("/_sandbox/faults", {"api": "rate_limited", "times": 10, "retry_after": 1})
    return await scene.calls()


async def refresh_refused(scene: Scene) -> httpx.Response:
    await scene.sandbox("/_sandbox/faults", {"refresh": "invalid_grant"})
    await scene.sandbox("/_sandbox/tokens/expire")
    return await scene.calls()


async def provider_unavailable(scene: Scene) -> httpx.Response:
    await scene.sandbox("/_sandbox/faults", {"api": "unavailable", "times": 10})
    return await scene.calls()


async def id_token_rejected(scene: Scene) -> httpx.Response:
    await scene.sandbox("/_sandbox/faults", {"id_token": "wrong_nonce"})
    return await scene.link()  # the callback page is the error page


async def database_refuses(scene: Scene) -> httpx.Response:
    database = str(make_url(scene.database_url).database)
    await _allow_connections(database, False)
    try:
        return await scene.calls()
    finally:
        await _allow_connections(database, True)


async def database_stalls(scene: Scene) -> httpx.Response:
    assert scene.proxy is not None
    scene.proxy.stall()
    try:
        return await scene.calls()
    finally:
        scene.proxy.resume()


async def audit_locked(scene: Scene) -> httpx.Response:
    async with _audit_head_locked(scene.database_url):
        return await scene.calls()


@dataclass(frozen=True)
class Case:
    fault: Fault
    status: int  # what the fault's first call answers: proof that the fault happened
    chaos_api: bool = False  # the provider API is the raw TCP chaos server
    postgres_only: bool = False


CASES = {
    **{
        f"provider-{mode}": Case(provider(mode), 503 if mode in {"reset", "stall", "dribble"}
                                 else 502, chaos_api=True)
        for mode in MODES
    },
    "provider-unavailable": Case(provider_unavailable, 503),
    "provider-rate-limited": Case(provider_rate_limited, 429),
    "refresh-refused": Case(refresh_refused, 409),
    "id-token-rejected": Case(id_token_rejected, 400),
    "database-refuses": Case(database_refuses, 503, postgres_only=True),
    "database-stalls": Case(database_stalls, 503, postgres_only=True),
    "audit-locked": Case(audit_locked, 503),
}  # fmt: skip


def _params() -> Iterator[Any]:
    for name, case in CASES.items():
        if not case.postgres_only:
            yield pytest.param("sqlite", case, id=f"sqlite-{name}")
        yield pytest.param("postgres", case, id=f"postgres-{name}", marks=pytest.mark.postgres)


@asynccontextmanager
async def _scene(
    database_url: str, servers: Servers, case: Case, spans: InMemorySpanExporter
) -> AsyncIterator[Scene]:
    async with AsyncExitStack() as stack:
        chaos = ChaosUpstream()
        stack.callback(chaos.stop)
        proxy = None
        gateway_database = database_url
        if not database_url.startswith("sqlite"):
            url = make_url(database_url)
            proxy = StallingProxy(url.host or "127.0.0.1", url.port or 5432)
            stack.callback(proxy.close)
            gateway_database = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False
            )
        client_secret = secrets.token_urlsafe(16)
        gateway_url, sandbox_url = servers.reserve(), servers.reserve()
        servers.serve(
            sandbox_url, sandbox_app(sandbox_url, client_secret, gateway_url, auto_approve=True)
        )
        sandbox = sandbox_provider_settings(sandbox_url, client_secret)
        if case.chaos_api:
            sandbox = replace(sandbox, endpoints={**sandbox.endpoints, "api_base_url": chaos.url})
        settings = replace(
            make_settings(gateway_database, public_url=gateway_url),
            providers={"sandbox": sandbox},
            upstream_timeout=1.0,
            upstream_max_body=1_000_000,
            db_timeout=1.0,
        )
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        servers.serve(
            gateway_url,
            create_app(settings, upstream_retry=FAST_RETRIES, tracer_provider=tracer_provider),
        )
        engine = create_engine(database_url)
        try:
            _, key = await create_caller(
                engine, kind=CallerKind.SERVICE, name="crm", customers=[CUSTOMER],
                purposes=[PURPOSE], caller_class=CallerClass.INTERNAL,
            )  # fmt: skip
        finally:
            await engine.dispose()
        scene = Scene(
            database_url=database_url,
            gateway_url=gateway_url,
            sandbox_url=sandbox_url,
            service_key=key,
            client_secret=client_secret,
            vault=KeyRing.parse(settings.vault_keys),
            chaos=chaos,
            proxy=proxy,
        )
        assert (await scene.link()).status_code == 200
        async with scene.api() as api:
            listed = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
        scene.connection_id = listed.json()["connections"][0]["id"]
        yield scene


async def _audit_text(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(audit_tables.events))).all()
    finally:
        await engine.dispose()
    assert rows, "the audit log was read"
    return repr(rows)


def _span_text(spans: InMemorySpanExporter) -> str:
    finished = spans.get_finished_spans()
    assert finished, "the gateway's spans were captured"
    return repr(
        [
            (s.name, dict(s.attributes or {}), s.status.description,
             [(e.name, dict(e.attributes or {})) for e in s.events])
            for s in finished
        ]
    )  # fmt: skip


@pytest.mark.parametrize(("database_url", "case"), list(_params()), indirect=["database_url"])
async def test_no_secret_reaches_any_sink_under_a_fault(
    database_url: str, case: Case, servers: Servers, json_logs: io.StringIO
) -> None:
    """After the fault: no canary in logs, spans, audit events, bodies, pages or the database."""
    spans = InMemorySpanExporter()
    async with _scene(database_url, servers, case, spans) as scene:
        canaries = {
            "service key": scene.service_key,
            "client secret": scene.client_secret,
        }
        for i, token in enumerate(await scene.tokens()):
            canaries[f"token {i}"] = token
        first = await case.fault(scene)
        for i, token in enumerate(await scene.tokens()):
            canaries[f"token after {i}"] = token
        for i, code in enumerate(scene.codes):
            canaries[f"authorization code {i}"] = code

        assert first.status_code == case.status, first.text
        sinks = {
            "logs": json_logs.getvalue(),
            "spans": _span_text(spans),
            "audit events": await _audit_text(database_url),
            **{f"response {i}": r.text for i, r in enumerate(scene.responses)},
        }
        plaintext = await _database_plaintext(database_url)

    assert "http.request" in sinks["logs"], "the gateway's logs were captured"
    leaks = [
        f"{canary} in {sink}"
        for canary, secret in canaries.items()
        for sink, text in sinks.items()
        if secret in text
    ]
    leaks += [
        f"{canary} in the database" for canary, s in canaries.items() if s.encode() in plaintext
    ]
    assert leaks == []
