"""What providers push when a grant ends at their side, and what the gateway does about it.

Until a provider says so, a grant the End User ended at the provider (removed
the app, revoked consent, deleted the account) is found only at the next token
refresh. Apple (server-to-server notifications) and Meta (Deauthorize and Data
Deletion Request callbacks) push it, and both make handling it a platform
requirement. Each provider module declares how its messages are signed and read
(``Provider.notifications``, providers.base); this module is the one place that
verifies them and acts, for every such provider:

``POST /providers/{provider}/notifications``
    Apple's JSON ``{"payload": "<JWS>"}``, Meta's Deauthorize form
    ``signed_request``. Answers 200 ``{"received": true}``.
``POST /providers/{provider}/data-deletion``
    Meta's Data Deletion Request form ``signed_request``. Answers 200
    ``{"url", "confirmation_code"}``, as Meta requires.
``GET /providers/{provider}/data-deletion/{status}``
    The status page behind that ``url``: what was done, in words, with no
    personal data (no account id, no name, no customer).

Order of work: verify the signature (Apple: the provider's JWKS, ``iss``,
``aud`` = our client id, ``exp``; Meta: HMAC-SHA256 with the app secret), read
the message (providers' ``read``), bound its age (``iat`` / ``issued_at`` no
older than the provider's ``max_age``: 72 hours for Meta, 24 hours for Apple,
whose JWT ``exp`` ends it then anyway; providers.apple), then act on
every connection of that account (several customers may have linked it):

* grant ended (Apple ``consent-revoked``, Meta deauthorize): the connection
  store's end-grant path (``ConnectionStore.end_grant``): tokens, scoped tokens
  and kept claims forgotten, status ``revoked``, the ``connection.revoked``
  webhook in the same transaction. Nothing is revoked back at the provider:
  the grant is already gone there.
* account deleted (Apple ``account-delete``, Meta data deletion): the same,
  and the row deleted, in one transaction (``ConnectionStore.erase``): what the
  erasure of an account holder does (processor_requests.steps.disconnect_account_holder).
  Deleting the row is right: it holds the account's id and display name, the
  End User asked for deletion, and the audit trail keeps only the connection id
  (an opaque ``con_…``), never the account, so the trail stays whole and says
  what happened (``connection.erased_by_provider``).
* claims changed (Apple ``email-disabled`` / ``email-enabled``): the kept
  identity claims (gateway.account_claims) get the new email, relay flag and
  forwarding state, if the event is newer than the last one applied; a
  connection without kept claims is left alone.

The age bound leaves room for a message that reaches us late (queued at the
provider, or sent while we were unreachable) and is otherwise harmless,
because every effect but one is idempotent: ending or erasing a grant twice
does nothing. The one that is not, Apple's email-disabled / email-enabled, is
ordered instead: applied only if its ``event_time`` is newer than the one last
applied to that connection (kept with the claims, ``CLAIMS_CHANGED_AT``), so an
old email-enabled replayed after a newer email-disabled changes nothing.

Each change is one audit event in the owning customer's chain, with the
provider's event name as ``resource``. Replays change nothing: a revoked
connection is not ended again, an erased one is no longer found, a claims
change not newer than the last applied one (or equal to what is kept) is not
applied, and a no-op is answered 200 but neither audited nor sent as a webhook.

A message is taken on its first delivery, because neither provider promises a
second. Meta's Data Deletion Request Callback page (developers.facebook.com/
docs/development/create-an-app/app-dashboard/data-deletion-callback) asks the
app to acknowledge the request and answer the status ``url`` and
``confirmation_code``, and says nothing of what Meta does when the callback
fails: no retry, no redelivery is documented for it or for the Deauthorize
callback. Apple's DTS engineers (developer forums, thread 809509, asked
whether Apple retries) say each event "is expected to be delivered once". A
503 would therefore lose a deletion request or a revocation for good, a
privacy failure. So each change commits in one transaction with its audit
event, through the audit outbox (gateway.audit.outbox, as a link, a refresh
or a suppression does), then the event is appended to the chain; if the
audit log cannot take it now, the change stands, its event waits in the
outbox for the drain, and the answer is still 200 (for Meta's deletion, with
the ``url`` and ``confirmation_code`` of a deletion already done). Only the
database itself failing answers 503 ``database-unavailable``: then nothing
changed, and nothing could have been kept to do it later either.

Refusals are problem+json, never a 500: an unverifiable message 401
``provider-notification-refused`` (also when too old); an unreadable one 400
``provider-notification-unreadable``; a provider without notifications 404.
A refused message names no account we can trust, so it goes to the log
(``provider_notification.refused`` with the reason), not to a customer's
audit chain (a forger could otherwise write into any customer's log); a
verified but too old one is also audited, ``denied``, on its account's
connections. A verified message about an account the gateway does not hold
answers exactly like a handled one: the sender already proved it is the
provider, an error would only invite it to try again, and a different answer would tell
whoever replays a captured message whether the account is linked here.
Secrets, the raw message and the account id are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from gateway import audit
from gateway.account_claims import CLAIMS_CHANGED_AT
from gateway.api.requests import runtime_of
from gateway.audit import Action, EventDraft, Outcome
from gateway.connect.jwks import JWKSCache
from gateway.connections import Connection, Status
from gateway.errors import AuditUnavailable, BadRequest, LinkgateError, NotFound
from gateway.observability import current_trace_id
from gateway.provider_registry import ConfiguredProvider
from gateway.runtime import Runtime
from providers.base import (
    JSONObject,
    NotificationEvent,
    Notifications,
    NotificationSigner,
    ProviderNotification,
)

__all__ = [
    "NotificationRefused",
    "NotificationUnreadable",
    "data_deletion",
    "deletion_status",
    "notification",
]

log = structlog.get_logger(__name__)

MAX_NOTIFICATION_BODY = 16 * 1024  # bytes; Apple's and Meta's are well under 4 kB
CLOCK_LEEWAY = 60  # seconds of clock skew tolerated between us and the provider
_STATUS_KEY_LABEL = b"linkgate/provider-deletion-status"
_ENDED = frozenset({Status.REVOKED, Status.SUPPRESSED})  # no tokens left to forget

# One JWKS cache per outbound OAuth client, i.e. per running gateway.
_KEYS: weakref.WeakKeyDictionary[httpx.AsyncClient, JWKSCache] = weakref.WeakKeyDictionary()


class NotificationRefused(LinkgateError):
    problem = "provider-notification-refused"
    status = 401
    title = "Provider notification not verified"


class NotificationUnreadable(BadRequest):
    problem = "provider-notification-unreadable"
    title = "Provider notification not understood"


@dataclass(frozen=True, slots=True)
class Handled:
    """What one notification did: the connections it ended, erased or updated."""

    ended: int = 0
    erased: int = 0
    updated: int = 0


# -- routes ------------------------------------------------------------------------


async def notification(request: Request) -> JSONResponse:
    """``POST /providers/{provider}/notifications``: Apple's events, Meta's deauthorize."""
    await _receive(request, deletion=False)
    return JSONResponse({"received": True})


async def data_deletion(request: Request) -> JSONResponse:
    """``POST /providers/{provider}/data-deletion``: Meta's Data Deletion Request callback."""
    handled = await _receive(request, deletion=True)
    runtime = runtime_of(request)
    code = secrets.token_hex(8).upper()  # alphanumeric, as Meta asks
    status = _seal_status(
        runtime,
        {"code": code, "at": int(time.time()), "ended": handled.ended, "erased": handled.erased},
    )
    provider = request.path_params["provider"]
    base = runtime.settings.public_url.rstrip("/")
    url = f"{base}/providers/{provider}/data-deletion/{status}"
    return JSONResponse({"url": url, "confirmation_code": code})


