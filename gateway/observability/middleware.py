"""Pure ASGI middleware giving every HTTP request a server span and a trace id.

Wrap the whole Starlette application with it (outermost). Starlette's
``ServerErrorMiddleware`` always sits outside ``Starlette(middleware=[...])``
and renders the 500 for an unhandled exception itself; only from outside it
does that response pass through here, get the trace headers, and get rendered
while the request's span and log context are still current.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from contextvars import ContextVar

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.observability.logs import CachedLogger
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.redaction import MASK, is_secret_key, redact_text

__all__ = ["TracingMiddleware", "current_trace_id", "name_server_span"]

_PROPAGATOR = TraceContextTextMapPropagator()
_LOG = CachedLogger("gateway.http")  # the access line: one per request

# RFC 9110 §9 methods; anything else is reported as "_OTHER" so that a
# client cannot create unbounded span names (OpenTelemetry HTTP conventions).
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
# A caller's X-Request-Id is kept only if it is short and plain, because it is
# written into every log line of the request.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,128}")


class _Serving:
    """The request served in this context (see `name_server_span`)."""

    __slots__ = ("root_path", "route", "scope", "span", "span_name")

    def __init__(self, span: trace.Span, span_name: str, scope: Scope, root_path: str) -> None:
        self.span = span
        self.span_name = span_name  # by method
        self.scope = scope
        self.root_path = root_path  # as the request arrived, before any mount
        # The redacted route once the span has been named after it, so that
        # the end of the request does not work it out again.
        self.route: str | None = None


_SERVING: ContextVar[_Serving | None] = ContextVar("linkgate_serving", default=None)
# The only request headers read here: W3C Trace Context's two and X-Request-Id.
# ASGI hands header names over lower-cased, so the rest are skipped undecoded.
_READ_HEADERS = frozenset({b"traceparent", b"tracestate", b"x-request-id"})


def current_trace_id() -> str:
    """The current trace id as 32 lowercase hex digits (all zeros outside a trace)."""
    return format_trace_id(trace.get_current_span().get_span_context().trace_id)


def name_server_span(span: trace.Span) -> None:
    """Name *span* after its route if it is this request's server span and the route is known.

    The server span is named by method when it starts and after its route
    when it ends. An audit event is written in between, while the endpoint
    runs, and summarises the open span (`TraceSummaryRecorder.root_for`); by
    then Starlette's router has set ``scope["route"]``, so the span can carry
    the route already, as the HTTP semantic conventions ask (``http.route``
    set as soon as it is known).
    """
    serving = _SERVING.get()
    if serving is None or serving.span is not span or serving.route is not None:
        return
    scope = serving.scope
    template = _route_template(scope, serving.root_path)
    if template is not None:
        route = serving.route = _redact_path(template, scope.get("path_params", {}))
        span.update_name(f"{serving.span_name} {route}")
        span.set_attribute("http.route", route)


def _request_id(headers: Mapping[str, str]) -> str:
    offered = headers.get("x-request-id", "")
    # 128 random bits as 32 hex digits, as uuid4().hex looks; uuid4 builds and
    # checks a UUID object first (about 8x the instructions).
    return offered if _REQUEST_ID.fullmatch(offered) else os.urandom(16).hex()


def _route_template(scope: Scope, root_path: str) -> str | None:
    """The matched route's template, prefixed by the paths of enclosing mounts."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return None
    mounted: str = scope.get("root_path", "")
    prefix = mounted[len(root_path) :] if mounted.startswith(root_path) else ""
    if isinstance(route, Mount):
        # The mount itself handled the request (static files, a sub-app that
        # is not a router): its own path is already in the prefix.
        return prefix + "/{path}"
    return prefix + template


def _redact_path(path: str, path_params: Mapping[str, object]) -> str:
    """*path* with the values of secret-named path parameters masked.

    ``/connect/{token}`` carries a connect-session token in the path itself.
    """
    for name, value in path_params.items():
        text = str(value)
        if text and is_secret_key(name):
            path = path.replace(text, MASK)
    return redact_text(path)


