from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.observability import MASK, is_secret_key, redact_text, redact_value
from gateway.observability.redaction import _scanned

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ"
    ".eyJzdWIiOiJjYW5hcnkiLCJhdWQiOiJsaW5rZ2F0ZSJ9"
    ".c2lnbmF0dXJlLWNhbmFyeS1abThYdzN2VDlr"
)


@pytest.mark.parametrize(
    "key",
    [
        "access_token",
        "Authorization",
        "CLIENT_SECRET",
        "client-secret",
        "code",
        "code_verifier",
        "Cookie",
        "Set-Cookie",
        "id_token",
        "password",
        "refresh_token",
        "service_key",
        "state",
        "X-Api-Key",
        "connect_token",
        "db_password",
    ],
)
def test_secret_keys_are_recognised_case_insensitively(key: str) -> None:
    """Keys naming a secret match whatever their case or dash/underscore spelling."""
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["status_code", "token_type", "key_id", "event", "trace_id", "expires_in"]
)
def test_ordinary_keys_are_not_secret(key: str) -> None:
    """Keys that merely resemble secret names stay readable."""
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    ("template", "kept"),
    [
        ("Authorization: Bearer CANARY", "Authorization: "),
        ("authorization=CANARY", "authorization="),
        ('{"Authorization": "Basic CANARY"}', '"Authorization": "'),
        ("sent bearer CANARY upstream", "upstream"),
        (f"id token {JWT} rejected", "rejected"),
        ("key lgk_CANARY revoked", "revoked"),
        ("auditor lga_CANARY used", "used"),
        ("GET /oauth/callback?code=CANARY&iss=https://idp", "&iss=https://idp"),
        ("redirect?state=abc&code=CANARY", "redirect?state="),
        ("grant_type=refresh_token&refresh_token=CANARY", "grant_type=refresh_token&"),
        ("https://api.example/me?access_token=CANARY#x", "#x"),
        ("client_id=app&client_secret=CANARY", "client_id=app&"),
        ('upstream said {"access_token": "CANARY", "expires_in": 3600}', '"expires_in"'),
        ("token ya29.CANARY expired", "expired"),
    ],
)
def test_credentials_inside_text_are_masked(template: str, kept: str, canary: str) -> None:
    """Credential shapes inside free text are masked and the rest is kept."""
    redacted = redact_text(template.replace("CANARY", canary))

    assert canary not in redacted
    assert "eyJ" not in redacted
    assert MASK in redacted
    assert kept in redacted


@pytest.mark.parametrize(
    "text",
    [
        "gateway.observability.middleware",
        "GET /v1/connections/c_123/records/posts",
        "status_code=200 error_code=invalid_grant",
        "token.refreshed",
        "sqlalchemy.engine.Engine",
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    """Dotted names, paths and non-secret parameters pass through untouched."""
    assert redact_text(text) == text


def test_nested_values_are_masked_by_key_and_by_shape(canary: str) -> None:
    """Mappings and sequences are walked; secret keys mask whole sub-trees."""
    value = {
        "upstream": {
            "headers": {"Authorization": f"Bearer {canary}", "Accept": "application/json"},
            "token": {"access_token": canary, "nested": [canary]},
        },
        "attempts": (1, 2, f"retry with lgk_{canary}"),
        "ok": True,
        "count": 3,
        "nothing": None,
    }

    expected = {
        "upstream": {
            "headers": {"Authorization": MASK, "Accept": "application/json"},
            "token": MASK,
        },
        "attempts": [1, 2, f"retry with {MASK}"],
        "ok": True,
        "count": 3,
        "nothing": None,
    }
    assert redact_value(value) == expected


def test_unknown_objects_are_stringified_then_masked(canary: str) -> None:
    """An object a renderer would stringify is stringified and scanned first."""

    class Leaky:
        def __str__(self) -> str:
            return f"Leaky(token=lgk_{canary})"

    assert redact_value(Leaky()) == f"Leaky(token={MASK})"


@pytest.mark.parametrize(
    "name",
    [
        "access_token",
        "client_assertion",
        "client_secret",
        "code",
        "code_verifier",
        "id_token",
        "key",
        "password",
        "refresh_token",
        "state",
        "token",
    ],
)
@pytest.mark.parametrize("spell", [str.lower, str.upper], ids=["lower", "upper"])
def test_every_secret_parameter_is_masked_in_a_query(
    name: str, spell: Callable[[str], str]
) -> None:
    """Each credential parameter's value is masked, whatever the case of its name."""
    text = f"/callback?limit=25&{spell(name)}=CANARY&page=2"

    assert redact_text(text) == f"/callback?limit=25&{spell(name)}={MASK}&page=2"


def test_text_seen_before_is_scanned_the_same(canary: str) -> None:
    """Clean text is returned as it is every time; text with a secret is masked every time."""
    clean = "GET /v1/connections/{connection_id}/records/{resource}"
    leaky = f"retry with lgk_{canary}"

    assert [redact_text(clean) for _ in range(3)] == [clean] * 3
    assert [redact_text(leaky) for _ in range(3)] == [f"retry with {MASK}"] * 3


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet="0123456789abcdef", max_size=300)
    | st.sampled_from(["eaa" * 30, "ea" + "a" * 40, "0" * 257, "deadbeef" * 8])
)
def test_lower_case_hex_is_what_every_rule_finds_it(text: str) -> None:
    """Bare lower-case hex (trace and request ids) skips the scan: no rule masks any of it."""
    assert _scanned(text) == text
    assert redact_text(text) == text


def test_text_with_more_than_hex_is_still_scanned() -> None:
    """Upper-case hex, a Facebook-shaped token and a hex value after a name are not skipped."""
    token = "EAA" + "b" * 24
    assert redact_text(token) == MASK
    assert f"code={MASK}" == redact_text("code=" + "ab" * 16)
