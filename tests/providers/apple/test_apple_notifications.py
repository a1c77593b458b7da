"""Sign in with Apple server-to-server notifications, on a live gateway over real databases.

Apple POSTs ``{"payload": "<JWS>"}``; the stand-in signs it with its own JWKS key,
exactly as it signs the ID tokens the gateway already trusts for linking.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select, text, update

from gateway.audit import AuditOutbox, AuditStore, AuditWriter
from gateway.callers import CallerKind, create_caller
from gateway.storage import account_claims, audit_tables, connections, create_engine, writer
from gateway.storage.schema import webhook_tables
from tests.conftest import Servers
from tests.providers.stand import CLIENT_ID, Stand, fixture, open_stand

SUB = "001234.5f3c0e2b8d1a4c6f9e7b.0638"
RELAY = "x7k2mq9z@privaterelay.appleid.com"
ID_CLAIMS = {"sub": SUB, "email": RELAY, "email_verified": "true", "is_private_email": "true"}
FIRST_CONSENT_USER = json.dumps({"name": {"firstName": "Ada", "lastName": "Owner"}})
WINDOW = 24 * 3600  # providers/apple.py NOTIFICATIONS.max_age, the JWT exp Apple sets


async def _stand(servers: Servers, database_url: str, tmp_path: Path) -> Stand:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "AuthKey_ABC123DEFG.p8"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return await open_stand(
        servers, database_url, "apple",
        section={"team_id": "TEAM123456", "key_id": "ABC123DEFG",
                 "private_key_file": str(key_file)},
        # Webhooks on, so the outbox holds what the customer's platform is told.
        settings_overrides={"webhook_url": "http://127.0.0.1:9/hooks", "webhook_secret": "w" * 32},
    )  # fmt: skip


async def _link(stand: Stand) -> dict[str, Any]:
    answer = await stand.link(
        lambda: {**fixture("apple", "token"), "id_token": stand.id_token(ID_CLAIMS)},
        form_post=True,
        extra={"user": FIRST_CONSENT_USER},
    )
    assert answer.status_code == 200, answer.text
    return await stand.connection()


def _notification(
    stand: Stand, event: dict[str, Any], *, age: int = 0, key: RSAKey | None = None, **claims: Any
) -> str:
    """Apple's notification JWT: ``events`` is a string of JSON, as Apple sends it."""
    issued = int(time.time()) - age
    body = {
        "iss": stand.endpoints["issuer"],
        "aud": CLIENT_ID,
        "iat": issued,
        "exp": issued + 86400,
        "jti": uuid.uuid4().hex,
        "events": json.dumps({"sub": SUB, "event_time": issued * 1000, **event}),
        **claims,
    }
    signer = key or stand.key
    return jwt.encode({"alg": "RS256", "kid": signer.kid}, body, signer)


async def _post(stand: Stand, payload: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stand.gateway.url, timeout=15) as apple:
        return await apple.post("/providers/apple/notifications", json={"payload": payload})


async def _rows(database_url: str, table: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(table))).mappings().all())
    finally:
        await engine.dispose()


