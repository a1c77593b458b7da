"""Two gateways (own engines, pools, event loops and refreshers) on one database."""

from __future__ import annotations

import asyncio

import httpx
from opentelemetry.sdk.trace import TracerProvider

from gateway.app import create_app
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, Stack


async def test_two_gateways_refresh_an_expired_token_exactly_once(
    stack: Stack, servers: Servers
) -> None:
    """Concurrent reads through both gateways: one token request, every read served."""
    await stack.link()
    second_url = servers.reserve()
    second = servers.serve(second_url, create_app(stack.settings, tracer_provider=TracerProvider()))
    async with stack.api() as api:
        listed = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    [connection] = listed.json()["connections"]
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
    headers = {"Authorization": f"Bearer {stack.service_key}"}
    path = f"/v1/connections/{connection['id']}/records/profile"
    async with (
        httpx.AsyncClient(base_url=stack.gateway.url, headers=headers, timeout=60) as one,
        httpx.AsyncClient(base_url=second.url, headers=headers, timeout=60) as two,
    ):
        responses = await asyncio.gather(
            *(
                client.get(path, params={"purpose": "essential.service"})
                for _ in range(40)
                for client in (one, two)
            )
        )
    assert [response.status_code for response in responses] == [200] * 80
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        stats = (await sandbox.get("/_sandbox/stats")).json()
    assert stats["token_requests"]["refresh_token"] == 1
