from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.observability import TracingMiddleware, current_trace_id

ClientFactory = Callable[[ASGIApp], httpx.AsyncClient]

INCOMING_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


async def show_item(request: Request) -> JSONResponse:
    structlog.get_logger().info("item.shown")
    return JSONResponse({"trace_id": current_trace_id()})


async def show_connect_page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("connect")


async def fail(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


def make_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/items/{item_id}", show_item),
            Route("/connect/{token}/{provider}", show_connect_page),
            Route("/fail", fail),
            Mount("/v1", routes=[Route("/things/{thing_id}", show_item)]),
        ]
    )


async def test_incoming_traceparent_is_continued(
    make_client: ClientFactory, exported: InMemorySpanExporter
) -> None:
    """A caller's W3C traceparent becomes the parent of the server span."""
    async with make_client(make_app()) as client:
        response = await client.get(
            "/items/1", headers={"traceparent": f"00-{INCOMING_TRACE_ID}-{INCOMING_PARENT_ID}-01"}
        )

    [span] = exported.get_finished_spans()
    assert response.headers["x-trace-id"] == INCOMING_TRACE_ID
    assert response.json()["trace_id"] == INCOMING_TRACE_ID
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == INCOMING_PARENT_ID
    match = TRACEPARENT.fullmatch(response.headers["traceparent"])
    assert match is not None
    assert match.groups() == (INCOMING_TRACE_ID, f"{span.context.span_id:016x}")


@pytest.mark.parametrize("tracestate", [None, "vendor=opaque,other=1"])
async def test_response_trace_headers_are_what_the_w3c_propagator_writes(
    make_client: ClientFactory, exported: InMemorySpanExporter, tracestate: str | None
) -> None:
    """traceparent and tracestate equal TraceContextTextMapPropagator's for the server span."""
    headers = {"traceparent": f"00-{INCOMING_TRACE_ID}-{INCOMING_PARENT_ID}-01"}
    if tracestate is not None:
        headers["tracestate"] = tracestate
    async with make_client(make_app()) as client:
        response = await client.get("/items/1", headers=headers)

    [span] = exported.get_finished_spans()
    expected: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(
        expected, context=set_span_in_context(NonRecordingSpan(span.get_span_context()))
    )
    written = {
        name: response.headers[name]
        for name in ("traceparent", "tracestate")
        if name in response.headers
    }
    assert written == expected
    assert ("tracestate" in written) == (tracestate is not None)


async def test_a_trace_id_is_returned_when_none_came(make_client: ClientFactory) -> None:
    """Without a traceparent a new trace starts and its id is in the response headers."""
    async with make_client(make_app()) as client:
        response = await client.get("/items/1")

    trace_id = response.headers["x-trace-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert trace_id != "0" * 32
    assert response.json()["trace_id"] == trace_id
    match = TRACEPARENT.fullmatch(response.headers["traceparent"])
    assert match is not None
    assert match.group(1) == trace_id


async def test_malformed_traceparent_starts_a_new_trace(make_client: ClientFactory) -> None:
    """A traceparent that is not valid W3C Trace Context is ignored, not echoed."""
    async with make_client(make_app()) as client:
        response = await client.get("/items/1", headers={"traceparent": "00-nonsense-01"})

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-trace-id"])
    assert "nonsense" not in response.headers["traceparent"]


async def test_server_span_is_named_by_route_without_query(
    make_client: ClientFactory, exported: InMemorySpanExporter
) -> None:
    """The span is "METHOD route", with just these HTTP attributes and no query string anywhere."""
    async with make_client(make_app()) as client:
        await client.get("/items/42?code=secret-code&state=s")

    [span] = exported.get_finished_spans()
    assert span.name == "GET /items/{item_id}"
    assert span.kind == SpanKind.SERVER
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "/items/{item_id}",
        "url.path": "/items/42",
        "url.scheme": "http",
        "http.response.status_code": 200,
    }
    assert "secret-code" not in span.to_json()


async def test_mounted_routes_are_named_by_their_full_template(
    make_client: ClientFactory, exported: InMemorySpanExporter
) -> None:
    """A route inside a Mount is named with the mount's prefix."""
    async with make_client(make_app()) as client:
        await client.get("/v1/things/7")

    [span] = exported.get_finished_spans()
    assert span.name == "GET /v1/things/{thing_id}"


async def test_unmatched_paths_are_named_by_path(
    make_client: ClientFactory, exported: InMemorySpanExporter
) -> None:
    """Without a matching route the span falls back to the path."""
    async with make_client(make_app()) as client:
        response = await client.get("/nowhere?code=abc")

    [span] = exported.get_finished_spans()
    assert response.status_code == 404
    assert span.name == "GET /nowhere"
    assert "x-trace-id" in response.headers


