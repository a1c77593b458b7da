"""Auditors reading the audit log: who may, which subjects a filter means, what was disclosed.

The JSON routes (:mod:`gateway.api.audit`) stay thin; the decisions live here:

* **Who may read.** Only an auditor credential (``lga_…``, RFC 6750 §2.1
  bearer). A valid service key is refused with 403, and that refusal is itself
  an event in the customer's log (privacy notice, "accountable": every access,
  allowed or denied, is recorded). An auditor reads only the customers it was
  created for; asking for another customer is refused the same way.
* **Subjects.** An auditor searches by a person's identifier as they know it
  (``Jane@Customer.Example``, ``(555) 010-0000``, ``sandbox:@JaneDoe``). It is
  normalized with ``policies.identifiers`` — the same normalizers the
  providers use — and hashed per customer with the gateway's
  :class:`~gateway.audit.SubjectHasher`; the clear value never reaches a log,
  a span, an error or a response.
* **Cursors** are opaque and MAC'd (RFC 2104, key from HKDF RFC 5869 under its
  own label): a changed byte is ``invalid-cursor``, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway import audit
from gateway.audit import (
    Action,
    AuditCursor,
    AuditEvent,
    EventDraft,
    Outcome,
    canonical_content,
    format_time,
    parse_time,
)
from gateway.callers import KEY_PREFIX, Caller, CallerKind, authenticate
from gateway.errors import (
    AuditUnavailable,
    Forbidden,
    InvalidCursor,
    InvalidParameter,
    LinkgateError,
    NotFound,
)
from gateway.observability import current_trace_id
from gateway.runtime import Runtime
from policies import (
    Identifier,
    IdentifierKind,
    InvalidIdentifier,
    email_identifier,
    handle_identifier,
    phone_identifier,
    provider_user_identifier,
)

__all__ = [
    "AuditCursorKey",
    "auditor_caller",
    "event_json",
    "parse_moment",
    "require_customer",
    "subject_hashes",
    "subject_identifiers",
]

_CUSTOMER_ID = re.compile(r"[A-Za-z0-9._:@\-]{1,128}")
_HKDF_INFO = b"linkgate.audit-cursor.v1"


async def auditor_caller(
    runtime: Runtime, authorization: str | None, customer_id: str | None
) -> Caller:
    """The auditor behind ``authorization``; 401 without one, 403 for a service key.

    ``customer_id`` is the customer the request names, if any: a refused
    service key is recorded in that customer's log.
    """
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and key.strip().startswith(KEY_PREFIX[CallerKind.SERVICE]):
        service = await authenticate(runtime.engine, authorization, CallerKind.SERVICE)
        error = Forbidden("service keys cannot read the audit log; use an auditor credential")
        await record_refusal(runtime, service, customer_id, error)
        raise error
    return await authenticate(runtime.engine, authorization, CallerKind.AUDITOR)


async def require_customer(
    runtime: Runtime, caller: Caller, customer_id: str, *, hide: bool = False
) -> None:
    """403 (or 404 when ``hide``: an id was named) unless ``caller`` may read ``customer_id``."""
    if customer_id in caller.customers:
        return
    error: LinkgateError = (
        NotFound("no such audit event")
        if hide
        else Forbidden(f"this credential is not entitled to customer {customer_id!r}")
    )
    await record_refusal(runtime, caller, customer_id, error)
    raise error


async def record_refusal(
    runtime: Runtime, caller: Caller, customer_id: str | None, error: LinkgateError
) -> None:
    """Append ``caller.refused`` to ``customer_id``'s log; nothing when no customer is known."""
    if customer_id is None or not _CUSTOMER_ID.fullmatch(customer_id):
        return
    draft = EventDraft(
        customer_id=customer_id,
        action=Action.CALLER_REFUSED,
        outcome=Outcome.DENIED,
        problem_type=error.type_uri,
        caller_id=caller.id,
        caller_class=caller.caller_class.value,
        trace_id=current_trace_id(),
    )
    try:
        await runtime.audit.record(draft)
    except audit.AuditUnavailable as exc:
        # Fail closed: a refusal that cannot be recorded is still a refusal, but say why.
        raise AuditUnavailable(str(exc)) from None


