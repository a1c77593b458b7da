"""Every error a Linkgate caller can see, and how it becomes problem+json.

The tree::

    LinkgateError                        500  internal
    ├── ConfigError                      (start-up only, never served)
    ├── BadRequest                       400  bad-request
    │   ├── InvalidParameter             400  invalid-parameter
    │   ├── InvalidCursor                400  invalid-cursor
    │   └── UnknownResource              404  unknown-resource
    ├── Unauthenticated                  401  unauthenticated
    ├── Forbidden                        403  forbidden
    │   └── PurposeNotAllowed            403  purpose-not-allowed
    ├── NotFound                         404  not-found
    ├── Conflict                         409  conflict
    │   ├── ConnectionNeedsReauth        409  connection-needs-reauth
    │   ├── ConnectionRevoked            409  connection-revoked
    │   ├── ConnectionSuppressed         409  connection-suppressed
    │   └── AuditChainBroken             409  audit-chain-broken
    ├── ConnectFlowError                 400  connect-flow (shown as a page, not JSON)
    ├── UpstreamError                    502  upstream
    │   ├── UpstreamMalformed            502  upstream-malformed
    │   ├── UpstreamRateLimited          429  upstream-rate-limited
    │   └── UpstreamUnavailable          503  upstream-unavailable
    ├── RequestTooLarge                  413  request-too-large
    ├── RequestHeadersTooLarge           431  request-headers-too-large
    ├── RateLimited                      429  rate-limited
    ├── AuditUnavailable                 503  audit-unavailable
    ├── DatabaseUnavailable              503  database-unavailable
    └── SubjectControlsUnavailable       503  subject-controls-unavailable

Foreign exceptions (httpx, SQLAlchemy, authlib, joserfc) are translated where
they are caught; none of them reaches a caller. Problem types are stable URIs
under ``PROBLEM_BASE``: other systems switch on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

PROBLEM_BASE = "https://linkgate.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class LinkgateError(Exception):
    """Root of every error Linkgate raises on purpose."""

    problem: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        refused_customer: str | None = None,
        **extra: Any,
    ):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        # A refusal to touch this customer's data: the problem handler records it
        # in that customer's audit log (never in the response body).
        self.refused_customer = refused_customer
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.problem

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """RFC 9457 §3.1 members, plus extension members from ``extra``."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class ConfigError(LinkgateError):
    problem = "config"
    title = "Invalid configuration"

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class BadRequest(LinkgateError):
    problem = "bad-request"
    status = 400
    title = "Bad request"


class InvalidParameter(BadRequest):
    problem = "invalid-parameter"
    title = "Invalid parameter"


class InvalidCursor(BadRequest):
    problem = "invalid-cursor"
    title = "Invalid cursor"


class UnknownResource(BadRequest):
    problem = "unknown-resource"
    status = 404
    title = "Unknown resource"


class Unauthenticated(LinkgateError):
    problem = "unauthenticated"
    status = 401
    title = "Missing or invalid credentials"

    def __init__(self, detail: str = "", **extra: Any):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="linkgate"'}, **extra)


class Forbidden(LinkgateError):
    problem = "forbidden"
    status = 403
    title = "Not allowed"


class PurposeNotAllowed(Forbidden):
    problem = "purpose-not-allowed"
    title = "Purpose not allowed"


class NotFound(LinkgateError):
    problem = "not-found"
    status = 404
    title = "Not found"


class Conflict(LinkgateError):
    problem = "conflict"
    status = 409
    title = "Conflict"


class ConnectionNeedsReauth(Conflict):
    problem = "connection-needs-reauth"
    title = "The connection needs the customer to consent again"


class ConnectionRevoked(Conflict):
    problem = "connection-revoked"
    title = "The connection was disconnected"


class ConnectionSuppressed(Conflict):
    problem = "connection-suppressed"
    title = "The connection is suppressed (consent withdrawn)"


class AuditChainBroken(Conflict):
    """A stored audit event does not decode: the log was altered (run verify to locate it)."""

    problem = "audit-chain-broken"
    title = "The audit log does not verify"


class ConnectFlowError(LinkgateError):
    """A failed OAuth round trip; rendered as a page for the admin's browser."""

    problem = "connect-flow"
    status = 400
    title = "The account could not be linked"


class UpstreamError(LinkgateError):
    problem = "upstream"
    status = 502
    title = "The provider answered with an error"


class UpstreamMalformed(UpstreamError):
    problem = "upstream-malformed"
    title = "The provider's answer could not be understood"


class UpstreamRateLimited(UpstreamError):
    problem = "upstream-rate-limited"
    status = 429
    title = "The provider's rate limit is exhausted"


class UpstreamUnavailable(UpstreamError):
    problem = "upstream-unavailable"
    status = 503
    title = "The provider is unavailable"


class RequestTooLarge(LinkgateError):
    problem = "request-too-large"
    status = 413
    title = "The request body is larger than this gateway accepts"


class RequestHeadersTooLarge(LinkgateError):
    """RFC 6585 §5."""

    problem = "request-headers-too-large"
    status = 431
    title = "The request's headers are larger than this gateway accepts"


class RateLimited(LinkgateError):
    """This caller's key sent more requests than its rate allows (RFC 6585 §4)."""

    problem = "rate-limited"
    status = 429
    title = "Too many requests with this key; retry after the pause given"


class AuditUnavailable(LinkgateError):
    problem = "audit-unavailable"
    status = 503
    title = "The audit log cannot be written; no data is released"


class DatabaseUnavailable(LinkgateError):
    """The database refused or dropped the connection; nothing was changed."""

    problem = "database-unavailable"
    status = 503
    title = "The gateway's database is unavailable"

    def __init__(self, detail: str = "", **extra: Any):
        super().__init__(detail, headers={"Retry-After": "5"}, **extra)


class SubjectControlsUnavailable(LinkgateError):
    problem = "subject-controls-unavailable"
    status = 503
    title = "Consents and suppressions cannot be read; no data is released"
