"""Client spans for the gateway's outbound HTTP calls.

Named and shaped after the OpenTelemetry HTTP client semantic conventions:
the span name is the method, the kind CLIENT, and the attributes
``http.request.method``, ``server.address``, ``server.port``, ``url.full``,
``http.response.status_code``, ``http.request.resend_count`` (the attempt's
number minus one, set only on a retry) and ``error.type`` (the status code
as a string for a 4xx/5xx answer, the exception's class name when no answer
came). Being children of the request's server span, they land in the
request's trace summary and so in its audit event.

``url.full`` is scrubbed here, when the span starts, not only at the export
boundary: the trace summary keeps attributes in memory, and Facebook and
Instagram carry ``access_token``, ``client_secret`` and ``code`` in the query
string. User information becomes ``REDACTED:REDACTED`` and the values of
secret-named query parameters ``REDACTED``, keys kept, as the URL semantic
conventions ask.

Each attempt's duration is also recorded, as ``http.client.request.duration``
(`GatewayMetrics.client_request`), with the span's method, server address and
port, provider, status code and error type: never its URL.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from urllib.parse import unquote_plus

import httpx
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from gateway.observability.metrics import GatewayMetrics
from gateway.observability.redaction import KnownClean, is_secret_key, redact_text

__all__ = [
    "SENSITIVE_QUERY_KEYS",
    "ClientCall",
    "TracedTransport",
    "client_span",
    "scrubbed_url",
]

# The query keys the URL semantic conventions name as sensitive (matched
# case-sensitively), on top of every key `is_secret_key` calls a secret.
SENSITIVE_QUERY_KEYS = frozenset({"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"})
_REDACTED = "REDACTED"
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


# URLs already scrubbed and found to hold nothing to scrub: a provider's page
# URL repeats on every call, and checking it once saves the query walk.
_CLEAN_URLS: KnownClean[str] = KnownClean()


def scrubbed_url(url: httpx.URL) -> str:
    """``url`` as ``url.full`` may hold it: no credentials, in the userinfo or the query.

    Plain string work on the URL's own (already encoded) text, without
    re-parsing it: this runs once per upstream attempt on the hot path.
    """
    text = str(url)
    if text in _CLEAN_URLS:
        return text
    scrubbed = _scrubbed(url, text)
    if scrubbed == text:
        _CLEAN_URLS.remember(text)
    return scrubbed


def _scrubbed(url: httpx.URL, text: str) -> str:
    # By shape first (a JWT or a Linkgate key anywhere), then by name, so that a
    # secret-named parameter ends as the conventions' ``name=REDACTED``.
    text = redact_text(text)
    if url.userinfo:
        text = text.replace(url.userinfo.decode("ascii") + "@", "REDACTED:REDACTED@", 1)
    base, question, query = text.partition("?")
    if not question:
        return base
    parts = []
    for part in query.split("&"):
        key, equals, _value = part.partition("=")
        name = unquote_plus(key)
        if equals and (name in SENSITIVE_QUERY_KEYS or is_secret_key(name)):
            part = f"{key}={_REDACTED}"
        parts.append(part)
    return f"{base}?{'&'.join(parts)}"


class ClientCall:
    """The span of one outbound request, told how it ended."""

    __slots__ = ("error_type", "marked", "span", "status_code")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.marked = False
        self.status_code: int | None = None
        self.error_type: str | None = None

    def answered(self, status_code: int) -> None:
        """The response's status; 4xx and 5xx mark the span as failed (client spans)."""
        self.span.set_attribute("http.response.status_code", status_code)
        self.status_code = status_code
        if status_code >= 400:
            self.failed(str(status_code))

    def failed(self, error_type: str) -> None:
        """No usable answer came (a timeout, a refused connection, a body over the cap)."""
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(Status(StatusCode.ERROR))
        self.error_type = error_type
        self.marked = True


class _ClientSpan:
    """The context manager `client_span` returns.

    A class rather than ``@contextmanager`` over ``start_as_current_span``:
    three nested generator context managers per outbound attempt showed in
    profiles, for what is a start, an attach, a detach and an end.
    """

    __slots__ = (
        "_attributes",
        "_call",
        "_metric",
        "_metrics",
        "_name",
        "_started",
        "_token",
        "_tracer",
    )

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        attributes: dict[str, AttributeValue],
        metrics: GatewayMetrics | None,
        metric: tuple[str, str, int | None, str | None],
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._attributes = attributes
        self._metrics = metrics
        self._metric = metric  # method, host, port, provider

    def __enter__(self) -> ClientCall:
        span = self._tracer.start_span(
            self._name, kind=SpanKind.CLIENT, attributes=self._attributes
        )
        self._token = context.attach(trace.set_span_in_context(span))
        self._call = ClientCall(span)
        self._started = time.perf_counter()
        return self._call

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        call = self._call
        try:
            # No exception event and no status description: an exception's
            # message may quote a provider's body.
            if exc_type is not None and not call.marked:
                call.failed(exc_type.__name__)
        finally:
            context.detach(self._token)
            call.span.end()
            metrics = self._metrics
            if metrics is not None and metrics.enabled:
                method, host, port, provider = self._metric
                metrics.client_request(
                    method,
                    host,
                    port,
                    provider,
                    call.status_code,
                    call.error_type,
                    time.perf_counter() - self._started,
                )


def client_span(
    tracer: trace.Tracer,
    method: str,
    url: httpx.URL,
    *,
    resend_count: int = 0,
    attributes: Mapping[str, AttributeValue] | None = None,
    provider: str | None = None,
    metrics: GatewayMetrics | None = None,
) -> AbstractContextManager[ClientCall]:
    """A CLIENT span around one outbound request, current while it runs.

    An exception that leaves the block without `ClientCall.failed` or an
    error status having been recorded sets ``error.type`` to its class name.
    With *metrics*, the request's duration is recorded when the block ends,
    under *provider* when the caller knows it.
    """
    method = method.upper()
    if method not in _KNOWN_METHODS:
        method = "_OTHER"
    span_attributes: dict[str, AttributeValue] = {
        "http.request.method": method,
        "server.address": url.host,
        "url.full": scrubbed_url(url),
        **(attributes or {}),
    }
    if url.port is not None:
        span_attributes["server.port"] = url.port
    if resend_count:
        span_attributes["http.request.resend_count"] = resend_count
    return _ClientSpan(
        tracer,
        "HTTP" if method == "_OTHER" else method,
        span_attributes,
        metrics,
        (method, url.host, url.port, provider),
    )


class TracedTransport(httpx.AsyncBaseTransport):
    """Wrap *transport* so that every request it sends gets a client span.

    For the low-volume OAuth client (token, revocation, JWKS, discovery): the
    span ends when the response headers arrive, which for those small bodies
    is nearly the whole exchange. With *metrics* each request's duration is
    recorded too, without a provider name (the client is shared by all).
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        tracer: trace.Tracer,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._transport = transport
        self._tracer = tracer
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with client_span(self._tracer, request.method, request.url, metrics=self._metrics) as call:
            response = await self._transport.handle_async_request(request)
            call.answered(response.status_code)
            return response

    async def aclose(self) -> None:
        await self._transport.aclose()
