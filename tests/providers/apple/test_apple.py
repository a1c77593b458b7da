"""Sign in with Apple: form_post callback, signed client secret, first-consent name,
and the ``profile`` served from the identity claims kept at linking."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select, update

from gateway.callers import CallerKind, create_caller
from gateway.storage import account_claims, connections, create_engine, metadata
from providers.apple import KEPT_CLAIMS, PROVIDER, normalize_profile
from providers.base import NormalizeContext
from tests.conftest import Servers
from tests.providers.stand import CLIENT_ID, Stand, fixture, open_stand

SUB = "001234.5f3c0e2b8d1a4c6f9e7b.0638"
RELAY = "x7k2mq9z@privaterelay.appleid.com"
ID_CLAIMS = {"sub": SUB, "email": RELAY, "email_verified": "true", "is_private_email": "true",
             "real_user_status": 2}  # fmt: skip
FIRST_CONSENT_USER = json.dumps({"name": {"firstName": "Ada", "lastName": "Owner"}, "email": RELAY})


def _key_file(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "AuthKey_ABC123DEFG.p8"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


async def test_form_post_callback_links_with_the_first_consent_name(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """POST /oauth/callback is checked like the GET; the account is named from Apple's user JSON."""
    key_file = _key_file(tmp_path)
    stand = await open_stand(
        servers, database_url, "apple",
        section={"team_id": "TEAM123456", "key_id": "ABC123DEFG",
                 "private_key_file": str(key_file)},
    )  # fmt: skip
    claims = {"sub": SUB, "email": "x7k2mq9z@privaterelay.appleid.com", "is_private_email": "true"}
    user = json.dumps({"name": {"firstName": "Ada", "lastName": "Owner"}, "email": claims["email"]})

    answer = await stand.link(
        lambda: {**fixture("apple", "token"), "id_token": stand.id_token(claims)},
        form_post=True,
        extra={"user": user},
    )
    connection = await stand.connection()
    [token_call] = [c for c in stand.router.calls if c.request.url.path == "/token"]
    form = parse_qs(token_call.request.content.decode())
    public = ECKey.import_key(key_file.read_text()).as_dict(private=False)
    secret = jwt.decode(form["client_secret"][0], ECKey.import_key(public), algorithms=["ES256"])

    assert answer.status_code == 200, answer.text
    assert stand.authorize_params["response_mode"] == "form_post"
    assert connection["account"] == {"id": SUB, "name": "Ada Owner", "issuer": stand.url("issuer")}
    assert secret.header["kid"] == "ABC123DEFG"
    assert secret.claims["iss"] == "TEAM123456"
    assert secret.claims["sub"] == CLIENT_ID
    assert secret.claims["aud"] == "https://appleid.apple.com"
    assert secret.claims["exp"] - secret.claims["iat"] <= 300


