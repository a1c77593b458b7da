"""Sign in with Apple: form_post callback, signed client secret, first-consent name."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.conftest import Servers
from tests.providers.stand import CLIENT_ID, fixture, open_stand

SUB = "001234.5f3c0e2b8d1a4c6f9e7b.0638"


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