def customer_param(value: str | None, *, required: bool = True) -> str | None:
    """A ``customer_id`` query parameter, checked for shape."""
    if value is None or value == "":
        if required:
            raise InvalidParameter("customer_id is required", parameter="customer_id")
        return None
    if not _CUSTOMER_ID.fullmatch(value):
        raise InvalidParameter("customer_id is not a customer id", parameter="customer_id")
    return value


# -- subjects ------------------------------------------------------------------------------


def subject_identifiers(raw: str, providers: Iterable[str]) -> list[Identifier]:
    """Every identifier ``raw`` can mean, normalized as the records pipeline normalizes them.

    Accepted: ``kind:value`` with ``kind`` one of email, phone, handle,
    provider_user_id (handles and provider user ids as ``kind:provider:value``);
    a bare e-mail address; a bare phone number; ``provider:value`` for a
    configured provider (its handle and its user id both); a bare ``@handle``
    (that handle on every configured provider).
    """
    text = raw.strip()
    if not text or len(text) > 320:
        raise InvalidParameter("subject must be an identifier", parameter="subject")
    try:
        found = _identifiers(text, sorted(providers))
    except InvalidIdentifier:
        found = []
    if not found:
        # The detail never repeats the value: it is an End User's identifier.
        raise InvalidParameter(
            "subject is not an e-mail address, phone number, handle or provider user id",
            parameter="subject",
        )
    return found


def _identifiers(text: str, providers: list[str]) -> list[Identifier]:
    kind, _, rest = text.partition(":")
    if kind in {IdentifierKind.EMAIL, IdentifierKind.PHONE} and rest:
        return [email_identifier(rest) if kind == IdentifierKind.EMAIL else phone_identifier(rest)]
    if kind in {IdentifierKind.HANDLE, IdentifierKind.PROVIDER_USER_ID} and rest:
        provider, _, value = rest.partition(":")
        if not value:
            raise InvalidIdentifier("a provider is needed")
        if kind == IdentifierKind.HANDLE:
            return [handle_identifier(provider, value)]
        return [provider_user_identifier(provider, value)]
    if rest and kind.strip().lower() in providers:
        return [handle_identifier(kind, rest), provider_user_identifier(kind, rest)]
    if "@" in text and not text.startswith("@"):
        return [email_identifier(text)]
    if text.startswith("@"):
        return [handle_identifier(provider, text) for provider in providers]
    return [phone_identifier(text)]


def subject_hashes(runtime: Runtime, raw: str, customer_ids: Iterable[str]) -> list[str]:
    """The keyed hashes ``raw`` has in each customer's log."""
    identifiers = subject_identifiers(raw, runtime.providers)
    return sorted(
        {
            runtime.subjects.hash(c, str(identifier))
            for c in customer_ids
            for identifier in identifiers
        }
    )


# -- values --------------------------------------------------------------------------------


def event_json(event: AuditEvent) -> dict[str, Any]:
    """An event as its canonical content (exactly what the hash covers) plus its hashes."""
    body: dict[str, Any] = json.loads(canonical_content(event))
    body["prev_hash"] = event.prev_hash
    body["hash"] = event.hash
    return body


def parse_moment(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 date-time (or a date) query parameter, as aware UTC."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"{name} must be an RFC 3339 date-time", parameter=name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is a year-0 time in UTC
        raise InvalidParameter(
            f"{name} must fall within the years 1 to 9999 in UTC", parameter=name
        ) from None


class AuditCursorKey:
    """Opaque, MAC'd keyset cursors for the audit search."""

    def __init__(self, secret: bytes) -> None:
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            secret
        )

    def __repr__(self) -> str:
        return "AuditCursorKey(<secret>)"

    def sign(self, cursor: AuditCursor) -> str:
        payload = json.dumps(
            [format_time(cursor.occurred_at), cursor.customer_id, cursor.seq],
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def open(self, text: str) -> AuditCursor:
        try:
            encoded, _, mac = text.partition(".")
            payload = _unb64(encoded)
            if not hmac.compare_digest(_unb64(mac), self._mac(payload)):
                raise ValueError("mac")
            moment, customer_id, seq = json.loads(payload)
            return AuditCursor(parse_time(moment), str(customer_id), int(seq))
        except (ValueError, TypeError, binascii.Error):
            raise InvalidCursor("the cursor is not one this gateway issued") from None

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if len(text) > 1024:
        raise ValueError("too long")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