async def deletion_status(request: Request) -> HTMLResponse:
    """``GET /providers/{provider}/data-deletion/{status}``: what a deletion request did."""
    runtime = runtime_of(request)
    _notifications(runtime, request.path_params["provider"], deletion=True)
    status = _open_status(runtime, request.path_params["status"])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(status["at"])))
    erased = int(status["erased"])
    done = (
        f"{erased} linked account connection(s) were deleted, with their access tokens, "
        "Page tokens and the identity details kept for them."
        if erased
        else "Nothing was held for this account, so there was nothing to delete."
    )
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>Data deletion request</title></head><body>"
        "<h1>Data deletion request</h1>"
        f"<p>Confirmation code: <strong>{html.escape(str(status['code']))}</strong></p>"
        f"<p>Received {html.escape(when)}. Status: completed.</p>"
        f"<p>{html.escape(done)}</p>"
        "<p>The access log keeps a record that this deletion happened, without the "
        "deleted details.</p></body></html>"
    )
    return HTMLResponse(body)


# -- verifying and reading ---------------------------------------------------------


def _notifications(runtime: Runtime, name: str, *, deletion: bool) -> ConfiguredProvider:
    configured = runtime.providers.get(name)
    declared = configured.provider.notifications if configured else None
    if configured is None or declared is None or (deletion and not declared.deletion_callback):
        raise NotFound(f"provider {name!r} sends no such notifications here")
    return configured


