from __future__ import annotations

from collections.abc import Callable

import httpx
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway.observability import LeanTracerProvider, TraceSummaryRecorder, current_trace_id

ClientFactory = Callable[[ASGIApp], httpx.AsyncClient]


def recorded_provider(recorder: TraceSummaryRecorder) -> LeanTracerProvider:
    """As configure_tracing builds it: the recorder is given every span of the provider."""
    return LeanTracerProvider(recorder, shutdown_on_exit=False)


async def test_child_spans_of_a_request_are_summarised_while_it_runs(
    make_client: ClientFactory,
    tracer_provider: trace.TracerProvider,
    recorder: TraceSummaryRecorder,
    canary: str,
) -> None:
    """Inside the request the summary lists finished child spans and selected attributes."""
    tracer = tracer_provider.get_tracer("test")

    async def fetch(request: Request) -> JSONResponse:
        with tracer.start_as_current_span("token.refresh") as span:
            span.set_attribute("linkgate.refreshed", True)
        with tracer.start_as_current_span("GET graph.example") as span:
            span.set_attribute("http.response.status_code", 200)
            span.set_attribute("http.request.resend_count", 2)
            span.set_attribute("url.full", f"https://graph.example/me?access_token={canary}")
        return JSONResponse(recorder.summary_for(current_trace_id()))

    app = Starlette(routes=[Route("/records", fetch)])
    async with make_client(app) as client:
        response = await client.get("/records")

    summary = response.json()
    assert summary["trace_id"] == response.headers["x-trace-id"]
    assert summary["dropped_spans"] == 0
    assert [(span["name"], span["status"], span["attributes"]) for span in summary["spans"]] == [
        ("token.refresh", "unset", {"linkgate.refreshed": True}),
        (
            "GET graph.example",
            "unset",
            {"http.response.status_code": 200, "http.request.resend_count": 2},
        ),
    ]
    assert all(isinstance(span["duration_ms"], float) for span in summary["spans"])
    assert canary not in response.text


async def test_summary_is_forgotten_when_the_request_ends(
    make_client: ClientFactory,
    tracer_provider: trace.TracerProvider,
    recorder: TraceSummaryRecorder,
) -> None:
    """Once the server span ends nothing about the trace is kept."""
    tracer = tracer_provider.get_tracer("test")

    async def fetch(request: Request) -> JSONResponse:
        with tracer.start_as_current_span("upstream.fetch"):
            pass
        return JSONResponse({})

    app = Starlette(routes=[Route("/records", fetch)])
    async with make_client(app) as client:
        response = await client.get("/records")

    assert recorder.summary_for(response.headers["x-trace-id"])["spans"] == []


def test_discard_forgets_a_trace_in_flight() -> None:
    """After discard, the trace's summary is empty and later spans are ignored."""
    recorder = TraceSummaryRecorder()
    tracer = recorded_provider(recorder).get_tracer("test")

    with tracer.start_as_current_span("GET /records") as root:
        trace_id = f"{root.get_span_context().trace_id:032x}"
        with tracer.start_as_current_span("upstream.fetch"):
            pass
        before = recorder.summary_for(trace_id)
        recorder.discard(trace_id)
        with tracer.start_as_current_span("audit.append"):
            pass
        after = recorder.summary_for(trace_id)

    assert [span["name"] for span in before["spans"]] == ["upstream.fetch"]
    assert after == {"trace_id": trace_id, "spans": [], "dropped_spans": 0}


def test_summaries_are_bounded_in_traces_and_spans() -> None:
    """Beyond the limits the oldest trace is evicted and extra spans are only counted."""
    recorder = TraceSummaryRecorder(max_traces=2, max_spans_per_trace=2)
    tracer = recorded_provider(recorder).get_tracer("test")
    roots = [tracer.start_span(f"request {n}") for n in range(3)]
    trace_ids = [f"{root.get_span_context().trace_id:032x}" for root in roots]

    for _ in range(5):
        with tracer.start_as_current_span("child", context=trace.set_span_in_context(roots[2])):
            pass

    with tracer.start_as_current_span("child", context=trace.set_span_in_context(roots[0])):
        pass
    newest = recorder.summary_for(trace_ids[2])
    assert recorder.summary_for(trace_ids[0])["spans"] == []
    assert (len(newest["spans"]), newest["dropped_spans"]) == (2, 3)
    for root in roots:
        root.end()
