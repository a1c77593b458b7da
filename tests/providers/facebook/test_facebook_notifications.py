"""Meta's Deauthorize and Data Deletion Request callbacks for a linked Facebook account.

Meta POSTs a form field ``signed_request`` = ``<sig>.<payload>`` (base64url, no
padding; sig = HMAC-SHA256 of the encoded payload with the app secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, text, update

from gateway.audit import AuditOutbox, AuditStore, AuditWriter
from gateway.storage import (
    audit_tables,
    connections,
    create_engine,
    provider_tokens,
    writer,
)
from tests.providers.conftest import CLIENT_SECRET, ProviderGateway

BASE = "https://graph.fb.test/v26.0"
ENDPOINTS = {
    "authorize_url": "https://www.fb.test/v26.0/dialog/oauth",
    "token_url": f"{BASE}/oauth/access_token",
    "revoke_url": f"{BASE}/me/permissions",
    "userinfo_url": f"{BASE}/me?fields=id,name",
    "api_base_url": BASE,
}
USER_ID = "10158"
WINDOW = 72 * 3600  # providers/meta.py NOTIFICATIONS.max_age
ACCOUNTS = {"data": [{"access_token": "fb-page-token", "name": "Acme", "id": "1029384756"}]}


async def _linked(provider_gateway: Any) -> tuple[ProviderGateway, str]:
    gw: ProviderGateway = await provider_gateway("facebook", ENDPOINTS)
    gw.router.post(f"{BASE}/oauth/access_token").respond(
        200, json={"access_token": "fb-short", "token_type": "bearer", "expires_in": 5400}
    )
    gw.router.get(f"{BASE}/oauth/access_token").respond(
        200, json={"access_token": "fb-long", "token_type": "bearer", "expires_in": 5183944}
    )
    gw.router.get(f"{BASE}/me").respond(200, json={"id": USER_ID, "name": "Ada Owner"})
    gw.router.get(f"{BASE}/me/accounts").respond(200, json=ACCOUNTS)
    connection = await gw.link()
    return gw, connection["id"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed_request(secret: str = CLIENT_SECRET, *, age: int = 0, user_id: str = USER_ID) -> str:
    """As Meta builds it: the payload encoded first, the HMAC over the encoded payload."""
    payload = _b64(
        json.dumps(
            {
                "algorithm": "HMAC-SHA256",
                "issued_at": int(time.time()) - age,
                "user_id": user_id,
                "user": {"country": "de", "locale": "de_DE"},
            }
        ).encode()
    )
    signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{_b64(signature)}.{payload}"


async def _post(gw: ProviderGateway, path: str, value: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=15) as meta:
        return await meta.post(f"/providers/facebook/{path}", data={"signed_request": value})


async def _rows(gw: ProviderGateway, table: Any) -> list[Any]:
    engine = create_engine(gw.database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(table))).mappings().all())
    finally:
        await engine.dispose()


async def _linked_hours_ago(gw: ProviderGateway, hours: int) -> None:
    """As if the account had been linked ``hours`` ago (the fixture links it just now)."""
    engine = create_engine(gw.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(connections).values(linked_at=datetime.now(UTC) - timedelta(hours=hours))
            )
    finally:
        await engine.dispose()


async def _status(gw: ProviderGateway) -> str:
    async with gw.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": "acme"})).json()[
            "connections"
        ]
    return str(connection["status"])


async def test_deauthorize_ends_the_grant(provider_gateway: Any) -> None:
    """A correctly signed deauthorize: revoked, user and Page tokens gone, no call to Meta."""
    gw, _ = await _linked(provider_gateway)
    revoke = gw.router.delete(f"{BASE}/me/permissions").respond(200, json={"success": True})
    assert len(await _rows(gw, provider_tokens)) == 1

    answer = await _post(gw, "notifications", signed_request())

    assert answer.status_code == 200, answer.text
    assert await _status(gw) == "revoked"
    [row] = await _rows(gw, connections)
    assert row["access_token"] is None
    assert await _rows(gw, provider_tokens) == []
    assert not revoke.called  # the grant is already gone at Meta


async def test_data_deletion_answers_meta_and_the_status_page_works(provider_gateway: Any) -> None:
    """Data deletion: the connection is erased; JSON {url, confirmation_code}; the page
    at url names the code and what was deleted, and nothing about the person."""
    gw, connection_id = await _linked(provider_gateway)

    answer = await _post(gw, "data-deletion", signed_request())

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"url", "confirmation_code"}
    assert body["confirmation_code"].isalnum()
    assert body["url"].startswith(f"{gw.url}/providers/facebook/data-deletion/")
    assert await _rows(gw, connections) == []
    assert await _rows(gw, provider_tokens) == []
    async with httpx.AsyncClient(timeout=15) as person:
        page = await person.get(body["url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert body["confirmation_code"] in page.text
    assert "1 linked account connection(s) were deleted" in page.text
    for personal in (USER_ID, "Ada Owner", "acme", connection_id):
        assert personal not in page.text


async def test_a_tampered_status_url_is_not_found(provider_gateway: Any) -> None:
    """The status in the URL is signed: changing a character gives 404 problem+json."""
    gw, _ = await _linked(provider_gateway)
    url = (await _post(gw, "data-deletion", signed_request())).json()["url"]
    tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")

    async with httpx.AsyncClient(timeout=15) as person:
        page = await person.get(tampered)

    assert page.status_code == 404
    assert page.headers["content-type"].startswith("application/problem+json")


async def test_a_replayed_deletion_request_changes_nothing_more(provider_gateway: Any) -> None:
    """The same signed_request again: 200 with a new code, and its page says nothing was held."""
    gw, _ = await _linked(provider_gateway)
    value = signed_request()

    first, again = await _post(gw, "data-deletion", value), await _post(gw, "data-deletion", value)

    assert (first.status_code, again.status_code) == (200, 200)
    async with httpx.AsyncClient(timeout=15) as person:
        page = await person.get(again.json()["url"])
    assert "Nothing was held for this account" in page.text


async def test_a_wrong_signature_is_refused_and_changes_nothing(provider_gateway: Any) -> None:
    """Signed with another secret: 401 problem+json on both callbacks, still active."""
    gw, _ = await _linked(provider_gateway)
    forged = signed_request("not-the-app-secret")

    answers = [await _post(gw, "notifications", forged), await _post(gw, "data-deletion", forged)]

    assert [a.status_code for a in answers] == [401, 401]
    assert all(a.json()["type"].endswith("/provider-notification-refused") for a in answers)
    assert await _status(gw) == "active"
    assert len(await _rows(gw, provider_tokens)) == 1


async def test_a_late_deauthorize_still_ends_the_grant(provider_gateway: Any) -> None:
    """issued_at two hours ago (delivered after our outage): the grant ends all the same."""
    gw, _ = await _linked(provider_gateway)
    await _linked_hours_ago(gw, 3)

    answer = await _post(gw, "notifications", signed_request(age=7200))

    assert answer.status_code == 200, answer.text
    assert await _status(gw) == "revoked"
    assert await _rows(gw, provider_tokens) == []


async def test_a_deauthorize_from_before_the_account_was_linked_again_is_ignored(
    provider_gateway: Any,
) -> None:
    """Deauthorized two hours ago, linked again just now: the new grant stays."""
    gw, _ = await _linked(provider_gateway)

    answer = await _post(gw, "notifications", signed_request(age=7200))

    assert answer.status_code == 200, answer.text
    assert await _status(gw) == "active"
    assert len(await _rows(gw, provider_tokens)) == 1


async def test_an_old_signed_request_is_refused(provider_gateway: Any) -> None:
    """issued_at an hour past the 72-hour window: refused as too old, still active."""
    gw, _ = await _linked(provider_gateway)

    answer = await _post(gw, "notifications", signed_request(age=WINDOW + 3600))

    assert answer.status_code == 401
    assert answer.json()["type"].endswith("/provider-notification-refused")
    assert await _status(gw) == "active"
    assert len(await _rows(gw, provider_tokens)) == 1


async def test_malformed_signed_requests_are_refused_never_a_500(provider_gateway: Any) -> None:
    """No field, no dot, bad base64, a payload that is not JSON: 400 or 401, never 5xx."""
    gw, _ = await _linked(provider_gateway)
    garbage_payload = _b64(b"not json")
    garbage_sig = _b64(
        hmac.new(CLIENT_SECRET.encode(), garbage_payload.encode(), hashlib.sha256).digest()
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=15) as meta:
        answers = [
            await meta.post("/providers/facebook/notifications", data={}),
            await meta.post("/providers/facebook/notifications", data={"signed_request": "x"}),
            await meta.post("/providers/facebook/notifications", data={"signed_request": "!.!"}),
            await _post(gw, "notifications", f"{garbage_sig}.{garbage_payload}"),
        ]

    assert [a.status_code for a in answers] == [400, 401, 401, 401]
    assert await _status(gw) == "active"


async def _audit_log_writable(gw: ProviderGateway, writable: bool) -> None:
    """Take the audit table away (every append fails, as with the database down) or back."""
    there, away = "audit_events", "audit_events_gone"
    old, new = (away, there) if writable else (there, away)
    engine = create_engine(gw.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
    finally:
        await engine.dispose()


async def _actions(gw: ProviderGateway) -> list[str]:
    return [row["action"] for row in await _rows(gw, audit_tables.events)]


async def _drain_audit_outbox(gw: ProviderGateway) -> None:
    """What the gateway's periodic drain does, now rather than on its timer."""
    engine = create_engine(gw.database_url)
    try:
        store = AuditStore(writer(engine), audit_tables, read_engine=engine)
        await AuditOutbox(engine, audit_tables, store, AuditWriter(store)).drain()
    finally:
        await engine.dispose()