async def test_a_query_callback_is_refused_for_a_form_post_provider(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """A code for Apple arriving as a GET query did not come from this round trip."""
    stand = await open_stand(
        servers, database_url, "apple",
        section={"team_id": "TEAM123456", "key_id": "ABC123DEFG",
                 "private_key_file": str(_key_file(tmp_path))},
    )  # fmt: skip

    answer = await stand.link(
        lambda: {**fixture("apple", "token"), "id_token": stand.id_token({"sub": SUB})}
    )

    assert answer.status_code == 400


async def _apple_stand(servers: Servers, database_url: str, tmp_path: Path) -> Stand:
    return await open_stand(
        servers, database_url, "apple",
        section={"team_id": "TEAM123456", "key_id": "ABC123DEFG",
                 "private_key_file": str(_key_file(tmp_path))},
    )  # fmt: skip


async def _link(stand: Stand, *, user: str | None) -> dict[str, Any]:
    """Sign in through the form_post callback; ``user`` is Apple's first-consent JSON."""
    answer = await stand.link(
        lambda: {**fixture("apple", "token"), "id_token": stand.id_token(ID_CLAIMS)},
        form_post=True,
        extra={"user": user} if user else {},
    )
    assert answer.status_code == 200, answer.text
    return await stand.connection()


async def _auditor_key(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.AUDITOR, name="dpo", customers=["acme"]
        )
    finally:
        await engine.dispose()
    return key


def _sqlite_bytes(folder: Path) -> bytes:
    """The SQLite database file and its WAL, as written to disk."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("linkgate.db*")))


async def _claims_rows(database_url: str) -> list[Any]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(account_claims))).all())
    finally:
        await engine.dispose()


async def test_profile_is_served_from_the_claims_kept_at_linking(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """The first consent's name and the ID token's claims come back as one direct profile."""
    stand = await _apple_stand(servers, database_url, tmp_path)
    connection = await _link(stand, user=FIRST_CONSENT_USER)
    api_calls = len(stand.router.calls)

    page = await stand.records(connection["id"], "profile")

    assert page.status_code == 200, page.text
    [record] = page.json()["records"]
    assert record["id"] == SUB
    assert record["customer_id"] == "acme"
    assert record["visibility"] == "direct"
    assert record["data"] == {
        "sub": SUB,
        "name": "Ada Owner",
        "given_name": "Ada",
        "family_name": "Owner",
        "email": RELAY,
        "email_verified": True,
        "is_private_email": True,
        # real_user_status ("likely_real") is user.behavior: no purpose grants it yet,
        # so the policy withholds it here like any other field of that category.
    }
    assert len(stand.router.calls) == api_calls  # nothing asked of Apple: it has no userinfo


async def test_an_expired_access_token_is_not_refreshed_to_serve_the_profile(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Apple asks that refresh tokens be verified at most once a day ("Verifying a
    user"); the profile needs no token at all, so an expired one is left alone."""
    stand = await _apple_stand(servers, database_url, tmp_path)
    connection = await _link(stand, user=FIRST_CONSENT_USER)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(connections).values(token_expires_at=datetime.now(UTC) - timedelta(hours=2))
            )
    finally:
        await engine.dispose()
    api_calls = len(stand.router.calls)

    pages = [await stand.records(connection["id"], "profile") for _ in range(3)]

    assert [page.status_code for page in pages] == [200, 200, 200]
    assert len(stand.router.calls) == api_calls  # no refresh_token grant sent to Apple
    assert (await stand.connection())["status"] == "active"


