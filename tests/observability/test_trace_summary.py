from __future__ import annotations

from collections.abc import Callable

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway.observability import LeanTracerProvider, TraceSummaryRecorder, current_trace_id
from gateway.observability.lean_spans import LeanSpan
from gateway.observability.trace_summary import (
    _STATUS_NAMES,
    SUMMARY_ATTRIBUTES,
    _integral,
    _status_name,
)

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


_ATTRIBUTE_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["Bearer abc.def", "code=xyz&state=1", "token=s3cret", "127.0.0.1"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.one_of(st.text(max_size=10), st.integers(), st.booleans()), max_size=3),
)
_ATTRIBUTE_KEYS = st.sampled_from(
    [*sorted(SUMMARY_ATTRIBUTES), "url.full", "http.request.method", "linkgate.token"]
)


@settings(max_examples=200, deadline=None)
@given(
    attributes=st.dictionaries(_ATTRIBUTE_KEYS, _ATTRIBUTE_VALUES, max_size=8),
    secret_kept=st.booleans(),
    failed=st.booleans(),
)
def test_audit_summary_items_are_the_selected_attributes_made_integral(
    attributes: dict[str, AttributeValue], secret_kept: bool, failed: bool
) -> None:
    """Each span's audit attributes are `_selected`'s (secrets masked, credential-shaped
    text redacted) with floats as their repr, whatever the value types."""
    kept = {*SUMMARY_ATTRIBUTES, "linkgate.token"} if secret_kept else SUMMARY_ATTRIBUTES
    recorder = TraceSummaryRecorder(attributes=kept)
    tracer = recorded_provider(recorder).get_tracer("test")
    with tracer.start_as_current_span("GET /records", attributes=attributes) as root:
        with tracer.start_as_current_span("GET upstream", attributes=attributes) as child:
            if failed:
                child.set_status(Status(StatusCode.ERROR))
        summary = recorder.audit_summary(f"{root.get_span_context().trace_id:032x}")

    assert isinstance(child, LeanSpan)
    expected = {key: _integral(value) for key, value in recorder._selected(child).items()}
    items = summary["spans"]
    assert [item["status"] for item in items] == ["in_progress", "error" if failed else "unset"]
    for item in items:
        assert item.get("attributes", {}) == expected
        assert all(type(v) is type(expected[k]) for k, v in item.get("attributes", {}).items())


def test_status_names_by_identity_match_the_table() -> None:
    """Every status code reads as its lower-case name, as the summaries always wrote it."""
    assert {code: _status_name(code) for code in StatusCode} == _STATUS_NAMES
