"""The account claims kept per connection, in access reports and portability bundles.

The live stack links Ada's sandbox account; the claims are kept for that
connection the way the connect flow keeps Apple's (sealed by the gateway's own
vault keys), then requests about Ada, the account holder, and about Jane, who
is not, are filed over HTTP and run by the background runner.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from gateway.account_claims import CLAIMS_CHANGED_AT, AccountClaimsStore
from gateway.connections import Connection, Status
from gateway.processor_requests.stored_claims import claims_summary
from gateway.storage import create_engine
from gateway.vault import KeyRing
from providers.apple import PROVIDER as APPLE
from providers.sandbox.demo_data import ADA
from tests.gateway.conftest import CUSTOMER, Stack
from tests.processor_requests.conftest import JANE_SUBJECT, file, finished

ADA_SUBJECT = {"emails": [ADA.email]}
KEPT = {"sub": ADA.user_id, "email": ADA.email, "name": ADA.name}


async def _linked_with_claims(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    connection_id = str(response.json()["connections"][0]["id"])
    engine = create_engine(stack.settings.database_url)
    try:
        await AccountClaimsStore(engine, KeyRing.parse(stack.settings.vault_keys)).keep(
            connection_id, KEPT
        )
    finally:
        await engine.dispose()
    return connection_id


async def _run(stack: Stack, kind: str, subject: dict[str, Any]) -> dict[str, Any]:
    filed = await file(stack, kind=kind, subject=subject, verified_by="dpo@acme")
    assert filed.status_code == 201, filed.text
    done = await finished(stack, filed.json()["id"])
    assert done["status"] == "completed", done
    return done


async def test_access_names_the_kept_claims_of_the_account_holder_without_values(
    stack: Stack,
) -> None:
    """Ada's report lists which claims are kept for which connection; no value appears."""
    connection_id = await _linked_with_claims(stack)
    done = await _run(stack, "access", ADA_SUBJECT)
    stored = done["result"]["report"]["stored"]
    assert stored["connections_as_account_holder"] == 1
    assert stored["account_claims"] == 3
    assert stored["account_claims_by_connection"] == [
        {
            "connection_id": connection_id,
            "provider": "sandbox",
            "claims": ["email", "name", "sub"],
            "count": 3,
            "categories": [],  # the sandbox serves no resource from kept claims
            "uncategorized": ["email", "name", "sub"],
        }
    ]
    text = json.dumps(done)
    assert ADA.email not in text
    assert ADA.name not in text


async def test_access_about_someone_else_reports_no_kept_claims(stack: Stack) -> None:
    """Jane did not link the account: the claims kept for it are not about her."""
    await _linked_with_claims(stack)
    stored = (await _run(stack, "access", JANE_SUBJECT))["result"]["report"]["stored"]
    assert stored["account_claims"] == 0
    assert stored["account_claims_by_connection"] == []


async def test_portability_hands_over_the_kept_claims_with_the_manifest(stack: Stack) -> None:
    """Ada's bundle has account_claims.json with the values; the manifest names it and its sum."""
    connection_id = await _linked_with_claims(stack)
    done = await _run(stack, "portability", ADA_SUBJECT)
    async with stack.api() as api:
        result = (await api.get(f"/v1/processor-requests/{done['id']}/result")).json()
    links = {f["name"]: f["url"] for f in result["files"]}
    async with httpx.AsyncClient(base_url=stack.gateway.url) as anonymous:
        claims_file = await anonymous.get(links["account_claims.json"])
    assert claims_file.status_code == 200
    body = json.loads(claims_file.content)
    assert body["account_claims"] == [
        {"connection_id": connection_id, "provider": "sandbox", "claims": KEPT}
    ]
    manifest = result["result"]["manifest"]
    assert manifest["account_claims"] == [
        {"connection_id": connection_id, "provider": "sandbox", "claims": ["email", "name", "sub"]}
    ]
    sums = {f["name"]: f["sha256"] for f in manifest["files"]}
    assert sums["account_claims.json"] == hashlib.sha256(claims_file.content).hexdigest()


async def test_portability_about_someone_else_has_no_claims_file(stack: Stack) -> None:
    """Jane's bundle carries no claims of the account Ada linked."""
    await _linked_with_claims(stack)
    done = await _run(stack, "portability", JANE_SUBJECT)
    names = [f["name"] for f in done["result"]["manifest"]["files"]]
    assert "account_claims.json" not in names
    assert done["result"]["manifest"]["account_claims"] == []


def test_apple_claims_are_reported_with_the_categories_of_its_profile() -> None:
    """Categories come from the provider's kept-claims resource (Apple's profile)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    connection = Connection(
        id="con_1", customer_id="acme", provider="apple", issuer="https://appleid.apple.com",
        subject="001234.abc.0638", account_name="Ada", scopes=("name", "email"),
        status=Status.ACTIVE, status_reason=None, token_expires_at=None, created_at=now,
        updated_at=now, last_refreshed_at=None, linked_at=now,
    )  # fmt: skip
    claims = {
        "sub": "001234.abc.0638",
        "email": "x7k2mq9z@privaterelay.appleid.com",
        "is_private_email": "true",
        "name": "Ada",
        "nonce_supported": True,
    }
    summary = claims_summary(connection, APPLE, claims, now)
    assert summary["categories"] == ["user.contact.email", "user.name", "user.unique_id"]
    assert summary["uncategorized"] == ["nonce_supported"]
    assert summary["count"] == 5
    assert "privaterelay" not in json.dumps(summary)


def test_the_gateways_note_of_the_last_claims_change_is_categorized_as_an_operation() -> None:
    """``claims_changed_at`` (Apple email events) is the gateway's own note, not a claim."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    connection = Connection(
        id="con_1", customer_id="acme", provider="apple", issuer="https://appleid.apple.com",
        subject="001234.abc.0638", account_name="Ada", scopes=("email",),
        status=Status.ACTIVE, status_reason=None, token_expires_at=None, created_at=now,
        updated_at=now, last_refreshed_at=None, linked_at=now,
    )  # fmt: skip
    claims = {"sub": "001234.abc.0638", CLAIMS_CHANGED_AT: 1_767_225_600}
    summary = claims_summary(connection, APPLE, claims, now)
    assert summary["categories"] == ["system.operations", "user.unique_id"]
    assert summary["uncategorized"] == []