async def test_the_profile_read_is_audited_like_any_other(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Reading the kept profile leaves a records.read event with the categories released."""
    stand = await _apple_stand(servers, database_url, tmp_path)
    connection = await _link(stand, user=FIRST_CONSENT_USER)
    await stand.records(connection["id"], "profile")
    auditor = await _auditor_key(database_url)

    async with stand.api() as api:
        events = await api.get(
            "/v1/audit/events",
            params={"customer_id": "acme", "connection_id": connection["id"]},
            headers={"Authorization": f"Bearer {auditor}"},
        )

    assert events.status_code == 200, events.text
    [read] = [e for e in events.json()["events"] if e["action"] == "records.read"]
    assert read["resource"] == "profile"
    assert read["outcome"] == "allowed"
    assert "user.contact.email" in read["categories"]


async def test_a_reconnect_without_the_name_keeps_the_first_consent_name(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """Apple posts ``user`` only once; linking the same account again keeps the name."""
    stand = await _apple_stand(servers, database_url, tmp_path)
    first = await _link(stand, user=FIRST_CONSENT_USER)

    again = await _link(stand, user=None)
    page = await stand.records(again["id"], "profile")

    assert again["id"] == first["id"]
    assert again["account"]["name"] == "Ada Owner"
    data = page.json()["records"][0]["data"]
    assert (data["name"], data["email"]) == ("Ada Owner", RELAY)


async def test_disconnect_deletes_the_kept_claims(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """DELETE revokes at Apple and leaves no claims row; the profile is then refused."""
    stand = await _apple_stand(servers, database_url, tmp_path)
    connection = await _link(stand, user=FIRST_CONSENT_USER)
    revoke = stand.router.post(stand.url("revoke_url")).respond(200)
    assert [row.connection_id for row in await _claims_rows(database_url)] == [connection["id"]]

    async with stand.api() as api:
        response = await api.delete(f"/v1/connections/{connection['id']}")
    page = await stand.records(connection["id"], "profile")

    assert response.status_code in (200, 204), response.text
    assert revoke.called
    assert await _claims_rows(database_url) == []
    assert page.status_code == 409
    assert page.json()["type"].endswith("/connection-revoked")


@pytest.mark.parametrize("user", [FIRST_CONSENT_USER, None], ids=["named", "unnamed"])
async def test_the_kept_claims_are_not_stored_in_plaintext(
    database_url: str, servers: Servers, tmp_path: Path, user: str | None
) -> None:
    """No table row (and, on SQLite, no byte of the database files) holds the email,
    not even as the account's display name when Apple sent no name."""
    stand = await _apple_stand(servers, database_url, tmp_path)
    await _link(stand, user=user)

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            dumped = [
                repr(row) for table in metadata.sorted_tables
                for row in (await conn.execute(select(table))).all()
            ]  # fmt: skip
    finally:
        await engine.dispose()
    files = _sqlite_bytes(tmp_path)  # empty on PostgreSQL

    assert await _claims_rows(database_url)  # the claims are there, sealed
    assert [row for row in dumped if RELAY in row] == []
    assert RELAY.encode() not in files


async def test_a_connection_linked_before_claims_were_kept_needs_a_new_link(
    database_url: str, servers: Servers, tmp_path: Path
) -> None:
    """No kept claims (linked before migration 0008): 409 needs-reauth, never a 500."""
    stand = await _apple_stand(servers, database_url, tmp_path)
    connection = await _link(stand, user=FIRST_CONSENT_USER)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(account_claims.delete())
    finally:
        await engine.dispose()

    page = await stand.records(connection["id"], "profile")

    assert page.status_code == 409
    assert page.json()["type"].endswith("/connection-needs-reauth")


def test_merge_keeps_signed_claims_over_the_callback_and_sticky_names_from_before() -> None:
    """The ID token's email wins over the unsigned ``user`` JSON; an earlier name stays."""
    forged = json.dumps({"name": {"firstName": "Eve"}, "email": "eve@example.com"})

    first = KEPT_CLAIMS.merge(ID_CLAIMS, {"user": forged}, None)
    later = KEPT_CLAIMS.merge({**ID_CLAIMS, "email": "new@privaterelay.appleid.com"}, {}, first)

    assert first["email"] == RELAY
    assert first["name"] == "Eve"
    assert later["name"] == "Eve"
    assert later["email"] == "new@privaterelay.appleid.com"


def test_profile_reads_apple_booleans_given_as_strings_or_booleans() -> None:
    """``email_verified``/``is_private_email`` come as "true"/"false" or JSON booleans."""
    ctx = NormalizeContext(
        customer_id="acme", connection_id="con_1", provider="apple", resource="profile",
        fetched_at=datetime.now(UTC),
    )  # fmt: skip

    as_strings = normalize_profile({"sub": SUB, "is_private_email": "false"}, ctx)
    as_booleans = normalize_profile({"sub": SUB, "is_private_email": False, "odd": 1}, ctx)

    assert as_strings.data["is_private_email"].value is False
    assert as_booleans.data["is_private_email"].value is False
    assert set(as_booleans.data) == {"sub", "is_private_email"}  # unknown claims never leave


def test_the_profile_is_declared_as_served_from_kept_claims() -> None:
    """Apple's one resource is the kept claims; no API path is ever called for it."""
    assert list(PROVIDER.resources) == ["profile"]
    assert PROVIDER.resources["profile"].from_kept_claims
    assert PROVIDER.kept_claims is KEPT_CLAIMS
