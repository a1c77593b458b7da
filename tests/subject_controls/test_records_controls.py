"""End to end over real HTTP: consents and suppressions change what the records API releases."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from gateway.callers import CallerKind, create_caller
from gateway.errors import PROBLEM_BASE
from gateway.storage import create_engine
from gateway.storage.schema import subject_control_tables
from gateway.subject_controls.lookup import PRESENCE_TTL
from policies import email_identifier, provider_user_identifier
from policies.vocabulary import CallerClass
from tests.gateway.conftest import CUSTOMER, Stack
from tests.subject_controls.conftest import make_actor, open_stores

MARKETING = "marketing.communications"
JANE_EMAIL = "jane@customer.example"  # as in providers/sandbox/demo_data.py (JANE)
JANE_POST = "post_1002"  # public, by Jane


async def _marketing_key(stack: Stack) -> str:
    engine = create_engine(stack.settings.database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.SERVICE, name="newsletter", customers=[CUSTOMER],
            purposes=[MARKETING], caller_class=CallerClass.INTERNAL,
        )  # fmt: skip
    finally:
        await engine.dispose()
    return key


async def _posts(stack: Stack, purpose: str, key: str | None = None) -> dict[str, Any]:
    async with stack.api(key) as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()[
            "connections"
        ]
        response = await api.get(
            f"/v1/connections/{connection['id']}/records/posts",
            params={"purpose": purpose, "limit": "25"},
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_marketing_releases_only_subjects_who_consented(stack: Stack) -> None:
    """Without consent every post is dropped by `purpose`; after PUT consent Jane's comes back."""
    await stack.link()
    key = await _marketing_key(stack)
    before = await _posts(stack, MARKETING, key)
    assert before["records"] == []
    assert before["dropped"].get("purpose", 0) > 0

    async with stack.api() as api:
        put = await api.put(
            f"/v1/customers/{CUSTOMER}/consents",
            json={"subject": {"emails": [JANE_EMAIL]}, "purpose": MARKETING,
                  "evidence": "newsletter sign-up form"},
        )  # fmt: skip
    assert put.status_code == 200, put.text
    after = await _posts(stack, MARKETING, key)
    assert [record["id"] for record in after["records"]] == [JANE_POST]
    assert before["dropped"]["purpose"] - 1 == after["dropped"]["purpose"]


async def test_withdrawn_consent_stops_marketing_but_not_the_service(stack: Stack) -> None:
    """After DELETE consent Jane's post leaves marketing but still serves essential.service."""
    await stack.link()
    key = await _marketing_key(stack)
    subject = {"provider_user_ids": [{"provider": "sandbox", "id": "usr_jane"}]}
    async with stack.api() as api:
        await api.put(f"/v1/customers/{CUSTOMER}/consents",
                      json={"subject": subject, "purpose": MARKETING})  # fmt: skip
        assert [r["id"] for r in (await _posts(stack, MARKETING, key))["records"]] == [JANE_POST]
        deleted = await api.request(
            "DELETE", f"/v1/customers/{CUSTOMER}/consents", json={"subject": subject}
        )
    assert deleted.status_code == 200
    assert (await _posts(stack, MARKETING, key))["records"] == []
    service = await _posts(stack, "essential.service")
    assert JANE_POST in [record["id"] for record in service["records"]]
    assert "suppression" not in service["dropped"]


async def test_an_erased_subject_is_dropped_from_every_later_fetch(stack: Stack) -> None:
    """After an erasure Jane's post is dropped for essential.service by `suppression`."""
    await stack.link()
    before = await _posts(stack, "essential.service")
    assert JANE_POST in [record["id"] for record in before["records"]]
    assert "suppression" not in before["dropped"]

    async for stores in open_stores(
        stack.settings.database_url, stack.settings.secret_key.encode()
    ):
        await stores.suppressions.add(
            CUSTOMER, (email_identifier("Jane@Customer.Example"),), kind="erasure",
            reason="processor request pr_42", actor=make_actor(),
        )  # fmt: skip
    # Written by another process (its own stores): in force within the gateway's
    # "no suppressions here" window (gateway.subject_controls.lookup.PRESENCE_TTL).
    await asyncio.sleep(PRESENCE_TTL)

    after = await _posts(stack, "essential.service")
    assert JANE_POST not in [record["id"] for record in after["records"]]
    assert after["dropped"]["suppression"] == 1
    assert len(before["records"]) - 1 == len(after["records"])
    async with stack.api() as api:
        listed = (await api.get(f"/v1/customers/{CUSTOMER}/suppressions")).json()
    assert (listed["counts"]["erasure"], listed["total"]) == (1, 1)


async def test_an_objection_to_marketing_leaves_the_service_untouched(stack: Stack) -> None:
    """An objection to marketing drops Jane from marketing despite consent, not from service."""
    await stack.link()
    key = await _marketing_key(stack)
    async with stack.api() as api:
        await api.put(f"/v1/customers/{CUSTOMER}/consents",
                      json={"subject": {"emails": [JANE_EMAIL]}, "purpose": MARKETING})  # fmt: skip
    async for stores in open_stores(
        stack.settings.database_url, stack.settings.secret_key.encode()
    ):
        await stores.suppressions.add(
            CUSTOMER, (provider_user_identifier("sandbox", "usr_jane"),), kind="objection",
            purposes=["marketing"], reason="objection letter", actor=make_actor(),
        )  # fmt: skip
    await asyncio.sleep(PRESENCE_TTL)  # another process's write: see above
    marketing = await _posts(stack, MARKETING, key)
    assert (marketing["records"], marketing["dropped"]["suppression"]) == ([], 1)
    service = await _posts(stack, "essential.service")
    assert JANE_POST in [record["id"] for record in service["records"]]


async def test_no_records_leave_when_suppressions_cannot_be_read(stack: Stack) -> None:
    """With a suppression on record and its table unreadable: 503 subject-controls-unavailable,
    no records and no subject in the body (fail closed), for the customer's every purpose."""
    await stack.link()
    async for stores in open_stores(
        stack.settings.database_url, stack.settings.secret_key.encode()
    ):
        await stores.suppressions.add(
            CUSTOMER, (email_identifier(JANE_EMAIL),), kind="erasure",
            reason="processor request pr_43", actor=make_actor(),
        )  # fmt: skip
    await asyncio.sleep(PRESENCE_TTL)  # another process's write: see above
    dropped = await _posts(stack, "essential.service")
    assert dropped["dropped"]["suppression"] == 1

    table = subject_control_tables.suppression_subjects.name
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_gone"))
    finally:
        await engine.dispose()
    async with stack.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()[
            "connections"
        ]
        response = await api.get(
            f"/v1/connections/{connection['id']}/records/posts",
            params={"purpose": "essential.service", "limit": "25"},
        )
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == PROBLEM_BASE + "subject-controls-unavailable"
    assert "records" not in body
    assert "jane" not in response.text.lower()
    assert "hmac-sha256" not in response.text