async def _receive(request: Request, *, deletion: bool) -> Handled:
    runtime = runtime_of(request)
    name = request.path_params["provider"]
    configured = _notifications(runtime, name, deletion=deletion)
    declared = configured.provider.notifications
    assert declared is not None  # checked by _notifications
    body = await request.body()
    if len(body) > MAX_NOTIFICATION_BODY:
        raise NotificationUnreadable("the notification is too large")
    message = _message(body, declared)
    try:
        payload = await _verified(runtime, configured, declared, message)
    except NotificationRefused as exc:
        log.warning("provider_notification.refused", provider=name, reason=exc.detail)
        raise
    try:
        read = declared.read(payload, deletion)
    except (ValueError, TypeError) as exc:
        log.warning("provider_notification.unreadable", provider=name, reason=str(exc))
        raise NotificationUnreadable(f"the notification is not understood: {exc}") from None
    connections = await runtime.connections.by_account(name, configured.issuer, read.subject)
    now = time.time()
    if (
        read.issued_at + declared.max_age + CLOCK_LEEWAY < now
        or read.issued_at > now + CLOCK_LEEWAY
    ):
        refused = NotificationRefused("the notification is too old (or from the future)")
        for connection in connections:
            await _audit_refusal(runtime, connection, read, refused)
        log.warning("provider_notification.refused", provider=name, reason=refused.detail)
        raise refused
    handled = Handled()
    for connection in connections:
        handled = await _act(runtime, connection, read, handled)
    log.info(
        "provider_notification.handled",
        provider=name,
        kind=read.kind,
        connections=len(connections),
        ended=handled.ended,
        erased=handled.erased,
        updated=handled.updated,
    )
    return handled


def _message(body: bytes, declared: Notifications) -> str:
    """The signed message out of the body: a JSON field (Apple) or a form field (Meta)."""
    try:
        text = body.decode("utf-8")
        if declared.signed_by is NotificationSigner.PROVIDER_KEYS:
            parsed: Any = json.loads(text)
            value = parsed.get(declared.message_field) if isinstance(parsed, dict) else None
        else:
            values = parse_qs(text, max_num_fields=20).get(declared.message_field, [])
            value = values[0] if len(values) == 1 else None
    except (ValueError, RecursionError):  # RecursionError: JSON nested past the parser's stack
        value = None
    if not isinstance(value, str) or not value:
        raise NotificationUnreadable(f"the body carries no {declared.message_field!r}")
    return value


async def _verified(
    runtime: Runtime, configured: ConfiguredProvider, declared: Notifications, message: str
) -> JSONObject:
    """The message's payload once its signature (and, for a JWT, iss/aud/exp) checks out."""
    client_id = configured.client.client_id
    if declared.signed_by is NotificationSigner.CLIENT_SECRET:
        if declared.open_signed is None:
            raise NotificationRefused("the provider declares no way to open its messages")
        try:
            return declared.open_signed(message, configured.client.client_secret)
        except (ValueError, TypeError):
            raise NotificationRefused("the signature does not match") from None
    endpoints = configured.provider.oauth.endpoints
    if not endpoints.jwks_url or not endpoints.issuer:
        raise NotificationRefused("the provider publishes no keys to verify with")
    keys = _KEYS.setdefault(runtime.oauth_http, JWKSCache(runtime.oauth_http))
    try:
        claims = _decode(message, await keys.get(endpoints.jwks_url), declared)
    except _UnknownKey:
        # A rotated key (OIDC Core §10.1.1): refetch once, rate-limited by the cache.
        try:
            claims = _decode(message, await keys.get(endpoints.jwks_url, refresh=True), declared)
        except _UnknownKey:
            raise NotificationRefused("the signing key is not one the provider publishes") from None
    if claims.get("iss") != endpoints.issuer:
        raise NotificationRefused("iss is not the provider")
    audience = claims.get("aud")
    if client_id not in ([audience] if isinstance(audience, str) else audience or []):
        raise NotificationRefused("aud is not this client")
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires + CLOCK_LEEWAY < time.time():
        raise NotificationRefused("the notification has expired")
    return claims


class _UnknownKey(Exception):
    pass


def _decode(message: str, jwks: JSONObject, declared: Notifications) -> dict[str, Any]:
    if "none" in declared.algorithms:  # RFC 8725 §3.1
        raise NotificationRefused("the 'none' algorithm is never accepted")
    try:
        key_set = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
        decoded = jwt.decode(message, key_set, algorithms=list(declared.algorithms))
    except JoseError as exc:
        if type(exc).__name__ in {"InvalidKeyIdError", "MissingKeyError"}:
            raise _UnknownKey from None
        raise NotificationRefused(f"the signature is not valid ({exc.error})") from None
    except (ValueError, TypeError):
        raise NotificationRefused("not a well-formed JWT") from None
    return dict(decoded.claims)


