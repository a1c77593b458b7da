"""A misbehaving provider over real TCP: the caller gets a clear problem, nothing leaks.

The OAuth side is the real sandbox; the API base URL points at a small raw
asyncio server that misbehaves in each way a provider can: resets, stalls,
dribbles, floods, sends bytes that are not UTF-8, HTML, or a 200 whose body is
an error. For each, the caller gets a problem+json, no records, the access is
audited as an error, and the connection and its tokens are untouched.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import select

from gateway.app import create_app
from gateway.callers import CallerKind, create_caller
from gateway.storage import audit_tables, connections, create_engine
from gateway.upstream import RetryPolicy
from tests.conftest import Servers, make_settings, sandbox_app, sandbox_provider_settings
from tests.trust.chaos_upstream import ChaosUpstream

FAST_RETRIES = RetryPolicy(attempts=2, deadline=3.0, initial_backoff=0.05, max_backoff=0.1)


@pytest.fixture
def chaos() -> Iterator[ChaosUpstream]:
    upstream = ChaosUpstream()
    yield upstream
    upstream.stop()


@pytest.mark.parametrize(
    ("mode", "status", "problem"),
    [
        ("reset", 503, "upstream-unavailable"),
        ("stall", 503, "upstream-unavailable"),
        ("dribble", 503, "upstream-unavailable"),
        ("huge", 502, "upstream-malformed"),
        ("not_utf8", 502, "upstream-malformed"),
        ("html", 502, "upstream-malformed"),
        ("error_200", 502, "upstream-malformed"),
    ],
)
async def test_a_misbehaving_provider_gets_a_clear_problem_and_nothing_leaks(
    database_url: str, servers: Servers, chaos: ChaosUpstream, mode: str, status: int, problem: str
) -> None:
    """Each fault: problem+json, no records, an audited error, the connection untouched."""
    secret = secrets.token_urlsafe(16)
    gateway_url, sandbox_url = servers.reserve(), servers.reserve()
    servers.serve(sandbox_url, sandbox_app(sandbox_url, secret, gateway_url, auto_approve=True))
    provider = sandbox_provider_settings(sandbox_url, secret)
    provider = replace(provider, endpoints={**provider.endpoints, "api_base_url": chaos.url})
    settings = replace(
        make_settings(database_url, public_url=gateway_url),
        providers={"sandbox": provider},
        upstream_timeout=1.0,
        upstream_max_body=1_000_000,
    )
    servers.serve(gateway_url, create_app(settings, upstream_retry=FAST_RETRIES))
    engine = create_engine(database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.SERVICE, name="crm", customers=["acme"],
            purposes=["essential.service"],
        )  # fmt: skip
        async with httpx.AsyncClient(
            base_url=gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as api:
            session = (await api.post("/v1/connect-sessions", json={"customer_id": "acme"})).json()
            async with httpx.AsyncClient() as browser:
                start = await browser.get(session["connect_url"] + "/sandbox")
                answer = await browser.get(start.headers["location"])
                assert (await browser.get(answer.headers["location"])).status_code == 200
            async with engine.connect() as conn:
                before = (await conn.execute(select(connections))).mappings().one()

            chaos.mode = mode
            response = await api.get(
                f"/v1/connections/{before['id']}/records/posts",
                params={"purpose": "essential.service"},
            )
        async with engine.connect() as conn:
            after = (await conn.execute(select(connections))).mappings().one()
            outcomes = (
                (
                    await conn.execute(
                        select(audit_tables.events.c.outcome).where(
                            audit_tables.events.c.action == "records.read"
                        )
                    )
                )
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/" + problem)
    assert "records" not in body
    assert list(outcomes) == ["error"]
    assert after["status"] == "active"
    assert after["access_token"] == before["access_token"]
    assert after["refresh_token"] == before["refresh_token"]
