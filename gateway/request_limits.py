"""Abuse limits on inbound requests: size of headers and body, and rate per credential.

Two pure ASGI middlewares, outermost in the app, so an oversized or
over-the-rate request costs no database round trip:

* :class:`RequestSizeLimit`: headers over ``max_header_bytes`` are a 431
  (RFC 6585 §5); a body over ``max_body_bytes`` is a 413, refused from its
  ``Content-Length`` before it is read, or once a chunked body passes the limit
  (only such bodies are counted as they arrive). Two Authorization headers are
  a 400: which credential counts would be ambiguous. A URL carrying a NUL (``%00``)
  is a 400: no identifier or value here holds one, and PostgreSQL's text cannot
  store one (it would refuse the statement, which reads as an outage).
* :class:`CredentialRateLimit`: a token bucket per bearer credential (service
  and auditor keys), refilled at ``rate`` per second up to ``burst``; an empty
  bucket is a 429 with ``Retry-After`` (RFC 6585 §4, RFC 9110 §10.2.3) saying
  when the next request will be accepted. Buckets live in this process, so N
  replicas allow N times the rate; keys are held as SHA-256 digests, and the
  least recently seen buckets are forgotten past ``max_tracked`` credentials
  (:mod:`gateway.token_buckets`).
  Each 429 is told to ``refusals``, which audits them per caller and window
  (:mod:`gateway.rate_limit_audit`); a request within its rate costs nothing more.

Both answer with problem+json from :mod:`gateway.errors`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Protocol

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import Settings
from gateway.errors import (
    BadRequest,
    InvalidParameter,
    LinkgateError,
    RateLimited,
    RequestHeadersTooLarge,
    RequestTooLarge,
)
from gateway.problems import instance, problem_response
from gateway.token_buckets import DEFAULT_MAX_TRACKED, TokenBucket, TokenBuckets

__all__ = [
    "DEFAULT_MAX_TRACKED",
    "CredentialRateLimit",
    "RefusalLog",
    "RequestSizeLimit",
    "TokenBucket",
    "request_limits",
]


class RefusalLog(Protocol):
    """Told of each 429 (:class:`gateway.rate_limit_audit.RateLimitAudit` audits them)."""

    def note(self, digest: bytes, scope: Scope) -> None: ...


# HTTP versions whose request body is framed only by Content-Length or
# Transfer-Encoding; an HTTP/2 or 3 body may come with neither, so it is counted.
_FRAMED_BY_HEADERS = frozenset({"1.0", "1.1"})


class _BodyTooLarge(Exception):
    pass


async def _refuse(error: LinkgateError, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem_response(
        error.to_problem(instance(scope.get("path", ""))), error.status, error.headers
    )
    await response(scope, receive, send)


class RequestSizeLimit:
    def __init__(self, app: ASGIApp, *, max_header_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            nul = InvalidParameter("the URL carries a NUL character (%00), which no value may hold")
            await _refuse(nul, scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        size = 0
        declared: bytes | None = None
        chunked = False
        credentials = 0
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"authorization":
                credentials += 1
        if size > self.max_header_bytes:
            await _refuse(RequestHeadersTooLarge(), scope, receive, send)
            return
        if credentials > 1:
            # Authorization is not a list field (RFC 9110 §5.3, §11.6.2): with two,
            # a proxy and this gateway could each act on a different credential.
            await _refuse(BadRequest("send one Authorization header"), scope, receive, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(
                RequestTooLarge(f"at most {self.max_body_bytes} bytes"), scope, receive, send
            )
            return
        if (
            not chunked
            and (declared is None or declared.isdigit())
            and scope.get("http_version") in _FRAMED_BY_HEADERS
        ):
            # The server reads exactly the declared bytes, or none without a
            # Content-Length (RFC 9112 §6.3): nothing more to count.
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _BodyTooLarge:
            if started:
                raise  # too late for a clean answer; the server drops the connection
            await _refuse(
                RequestTooLarge(f"at most {self.max_body_bytes} bytes"), scope, receive, send
            )


class CredentialRateLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        rate: float,
        burst: int,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.app = app
        self.refusals = refusals
        self._buckets: TokenBuckets[bytes] = TokenBuckets(
            rate=rate, burst=burst, max_tracked=max_tracked, clock=clock
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        credential = _bearer(scope) if scope["type"] == "http" else None
        if credential is None:
            await self.app(scope, receive, send)
            return
        digest = hashlib.sha256(credential).digest()
        wait = self._buckets.take(digest)
        if wait > 0:
            if self.refusals is not None:
                self.refusals.note(digest, scope)  # counted; audited per window, not per 429
            retry_after = str(max(1, math.ceil(wait)))
            error = RateLimited(headers={"Retry-After": retry_after})
            await _refuse(error, scope, receive, send)
            return
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> bytes | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credential = value.partition(b" ")
            if scheme.lower() == b"bearer" and credential.strip():
                return credential.strip()
    return None


def request_limits(settings: Settings, *, refusals: RefusalLog | None = None) -> list[Middleware]:
    """The limits ``settings`` asks for, outermost first; ``refusals`` is told of each 429."""
    limits = [
        Middleware(
            RequestSizeLimit,
            max_header_bytes=settings.max_request_headers,
            max_body_bytes=settings.max_request_body,
        )
    ]
    if settings.rate_limit > 0:
        limits.append(
            Middleware(
                CredentialRateLimit,
                rate=settings.rate_limit,
                burst=settings.rate_limit_burst,
                refusals=refusals,
            )
        )
    return limits
