"""Meta's Deauthorize and Data Deletion callbacks for a linked Instagram professional account.

Business Login for Instagram takes the same callbacks as Facebook Login, signed with
the Instagram app secret (providers.meta). Which id the signed_request's ``user_id``
holds for Instagram is not documented (providers/instagram.py): the connection is keyed
by /me ``user_id`` and keeps /me ``id`` as its alias, and a callback naming either acts
on it. These tests pin both readings.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from gateway.storage import connections, create_engine
from tests.processor_requests.conftest import finished_through
from tests.providers.conftest import CUSTOMER
from tests.providers.facebook.test_facebook_notifications import signed_request
from tests.providers.instagram.test_instagram import ACCOUNT, _linked
from tests.providers.stand import fixture

APP_SCOPED_ID = str(fixture("instagram", "me")["id"])  # /me ``id``, not the key


async def _post(gw: Any, path: str, value: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=15) as meta:
        return await meta.post(f"/providers/instagram/{path}", data={"signed_request": value})


async def _statuses(gw: Any) -> list[str]:
    engine = create_engine(gw.database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(connections.c.status))).scalars())
    finally:
        await engine.dispose()


async def test_a_deauthorize_naming_the_account_user_id_ends_the_grant(
    provider_gateway: Any,
) -> None:
    """signed_request user_id = /me user_id (the connection's account): revoked."""
    gw, _ = await _linked(provider_gateway)

    answer = await _post(gw, "notifications", signed_request(user_id=ACCOUNT))

    assert answer.status_code == 200, answer.text
    assert await _statuses(gw) == ["revoked"]


async def test_a_deletion_request_naming_the_account_user_id_erases_the_connection(
    provider_gateway: Any,
) -> None:
    """The same id on the data-deletion callback: the connection is gone, Meta answered."""
    gw, _ = await _linked(provider_gateway)

    answer = await _post(gw, "data-deletion", signed_request(user_id=ACCOUNT))

    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"url", "confirmation_code"}
    assert await _statuses(gw) == []


async def test_a_deauthorize_naming_the_app_scoped_id_ends_the_grant_too(
    provider_gateway: Any,
) -> None:
    """Were Meta to send /me ``id`` (its deletion page speaks of "an app-scoped ID"),
    the alias kept at linking finds the connection: revoked, as by ``user_id``."""
    gw, _ = await _linked(provider_gateway)

    answer = await _post(gw, "notifications", signed_request(user_id=APP_SCOPED_ID))

    assert answer.status_code == 200, answer.text
    assert await _statuses(gw) == ["revoked"]


async def test_a_deletion_request_naming_the_app_scoped_id_erases_the_connection(
    provider_gateway: Any,
) -> None:
    gw, _ = await _linked(provider_gateway)

    answer = await _post(gw, "data-deletion", signed_request(user_id=APP_SCOPED_ID))

    assert answer.status_code == 200, answer.text
    assert await _statuses(gw) == []


async def test_an_id_of_no_linked_account_changes_nothing(provider_gateway: Any) -> None:
    """Neither id of the linked account: 200 (Meta is told nothing about who is linked),
    the grant untouched."""
    gw, _ = await _linked(provider_gateway)

    answer = await _post(gw, "notifications", signed_request(user_id="17841400000000000"))

    assert answer.status_code == 200, answer.text
    assert await _statuses(gw) == ["active"]


async def test_an_erasure_naming_the_app_scoped_id_deletes_the_account_holders_connection(
    provider_gateway: Any,
) -> None:
    """A processor request about the account holder may name either id, as Meta may:
    erasure by the app-scoped id revokes and deletes the connection it linked."""
    gw, _ = await _linked(provider_gateway)
    subject = {"provider_user_ids": [{"provider": "instagram", "id": APP_SCOPED_ID}]}

    async with gw.api() as api:
        filed = await api.post(
            "/v1/processor-requests",
            json={
                "customer_id": CUSTOMER,
                "kind": "erasure",
                "subject": subject,
                "verified_by": "dpo@acme",
            },
        )
        assert filed.status_code == 201, filed.text
        done = await finished_through(api, filed.json()["id"])

    assert done["status"] == "completed", done
    assert await _statuses(gw) == []