async def test_one_request_event_is_logged_without_query_string(
    make_client: ClientFactory,
) -> None:
    """Each request logs one http.request with method, path, status and duration."""
    async with make_client(make_app()) as client:
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as logs:
            response = await client.get(
                "/items/42?code=secret-code", headers={"x-request-id": "req-1"}
            )

    shown, request = logs
    assert shown["event"] == "item.shown"
    assert shown["trace_id"] == response.headers["x-trace-id"]
    assert request["event"] == "http.request"
    assert (
        request["method"],
        request["path"],
        request["route"],
        request["status"],
    ) == ("GET", "/items/42", "/items/{item_id}", 200)
    assert isinstance(request["duration_ms"], float)
    assert (request["request_id"], request["trace_id"]) == (
        "req-1",
        response.headers["x-trace-id"],
    )
    assert "secret-code" not in repr(logs)


async def test_a_request_without_a_usable_request_id_gets_a_random_one(
    make_client: ClientFactory,
) -> None:
    """Absent or unusable X-Request-Id: a fresh 32-hex-digit id per request, echoed back."""
    async with make_client(make_app()) as client:
        answers = [
            await client.get("/items/1"),
            await client.get("/items/1"),
            await client.get("/items/1", headers={"x-request-id": "bad id\twith spaces"}),
        ]

    ids = [response.headers["x-request-id"] for response in answers]
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)
    assert len(set(ids)) == 3


async def test_context_is_unbound_after_the_request(make_client: ClientFactory) -> None:
    """trace_id and request_id do not outlive the request in structlog's context."""
    structlog.contextvars.bind_contextvars(worker="w1")
    async with make_client(make_app()) as client:
        await client.get("/items/1")

    assert structlog.contextvars.get_contextvars() == {"worker": "w1"}
    structlog.contextvars.clear_contextvars()


async def test_secret_path_parameters_are_masked(
    make_client: ClientFactory, exported: InMemorySpanExporter, canary: str
) -> None:
    """A connect-session token in the path never reaches spans or logs."""
    async with make_client(make_app()) as client:
        with structlog.testing.capture_logs() as logs:
            await client.get(f"/connect/{canary}/sandbox")

    [span] = exported.get_finished_spans()
    assert span.name == "GET /connect/{token}/{provider}"
    assert logs[-1]["path"] == "/connect/[REDACTED]/sandbox"
    assert canary not in span.to_json()
    assert canary not in repr(logs)


async def test_errors_carry_trace_headers_and_mark_the_span(
    make_client: ClientFactory, exported: InMemorySpanExporter
) -> None:
    """An unhandled exception still yields a 500 with trace headers and an error span."""
    async with make_client(make_app()) as client:
        with structlog.testing.capture_logs() as logs:
            response = await client.get("/fail")

    [span] = exported.get_finished_spans()
    assert response.status_code == 500
    assert response.headers["x-trace-id"] == f"{span.context.trace_id:032x}"
    assert span.status.status_code == StatusCode.ERROR
    assert "RuntimeError" in [
        (event.attributes or {}).get("exception.type") for event in span.events
    ]
    assert (
        logs[-1]["event"],
        logs[-1]["status"],
        logs[-1]["log_level"],
    ) == ("http.request", 500, "error")


async def test_error_handlers_run_inside_the_request_trace(make_client: ClientFactory) -> None:
    """Wrapped outermost, the app's 500 handler sees the trace id it will be answered with."""

    async def problem(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"status": 500, "trace_id": current_trace_id()}, status_code=500)

    app = Starlette(routes=[Route("/fail", fail)], exception_handlers={Exception: problem})
    async with make_client(app) as client:
        response = await client.get("/fail")

    assert response.status_code == 500
    assert response.json()["trace_id"] == response.headers["x-trace-id"]


async def test_exceptions_before_a_response_propagate_and_are_recorded(
    tracer_provider: trace.TracerProvider, exported: InMemorySpanExporter
) -> None:
    """An app that raises before responding leaves the 500 to the server, span marked."""

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("no response sent")

    traced = TracingMiddleware(broken, tracer_provider=tracer_provider)
    transport = httpx.ASGITransport(app=traced)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with structlog.testing.capture_logs() as logs, pytest.raises(RuntimeError):
            await client.get("/anything")

    [span] = exported.get_finished_spans()
    assert (span.attributes or {})["http.response.status_code"] == 500
    assert span.status.status_code == StatusCode.ERROR
    assert (logs[-1]["event"], logs[-1]["status"]) == ("http.request", 500)


def test_current_trace_id_outside_a_request_is_zeros() -> None:
    """Outside any span the trace id is the W3C invalid id, not an error."""
    assert current_trace_id() == "0" * 32