async def test_a_deauthorize_the_audit_log_cannot_record_still_ends_the_grant(
    provider_gateway: Any,
) -> None:
    """Audit log down: Meta documents no redelivery, so the grant ends at once (200) and
    its event waits in the audit outbox; the drain records it, once, when the log is back."""
    gw, _ = await _linked(provider_gateway)
    await _audit_log_writable(gw, False)

    answer = await _post(gw, "notifications", signed_request())

    assert answer.status_code == 200, answer.text
    assert await _status(gw) == "revoked"
    assert await _rows(gw, provider_tokens) == []
    assert len(await _rows(gw, audit_tables.outbox)) == 1

    await _audit_log_writable(gw, True)
    await _drain_audit_outbox(gw)

    assert (await _actions(gw)).count("connection.revoked_by_provider") == 1
    assert await _rows(gw, audit_tables.outbox) == []


async def test_a_deletion_request_the_audit_log_cannot_record_is_still_done_and_answered(
    provider_gateway: Any,
) -> None:
    """Audit log down: the connection is erased and Meta gets its url and confirmation
    code (a 503 would lose the request); the erasure is recorded once by the drain."""
    gw, _ = await _linked(provider_gateway)
    await _audit_log_writable(gw, False)

    answer = await _post(gw, "data-deletion", signed_request())

    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"url", "confirmation_code"}
    assert await _rows(gw, connections) == []
    assert await _rows(gw, provider_tokens) == []
    async with httpx.AsyncClient(timeout=15) as person:
        page = await person.get(answer.json()["url"])
    assert "1 linked account connection(s) were deleted" in page.text

    await _audit_log_writable(gw, True)
    await _drain_audit_outbox(gw)

    assert (await _actions(gw)).count("connection.erased_by_provider") == 1
    assert await _rows(gw, audit_tables.outbox) == []