# -- acting --------------------------------------------------------------------------


async def _act(
    runtime: Runtime, connection: Connection, read: ProviderNotification, handled: Handled
) -> Handled:
    store = runtime.connections
    happened = read.event_time if read.event_time is not None else read.issued_at
    if happened + CLOCK_LEEWAY < connection.linked_at.timestamp():
        # About a grant this account had before it was linked again: a late
        # redelivery or a replay must not end (or erase) the new one.
        return handled
    reason = f"ended at the provider ({read.kind})"
    # Each change commits with its audit event (the audit outbox; module docstring).
    if read.event is NotificationEvent.GRANT_ENDED:
        if connection.status in _ENDED:
            return handled  # a replay, or ended here first: nothing left to end
        event = _draft(connection, Action.CONNECTION_REVOKED_BY_PROVIDER, read)
        await store.end_grant(connection.id, status=Status.REVOKED, reason=reason, audit_as=event)
        return Handled(handled.ended + 1, handled.erased, handled.updated)
    if read.event is NotificationEvent.ACCOUNT_DELETED:
        event = _draft(connection, Action.CONNECTION_ERASED_BY_PROVIDER, read)
        if not await store.erase(connection.id, reason=reason, audit_as=event):
            return handled  # erased meanwhile by a duplicate delivery
        return Handled(handled.ended, handled.erased + 1, handled.updated)
    kept = await store.claims.get(connection.id)
    if kept is None:
        return handled  # nothing kept for this connection
    applied = kept.get(CLAIMS_CHANGED_AT)
    if isinstance(applied, int | float) and not isinstance(applied, bool) and happened <= applied:
        return handled  # a replay, or older than the change already applied
    if all(kept.get(k) == v for k, v in read.claims.items()):
        # Already so: only remember when, so an older opposite change stays out.
        await store.claims.keep(connection.id, {**kept, CLAIMS_CHANGED_AT: happened})
        return handled
    await store.claims.keep(
        connection.id,
        {**kept, **read.claims, CLAIMS_CHANGED_AT: happened},
        audit_as=_draft(connection, Action.ACCOUNT_CLAIMS_UPDATED, read),
    )
    return Handled(handled.ended, handled.erased, handled.updated + 1)


def _draft(
    connection: Connection,
    action: Action,
    read: ProviderNotification,
    refused: LinkgateError | None = None,
) -> EventDraft:
    return EventDraft(
        customer_id=connection.customer_id,
        action=action,
        outcome=Outcome.DENIED if refused else Outcome.ALLOWED,
        problem_type=refused.type_uri if refused else None,
        caller_id=f"provider:{connection.provider}",
        connection_id=connection.id,
        provider=connection.provider,
        resource=read.kind,
        categories=("user.contact.email",) if read.claims else (),
        trace_id=current_trace_id(),
    )


async def _audit_refusal(
    runtime: Runtime, connection: Connection, read: ProviderNotification, refused: LinkgateError
) -> None:
    """A refusal changes nothing, so its event is simply recorded; ``AuditUnavailable``
    (503) when it cannot be."""
    draft = _draft(connection, Action.PROVIDER_NOTIFICATION_REFUSED, read, refused)
    try:
        await runtime.audit.record(draft)
    except audit.AuditUnavailable as exc:
        raise AuditUnavailable(str(exc)) from None


# -- the deletion status, signed instead of stored -----------------------------------


def _status_key(runtime: Runtime) -> bytes:
    secret = runtime.settings.secret_key.encode()
    return hmac.new(secret, _STATUS_KEY_LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _seal_status(runtime: Runtime, status: dict[str, Any]) -> str:
    """The status as ``<payload>.<mac>``: counts and a time, nothing about the person."""
    payload = _b64(json.dumps(status, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(_status_key(runtime), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def _open_status(runtime: Runtime, sealed: str) -> dict[str, Any]:
    missing = NotFound("no such deletion request")
    payload, _, mac = sealed.partition(".")
    expected = _b64(hmac.new(_status_key(runtime), payload.encode(), hashlib.sha256).digest())
    if not mac or not hmac.compare_digest(expected, mac):
        raise missing
    try:
        status = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        raise missing from None
    if not isinstance(status, dict) or not {"code", "at", "ended", "erased"} <= status.keys():
        raise missing
    return status
