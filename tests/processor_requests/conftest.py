"""Processor-request tests run against the live gateway + sandbox stack of tests/gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from gateway.callers import CallerKind, create_caller
from gateway.storage import create_engine
from providers.sandbox.demo_data import JANE
from tests.gateway.conftest import CUSTOMER, Stack, stack  # noqa: F401 - re-exported fixture

JANE_SUBJECT = {
    "emails": [JANE["email"]],
    "provider_user_ids": [{"provider": "sandbox", "id": JANE["id"]}],
    "handles": [{"provider": "sandbox", "handle": JANE["handle"]}],
}
TERMINAL = {"completed", "failed", "rejected"}


async def new_key(
    live: Stack, kind: CallerKind, *, customers: list[str], purposes: tuple[str, ...] = ()
) -> str:
    """A fresh service key or auditor credential."""
    engine = create_engine(live.settings.database_url)
    try:
        _, key = await create_caller(
            engine, kind=kind, name=f"{kind.value}-t", customers=customers, purposes=list(purposes)
        )
    finally:
        await engine.dispose()
    return key


async def file(live: Stack, key: str | None = None, **body: Any) -> httpx.Response:
    async with live.api(key) as api:
        return await api.post("/v1/processor-requests", json={"customer_id": CUSTOMER, **body})


async def finished(live: Stack, request_id: str, key: str | None = None) -> dict[str, Any]:
    """Poll until the background runner has finished the request."""
    async with live.api(key) as api:
        return await finished_through(api, request_id)


async def finished_through(api: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    """:func:`finished`, asked through a client already bound to a gateway and its key."""
    for _ in range(200):
        body: dict[str, Any] = (await api.get(f"/v1/processor-requests/{request_id}")).json()
        if body["status"] in TERMINAL:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"request still {body['status']}")