def _trace_headers(
    context: trace.SpanContext, trace_id: str, request_id: str
) -> list[tuple[bytes, bytes]]:
    """The response's trace headers: W3C Trace Context's two, X-Trace-Id and X-Request-Id.

    ``traceparent`` is written as `TraceContextTextMapPropagator.inject` writes
    it (W3C Trace Context §3.2), from the trace id already in hex, without
    looking the span up again in a context.
    """
    traceparent = f"00-{trace_id}-{context.span_id:016x}-{context.trace_flags:02x}"
    headers = [(b"traceparent", traceparent.encode("latin-1"))]
    if context.trace_state:
        headers.append((b"tracestate", context.trace_state.to_header().encode("latin-1")))
    headers.append((b"x-trace-id", trace_id.encode("latin-1")))
    headers.append((b"x-request-id", request_id.encode("latin-1")))
    return headers


class TracingMiddleware:
    """Start a server span per HTTP request and tie logs and responses to it.

    Continues a W3C ``traceparent`` sent by the caller (W3C Trace Context §3),
    binds ``trace_id`` and ``request_id`` into structlog's context for the
    request, adds ``traceparent``, ``X-Trace-Id`` and ``X-Request-Id`` to every
    response and logs one ``http.request`` event when the request is over.
    Paths in spans and logs never include the query string.

    The span's end is also where ``http.server.request.duration`` is recorded
    (`GatewayMetrics.server_request`), by route template, never by path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: trace.TracerProvider,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.app = app
        self._tracer = tracer_provider.get_tracer(__name__)
        self._metrics = metrics or GatewayMetrics.disabled()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _READ_HEADERS
        }
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "_OTHER"
        root_path: str = scope.get("root_path", "")
        request_id = _request_id(headers)
        # Named by method until the route is known; the path is not used yet
        # because it may carry a secret path parameter.
        span_name = "HTTP" if method == "_OTHER" else method
        span = self._tracer.start_span(
            span_name,
            context=_PROPAGATOR.extract(headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.scheme": scope.get("scheme", "http"),
            },
        )
        started_context = span.get_span_context()
        trace_id = format_trace_id(started_context.trace_id)
        trace_headers = _trace_headers(started_context, trace_id, request_id)
        span_context = trace.set_span_in_context(span)
        # Stays 500 if the application raises before it responds.
        status_code = 500
        # The class of an exception that ended the request (OpenTelemetry's
        # error.type), a cancellation when the client went away included.
        failure: str | None = None

        async def send_with_trace(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *trace_headers]}
            await send(message)

        serving = _Serving(span, span_name, scope, root_path)
        serving_token = _SERVING.set(serving)
        context_tokens = structlog.contextvars.bind_contextvars(
            trace_id=trace_id, request_id=request_id
        )
        # What trace.use_span does, without its generator context manager.
        span_token = otel_context.attach(span_context)
        try:
            await self.app(scope, receive, send_with_trace)
        except Exception as exc:
            # An exception event and "Type: message" status, as use_span
            # records them; the exporter redacts both.
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            failure = type(exc).__name__
            raise
        except BaseException as exc:  # cancelled: the server stopped or the client is gone
            failure = type(exc).__name__
            raise
        finally:
            otel_context.detach(span_token)
            path_params: Mapping[str, object] = scope.get("path_params", {})
            path = _redact_path(scope["path"], path_params)
            attributes: dict[str, str | int] = {
                "url.path": path,
                "http.response.status_code": status_code,
            }
            route = serving.route  # set if an audit event named the span already
            if route is None:
                template = _route_template(scope, root_path)
                route = None if template is None else _redact_path(template, path_params)
                span.update_name(f"{span_name} {route or path}")
                if route is not None:
                    attributes["http.route"] = route
            if status_code >= 500:
                # Server errors only: a 4xx is the client's, not the span's,
                # failure (OpenTelemetry HTTP semantic conventions).
                attributes["error.type"] = str(status_code)
                span.set_status(Status(StatusCode.ERROR))
            span.set_attributes(attributes)  # one lock and validation pass, not one per key
            span.end()
            elapsed = time.perf_counter() - started
            if failure is None and status_code >= 500:
                failure = str(status_code)
            self._metrics.server_request(method, route, status_code, failure, elapsed)
            access = _LOG.bound()
            log = access.error if status_code >= 500 else access.info
            log(
                "http.request",
                method=method,
                path=path,
                route=route,
                status=status_code,
                duration_ms=round(elapsed * 1000, 3),
            )
            structlog.contextvars.reset_contextvars(**context_tokens)
            _SERVING.reset(serving_token)
