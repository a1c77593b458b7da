"""Erasure and access, end to end on the sandbox: live gateway, live provider, real databases."""

from __future__ import annotations

from typing import Any

from gateway.callers import CallerKind
from providers.sandbox.demo_data import ADA, JANE
from tests.gateway.conftest import CUSTOMER, Stack
from tests.processor_requests.conftest import JANE_SUBJECT, file, finished, new_key

PURPOSE = "essential.service"


async def _connection(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    [connection] = response.json()["connections"]
    return str(connection["id"])


async def _conversations(stack: Stack, connection_id: str) -> dict[str, Any]:
    async with stack.api() as api:
        response = await api.get(
            f"/v1/connections/{connection_id}/records/conversations", params={"purpose": PURPOSE}
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _about_jane(page: dict[str, Any]) -> list[str]:
    return [
        record["id"]
        for record in page["records"]
        for subject in record["subjects"]
        for identifier in subject["identifiers"]
        if identifier == {"kind": "provider_user_id", "value": f"sandbox:{JANE['id']}"}
    ]


async def test_erasure_suppresses_later_fetches_and_access_lists_earlier_disclosures(
    stack: Stack,
) -> None:
    """Jane's records are served; after her erasure they are dropped; access still reports."""
    connection_id = await _connection(stack)
    before = await _conversations(stack, connection_id)
    assert _about_jane(before) != []

    filed = await file(
        stack, kind="erasure", subject=JANE_SUBJECT, verified_by="privacy@acme.example"
    )
    assert filed.status_code == 201, filed.text
    erased = await finished(stack, filed.json()["id"])
    assert erased["status"] == "completed"

    after = await _conversations(stack, connection_id)
    assert _about_jane(after) == []
    assert after["dropped"].get("suppression", 0) >= 1

    access = await file(stack, kind="access", subject=JANE_SUBJECT, verified_by="privacy@acme")
    report = (await finished(stack, access.json()["id"]))["result"]["report"]
    assert report["disclosures"]["events"] >= 1
    assert "internal" in report["disclosures"]["recipients"]
    assert report["sources"][0]["connection_id"] == connection_id
    assert report["stored"]["suppressions"] == 1

    auditor = await new_key(stack, CallerKind.AUDITOR, customers=[CUSTOMER])
    async with stack.api(auditor) as api:
        verified = await api.get("/v1/audit/verify", params={"customer_id": CUSTOMER})
    assert verified.json()["ok"] is True


async def test_consent_withdrawal_by_the_account_holder_suppresses_the_connection(
    stack: Stack,
) -> None:
    """Ada linked the account; her consent withdrawal revokes it and sets it suppressed."""
    connection_id = await _connection(stack)
    filed = await file(
        stack,
        kind="consent_withdrawal",
        subject={"emails": [ADA.email]},
        verified_by="privacy@acme.example",
    )
    assert (await finished(stack, filed.json()["id"]))["status"] == "completed"
    async with stack.api() as api:
        connection = (await api.get(f"/v1/connections/{connection_id}")).json()
        refused = await api.get(
            f"/v1/connections/{connection_id}/records/posts", params={"purpose": PURPOSE}
        )
    assert connection["status"] == "suppressed"
    assert refused.status_code == 409