async def _linked_hours_ago(database_url: str, hours: int) -> None:
    """As if the account had been linked ``hours`` ago (the stand links it just now)."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(connections).values(linked_at=datetime.now(UTC) - timedelta(hours=hours))
            )
    finally:
        await engine.dispose()


async def _audit_actions(stand: Stand, database_url: str, connection_id: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.AUDITOR, name="dpo", customers=["acme"]
        )
    finally:
        await engine.dispose()
    async with httpx.AsyncClient(base_url=stand.gateway.url, timeout=15) as auditor:
        events = await auditor.get(
            "/v1/audit/events",
            params={"customer_id": "acme", "connection_id": connection_id},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert events.status_code == 200, events.text
    return [e["action"] for e in reversed(events.json()["events"])]


async def test_consent_revoked_ends_the_grant(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """consent-revoked: revoked, tokens and kept claims gone, audited, one webhook."""
    stand = await _stand(servers, database_url, tmp_path)
    linked = await _link(stand)

    answer = await _post(stand, _notification(stand, {"type": "consent-revoked"}))

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": True}
    connection = await stand.connection()
    assert connection["status"] == "revoked"
    [row] = await _rows(database_url, connections)
    assert (row["access_token"], row["refresh_token"]) == (None, None)
    assert await _rows(database_url, account_claims) == []
    actions = await _audit_actions(stand, database_url, linked["id"])
    assert actions[-1] == "connection.revoked_by_provider"
    hooks = [r["event_type"] for r in await _rows(database_url, webhook_tables.deliveries)]
    assert hooks == ["connection.revoked"]
    assert not [c for c in stand.router.calls if c.request.url.path == "/revoke"]


async def _link_for(stand: Stand, database_url: str, customer: str) -> None:
    """Another customer links the same Apple account through its own connect link."""
    engine = create_engine(database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.SERVICE, name=f"crm-{customer}", customers=[customer]
        )
    finally:
        await engine.dispose()
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stand.gateway.url, headers=headers, timeout=15) as api:
        session = (await api.post("/v1/connect-sessions", json={"customer_id": customer})).json()
    async with httpx.AsyncClient(timeout=15) as browser:
        start = await browser.get(f"{session['connect_url']}/apple")
        query = dict(httpx.URL(start.headers["location"]).params)
        stand.authorize_params = query  # the ID token's nonce is this round trip's
        answer = await browser.post(
            query["redirect_uri"], data={"code": "code-456", "state": query["state"]}
        )
    assert answer.status_code == 200, answer.text


async def test_every_customer_that_linked_the_account_is_told(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Two customers linked the same Apple account: consent-revoked ends both, each in its
    own customer's audit chain."""
    stand = await _stand(servers, database_url, tmp_path)
    await _link(stand)
    await _link_for(stand, database_url, "globex")
    assert len(await _rows(database_url, connections)) == 2

    answer = await _post(stand, _notification(stand, {"type": "consent-revoked"}))

    assert answer.status_code == 200, answer.text
    rows = await _rows(database_url, connections)
    assert sorted((r["customer_id"], r["status"]) for r in rows) == [
        ("acme", "revoked"),
        ("globex", "revoked"),
    ]
    assert await _rows(database_url, account_claims) == []
    hooks = await _rows(database_url, webhook_tables.deliveries)
    assert sorted(h["customer_id"] for h in hooks) == ["acme", "globex"]


