"""The Starlette application: routes, middleware, error handlers, lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway import provider_notifications
from gateway.api import audit as audit_api
from gateway.api import connect_sessions, connections, consents, health, suppressions
from gateway.api import processor_requests as processor_requests_api
from gateway.audit_jobs import audit_jobs
from gateway.config import Settings
from gateway.errors import LinkgateError
from gateway.observability import (
    GatewayMetrics,
    TraceSummaryRecorder,
    TracingMiddleware,
    configure_metrics,
    configure_tracing,
)
from gateway.problems import database_error, http_exception, linkgate_error, unexpected_error
from gateway.processor_requests.jobs import processor_jobs
from gateway.rate_limit_audit import RateLimitAudit
from gateway.records import route as records_route
from gateway.request_limits import request_limits
from gateway.runtime import open_runtime
from gateway.upstream import RetryPolicy
from gateway.web import connect as connect_pages
from gateway.web.console.routes import ROUTES as console_routes
from gateway.web.console.sign_in_throttle import SignInThrottle
from gateway.web.error_pages import ErrorPagesMiddleware
from gateway.web.security_headers import SecurityHeadersMiddleware

SERVICE_NAME = "linkgate"


def create_app(
    settings: Settings,
    *,
    oauth_transport: httpx.AsyncBaseTransport | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    upstream_retry: RetryPolicy | None = None,
    tracer_provider: TracerProvider | None = None,
    metrics: GatewayMetrics | None = None,
) -> ASGIApp:
    """Build the gateway. Tests pass a transport to stand in for remote providers.

    Tests pass *metrics* of their own (on an SDK provider with an in-memory
    reader) and shut them down themselves; otherwise metrics are exported
    when ``otlp_endpoint`` is set and shut down (flushed) when the app's
    lifespan ends.
    """
    # Each audit event carries a compact summary of its request's trace; the
    # same recorder decides which traces are exported.
    provider: trace.TracerProvider
    if tracer_provider is None:
        tracing = configure_tracing(
            service_name=SERVICE_NAME,
            otlp_endpoint=settings.otlp_endpoint or None,
            export_ratio=settings.trace_export_ratio,
        )
        provider, trace_summaries = tracing.provider, tracing.summaries
    else:  # the caller's SDK provider (tests) exports through processors of its own
        trace_summaries = TraceSummaryRecorder()
        tracer_provider.add_span_processor(trace_summaries)
        provider = tracer_provider
    own_metrics = metrics is None
    if metrics is None:
        metrics = configure_metrics(
            service_name=SERVICE_NAME,
            otlp_endpoint=settings.otlp_endpoint or None,
            export_interval=settings.metrics_export_interval,
        )
    instruments = metrics  # narrowed, for the lifespan below

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        try:
            async with (
                open_runtime(
                    settings,
                    oauth_transport=oauth_transport,
                    upstream_transport=upstream_transport,
                    upstream_retry=upstream_retry,
                    trace_summaries=trace_summaries,
                    tracer_provider=provider,
                    metrics=instruments,
                ) as runtime,
                audit_jobs(runtime.audit_store, settings),
                processor_jobs(runtime) as jobs,
                # Last in, first out: its final windows are written before the writer stops.
                refusals.running(runtime) if refusals is not None else contextlib.nullcontext(),
            ):
                yield {
                    "runtime": runtime,
                    "processor_jobs": jobs,
                    "sign_in_throttle": sign_in_throttle,
                }
        finally:
            if own_metrics:
                # After the runtime: the audit writer's last batches are in the final
                # export. A blocking call, once, when nothing is served any more.
                instruments.shutdown()

    # Console sign-in attempts per client address and per key prefix, in this process.
    sign_in_throttle = SignInThrottle()

    routes = [
        # First: the router tries routes in order, and nearly every request is a
        # records read. No other route matches its paths, so the order changes
        # nothing but the regular expressions tried before it.
        Route(
            "/v1/connections/{connection_id}/records/{resource}",
            records_route.read_records,
            methods=["GET"],
        ),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/openapi.json", health.openapi, methods=["GET"]),
        Route("/v1/connect-sessions", connect_sessions.create_connect_session, methods=["POST"]),
        Route("/v1/connections", connections.list_connections, methods=["GET"]),
        Route("/v1/customers/{customer_id}/consents", consents.record_consent, methods=["PUT"]),
        Route(
            "/v1/customers/{customer_id}/consents", consents.withdraw_consent, methods=["DELETE"]
        ),
        Route(
            "/v1/customers/{customer_id}/suppressions",
            suppressions.list_suppressions,
            methods=["GET"],
        ),
        Route("/v1/connections/{connection_id}", connections.get_connection, methods=["GET"]),
        Route("/v1/connections/{connection_id}", connections.delete_connection, methods=["DELETE"]),
        Route("/v1/audit/events", audit_api.search_events, methods=["GET"]),
        Route("/v1/audit/events/{customer_id}/{seq}", audit_api.get_event, methods=["GET"]),
        Route("/v1/audit/verify", audit_api.verify, methods=["GET"]),
        Route("/v1/audit/disclosures", audit_api.disclosures, methods=["GET"]),
        Route("/v1/processor-requests", processor_requests_api.create_request, methods=["POST"]),
        Route("/v1/processor-requests", processor_requests_api.list_requests, methods=["GET"]),
        Route(
            "/v1/processor-requests/{request_id}",
            processor_requests_api.get_request,
            methods=["GET"],
        ),
        Route(
            "/v1/processor-requests/{request_id}/verify",
            processor_requests_api.verify_request,
            methods=["POST"],
        ),
        Route(
            "/v1/processor-requests/{request_id}/result",
            processor_requests_api.get_result,
            methods=["GET"],
        ),
        Route("/connect/{token}", connect_pages.portal, methods=["GET"]),
        Route("/connect/{token}/{provider}", connect_pages.start, methods=["GET"]),
        Route(
            "/connect/{token}/connections/{connection_id}/disconnect",
            connect_pages.confirm_disconnect,
            methods=["GET"],
        ),
        Route(
            "/connect/{token}/connections/{connection_id}/disconnect",
            connect_pages.disconnect,
            methods=["POST"],
        ),
        # Providers telling us a grant ended at their side (Apple, Meta): signed, no caller key.
        Route(
            "/providers/{provider}/notifications",
            provider_notifications.notification,
            methods=["POST"],
        ),
        Route(
            "/providers/{provider}/data-deletion",
            provider_notifications.data_deletion,
            methods=["POST"],
        ),
        Route(
            "/providers/{provider}/data-deletion/{status}",
            provider_notifications.deletion_status,
            methods=["GET"],
        ),
        # GET for query responses; POST for form_post providers (Apple).
        Route("/oauth/callback", connect_pages.callback, methods=["GET", "POST"]),
        *console_routes,
    ]
    # Requests refused for their key's rate are audited per caller and window.
    refusals = (
        RateLimitAudit(routes, window=settings.rate_limit_audit_window)
        if settings.rate_limit > 0
        else None
    )
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=request_limits(settings, refusals=refusals),
        exception_handlers={
            LinkgateError: linkgate_error,
            HTTPException: http_exception,
            # The server went away, refused us, or closed the driver's connection
            # (asyncpg reports "not accepting connections" as a bare DBAPIError).
            DBAPIError: database_error,
            # LINKGATE_DB_TIMEOUT ran out: asyncpg raises the builtin TimeoutError for a
            # statement or connect, the pool its own while waiting for a connection.
            TimeoutError: database_error,
            PoolTimeout: database_error,
            Exception: unexpected_error,
        },
    )
    # Outside Starlette's ServerErrorMiddleware, so that a 500 too is a page on
    # the web routes and carries the security headers; outermost, the trace id
    # (its handler logs inside the request's span).
    pages = SecurityHeadersMiddleware(ErrorPagesMiddleware(app))
    return TracingMiddleware(pages, tracer_provider=provider, metrics=instruments)
