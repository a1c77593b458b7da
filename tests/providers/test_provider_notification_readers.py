"""The providers' notification readers as pure functions: no network, no database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from providers.apple import read_notification
from providers.base import NotificationEvent
from providers.meta import open_signed_request, read_signed_request

SECRET = "app-secret"


def _signed(payload: dict[str, object], secret: str = SECRET, *, pad: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    encoded = encoded if pad else encoded.rstrip("=")
    mac = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=") + "." + encoded


def test_a_signed_request_opens_with_the_app_secret() -> None:
    """Meta's shape: HMAC-SHA256 over the encoded payload, base64url without padding."""
    payload = {"algorithm": "HMAC-SHA256", "issued_at": 1, "user_id": "42"}

    assert open_signed_request(_signed(payload), SECRET) == payload


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (_signed({"algorithm": "HMAC-SHA256", "user_id": "42"}, "other"), "does not match"),
        (_signed({"algorithm": "HMAC-SHA1", "user_id": "42"}), "another algorithm"),
        (_signed({"algorithm": "HMAC-SHA256"}) + ".extra", "not a signed request"),
        ("no-dot-at-all", "not a signed request"),
        ("", "not a signed request"),
    ],
    ids=["wrong_secret", "other_algorithm", "three_parts", "no_dot", "empty"],
)
def test_anything_else_is_refused(value: str, reason: str) -> None:
    """Forged, another algorithm or not a signed request at all: ValueError saying which."""
    with pytest.raises(ValueError, match=reason):
        open_signed_request(value, SECRET)


def test_deauthorize_and_deletion_read_as_their_events() -> None:
    """The callback decides the event; user_id names the account."""
    payload = {"algorithm": "HMAC-SHA256", "issued_at": 1700000000, "user_id": 10158}

    ended, deleted = read_signed_request(payload, False), read_signed_request(payload, True)

    assert (ended.subject, ended.event) == ("10158", NotificationEvent.GRANT_ENDED)
    assert deleted.event is NotificationEvent.ACCOUNT_DELETED


@pytest.mark.parametrize("as_string", [True, False], ids=["string", "object"])
@pytest.mark.parametrize(
    ("kind", "event"),
    [
        ("consent-revoked", NotificationEvent.GRANT_ENDED),
        ("account-delete", NotificationEvent.ACCOUNT_DELETED),
        ("account-deleted", NotificationEvent.ACCOUNT_DELETED),
        ("email-enabled", NotificationEvent.CLAIMS_CHANGED),
    ],
)
def test_apple_events_read_as_string_or_object(
    kind: str, event: NotificationEvent, as_string: bool
) -> None:
    """``events`` arrives as a JSON string; an object is read the same way."""
    events = {"type": kind, "sub": "001.abc.002", "event_time": 1700000000000}
    claims = {"iat": 1700000000, "events": json.dumps(events) if as_string else events}

    read = read_notification(claims, False)

    assert (read.subject, read.event, read.kind) == ("001.abc.002", event, kind)


def test_an_email_event_carries_the_new_claims() -> None:
    """email-disabled: the address, the relay flag as a boolean, forwarding off."""
    events = {"type": "email-disabled", "sub": "s", "email": "a@privaterelay.appleid.com",
              "is_private_email": "true"}  # fmt: skip

    read = read_notification({"iat": 1, "events": json.dumps(events)}, False)

    assert dict(read.claims) == {
        "email": "a@privaterelay.appleid.com",
        "is_private_email": True,
        "email_forwarding": "disabled",
    }


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ('{"type": "account-frozen", "sub": "s"}', "events.type"),
        ('{"type": "consent-revoked"}', "events.sub"),
        ("not json", "Expecting value"),
        ("[]", "not an object"),
    ],
    ids=["unknown_type", "no_sub", "not_json", "not_an_object"],
)
def test_apple_events_it_cannot_read_are_refused(events: str, reason: str) -> None:
    """Garbage, no account, or a type Apple does not document: ValueError saying which."""
    with pytest.raises(ValueError, match=reason):
        read_notification({"iat": 1, "events": events}, False)