async def test_a_replayed_notification_has_no_second_effect(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """The same consent-revoked twice: one audit event, one webhook, still 200."""
    stand = await _stand(servers, database_url, tmp_path)
    linked = await _link(stand)
    payload = _notification(stand, {"type": "consent-revoked"})

    first, again = await _post(stand, payload), await _post(stand, payload)

    assert (first.status_code, again.status_code) == (200, 200)
    actions = await _audit_actions(stand, database_url, linked["id"])
    assert actions.count("connection.revoked_by_provider") == 1
    assert len(await _rows(database_url, webhook_tables.deliveries)) == 1


async def test_account_delete_erases_the_connection(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """account-delete: the row, its tokens and its kept claims are deleted; the log says so."""
    stand = await _stand(servers, database_url, tmp_path)
    linked = await _link(stand)

    answer = await _post(stand, _notification(stand, {"type": "account-delete"}))

    assert answer.status_code == 200, answer.text
    assert await _rows(database_url, connections) == []
    assert await _rows(database_url, account_claims) == []
    actions = await _audit_actions(stand, database_url, linked["id"])
    assert actions[-1] == "connection.erased_by_provider"
    hooks = [r["event_type"] for r in await _rows(database_url, webhook_tables.deliveries)]
    assert hooks == ["connection.revoked"]


async def test_email_disabled_updates_the_kept_claims(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """email-disabled: the profile now says forwarding is off; the connection stays active."""
    stand = await _stand(servers, database_url, tmp_path)
    linked = await _link(stand)
    event = {"type": "email-disabled", "email": RELAY, "is_private_email": "true"}

    answer = await _post(stand, _notification(stand, event))
    page = await stand.records(linked["id"], "profile")

    assert answer.status_code == 200, answer.text
    assert (await stand.connection())["status"] == "active"
    data = page.json()["records"][0]["data"]
    assert (data["email"], data["email_forwarding"]) == (RELAY, "disabled")
    actions = await _audit_actions(stand, database_url, linked["id"])
    assert "account_claims.updated" in actions


async def _audit_log_writable(database_url: str, writable: bool) -> None:
    """Take the audit table away (every append fails) or give it back."""
    there, away = "audit_events", "audit_events_gone"
    old, new = (away, there) if writable else (there, away)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
    finally:
        await engine.dispose()


async def test_an_email_event_the_audit_log_cannot_record_is_still_applied(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Audit log down: Apple delivers an event once, so the kept claims change at once
    (200) with their event in the audit outbox; the drain records it, once."""
    stand = await _stand(servers, database_url, tmp_path)
    linked = await _link(stand)
    event = {"type": "email-disabled", "email": RELAY, "is_private_email": "true"}
    await _audit_log_writable(database_url, False)

    answer = await _post(stand, _notification(stand, event))

    assert answer.status_code == 200, answer.text
    assert len(await _rows(database_url, audit_tables.outbox)) == 1

    await _audit_log_writable(database_url, True)
    engine = create_engine(database_url)
    try:
        store = AuditStore(writer(engine), audit_tables, read_engine=engine)
        await AuditOutbox(engine, audit_tables, store, AuditWriter(store)).drain()
    finally:
        await engine.dispose()
    page = await stand.records(linked["id"], "profile")

    assert page.json()["records"][0]["data"]["email_forwarding"] == "disabled"
    actions = await _audit_actions(stand, database_url, linked["id"])
    assert actions.count("account_claims.updated") == 1


async def test_an_older_email_event_does_not_undo_a_newer_one(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """email-disabled that happened 20 minutes ago, then an email-enabled that happened
    30 minutes ago but was signed just now (redelivered late, or replayed): 200 and
    forwarding stays disabled, as ``event_time`` says, not ``iat``; an email-enabled
    that happened now then applies."""
    stand = await _stand(servers, database_url, tmp_path)
    linked = await _link(stand)
    await _linked_hours_ago(database_url, 1)  # both events are about this grant
    disabled = _notification(stand, {"type": "email-disabled", "email": RELAY}, age=1200)
    happened = (int(time.time()) - 1800) * 1000  # Apple's event_time is in milliseconds
    older_enabled = _notification(
        stand, {"type": "email-enabled", "email": RELAY, "event_time": happened}
    )

    answers = [await _post(stand, disabled), await _post(stand, older_enabled)]
    page = await stand.records(linked["id"], "profile")

    assert [a.status_code for a in answers] == [200, 200]
    assert page.json()["records"][0]["data"]["email_forwarding"] == "disabled"
    actions = await _audit_actions(stand, database_url, linked["id"])
    assert actions.count("account_claims.updated") == 1

    newer = await _post(stand, _notification(stand, {"type": "email-enabled", "email": RELAY}))
    page = await stand.records(linked["id"], "profile")

    assert newer.status_code == 200, newer.text
    assert page.json()["records"][0]["data"]["email_forwarding"] == "enabled"


async def test_a_forged_signature_is_refused_and_changes_nothing(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Signed with a key Apple never published (same kid): 401 problem+json, still active."""
    stand = await _stand(servers, database_url, tmp_path)
    await _link(stand)
    forger = RSAKey.generate_key(2048, parameters={"kid": stand.key.kid})

    answer = await _post(stand, _notification(stand, {"type": "consent-revoked"}, key=forger))

    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith("/provider-notification-refused")
    assert (await stand.connection())["status"] == "active"
    assert len(await _rows(database_url, account_claims)) == 1


async def test_a_key_apple_never_published_is_refused_without_hammering_apple(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """An unknown kid, twice: 401 each time, never a 500, and Apple's keys are fetched once
    (a refetch for an unknown kid is allowed only every 30 s: gateway/connect/jwks.py)."""
    stand = await _stand(servers, database_url, tmp_path)
    await _link(stand)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-apples"})
    before = len([c for c in stand.router.calls if c.request.url.path == "/jwks"])

    answers = [
        await _post(stand, _notification(stand, {"type": "consent-revoked"}, key=stranger))
        for _ in range(2)
    ]

    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].json()["type"].endswith("/provider-notification-refused")
    assert (await stand.connection())["status"] == "active"
    after = len([c for c in stand.router.calls if c.request.url.path == "/jwks"])
    assert after - before == 1


async def test_another_apps_notification_is_refused(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """aud names another client id: Apple sent it about another app's users."""
    stand = await _stand(servers, database_url, tmp_path)
    await _link(stand)

    answer = await _post(
        stand, _notification(stand, {"type": "consent-revoked"}, aud="com.example.other")
    )

    assert answer.status_code == 401
    assert (await stand.connection())["status"] == "active"


async def test_a_late_consent_revoked_still_ends_the_grant(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Issued two hours ago (delivered late, still before its exp): the grant ends."""
    stand = await _stand(servers, database_url, tmp_path)
    linked = await _link(stand)
    await _linked_hours_ago(database_url, 3)

    answer = await _post(stand, _notification(stand, {"type": "consent-revoked"}, age=7200))

    assert answer.status_code == 200, answer.text
    assert (await stand.connection())["status"] == "revoked"
    assert await _rows(database_url, account_claims) == []
    actions = await _audit_actions(stand, database_url, linked["id"])
    assert actions[-1] == "connection.revoked_by_provider"


async def test_a_revocation_from_before_the_account_was_linked_again_leaves_the_new_grant(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """The user revoked two hours ago, then linked again just now: the late (or
    replayed) revocation is about the old grant and must not end the new one."""
    stand = await _stand(servers, database_url, tmp_path)
    linked = await _link(stand)

    answer = await _post(stand, _notification(stand, {"type": "consent-revoked"}, age=7200))

    assert answer.status_code == 200, answer.text
    assert (await stand.connection())["status"] == "active"
    assert len(await _rows(database_url, account_claims)) == 1
    actions = await _audit_actions(stand, database_url, linked["id"])
    assert "connection.revoked_by_provider" not in actions


async def test_an_old_notification_is_refused(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Issued an hour past the 24-hour window (an exp stretched past Apple's): refused as too old,
    audited as denied, nothing changed."""
    stand = await _stand(servers, database_url, tmp_path)
    linked = await _link(stand)
    old = _notification(
        stand, {"type": "consent-revoked"}, age=WINDOW + 3600, exp=int(time.time()) + 3600
    )

    answer = await _post(stand, old)

    assert answer.status_code == 401
    assert answer.json()["type"].endswith("/provider-notification-refused")
    assert (await stand.connection())["status"] == "active"
    actions = await _audit_actions(stand, database_url, linked["id"])
    assert actions[-1] == "provider_notification.refused"


async def test_an_expired_notification_is_refused(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """exp in the past: refused before anything is read."""
    stand = await _stand(servers, database_url, tmp_path)
    await _link(stand)
    past = int(time.time()) - 7200

    answer = await _post(stand, _notification(stand, {"type": "consent-revoked"}, exp=past))

    assert answer.status_code == 401
    assert (await stand.connection())["status"] == "active"


async def test_an_unknown_event_type_is_a_bad_request(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """A type Apple does not document: 400 problem+json, nothing changed."""
    stand = await _stand(servers, database_url, tmp_path)
    await _link(stand)

    answer = await _post(stand, _notification(stand, {"type": "account-frozen"}))

    assert answer.status_code == 400
    assert answer.json()["type"].endswith("/provider-notification-unreadable")
    assert (await stand.connection())["status"] == "active"


async def test_an_unknown_account_answers_like_a_known_one(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """A verified event about an account nobody linked: 200, same body, nothing changed."""
    stand = await _stand(servers, database_url, tmp_path)
    await _link(stand)

    answer = await _post(
        stand, _notification(stand, {"type": "consent-revoked", "sub": "000999.ffff.0001"})
    )

    assert answer.status_code == 200
    assert answer.json() == {"received": True}
    assert (await stand.connection())["status"] == "active"


async def test_a_body_without_a_payload_is_a_bad_request(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Not Apple's shape at all: 400, never a 500."""
    stand = await _stand(servers, database_url, tmp_path)
    async with httpx.AsyncClient(base_url=stand.gateway.url, timeout=15) as client:
        answers = [
            await client.post("/providers/apple/notifications", content=b"not json"),
            await client.post("/providers/apple/notifications", json={"payload": "a.b.c"}),
            await client.post("/providers/apple/data-deletion", json={"payload": "x"}),
        ]

    assert [a.status_code for a in answers] == [400, 401, 404]


async def test_a_deeply_nested_body_is_a_bad_request(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Anyone can POST here: JSON nested past the parser's stack is a 400, never a 500."""
    stand = await _stand(servers, database_url, tmp_path)
    nested = b'{"payload":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    async with httpx.AsyncClient(base_url=stand.gateway.url, timeout=15) as client:
        answer = await client.post(
            "/providers/apple/notifications",
            content=nested,
            headers={"content-type": "application/json"},
        )

    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_the_notification_and_account_never_reach_the_logs(
    database_url: str, servers: Servers, tmp_path: Path, json_logs: io.StringIO
) -> None:
    """Neither the JWT (handled or forged), its signature, nor the Apple user id is logged."""
    stand = await _stand(servers, database_url, tmp_path)
    await _link(stand)
    forger = RSAKey.generate_key(2048, parameters={"kid": stand.key.kid})
    forged = _notification(stand, {"type": "account-delete"}, key=forger)
    handled = _notification(stand, {"type": "consent-revoked"})

    refused, answered = await _post(stand, forged), await _post(stand, handled)

    assert (refused.status_code, answered.status_code) == (401, 200)
    # The gateway's own events; aiosqlite's debug lines echo SQL parameters (the
    # account id of any lookup), which production's info level never emits.
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.strip()]
    ours = "\n".join(json.dumps(line) for line in lines if line.get("logger") != "aiosqlite")
    assert "provider_notification.refused" in ours
    assert "provider_notification.handled" in ours
    for secret in (forged, handled, forged.rsplit(".", 1)[1], handled.rsplit(".", 1)[1], SUB):
        assert secret not in ours
