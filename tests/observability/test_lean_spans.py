"""Lean spans leave the process exactly as the SDK's spans would."""

from __future__ import annotations

import asyncio
import re

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from gateway.observability import LeanTracerProvider, TraceSummaryRecorder

RESOURCE = Resource.create({"service.name": "linkgate-test"})
# A frame of the SDK's own start_as_current_span generator: the SDK's stack
# traces pass through it, the lean tracer's do not.
_SDK_FRAME = re.compile(r'  File "[^"]*/opentelemetry/sdk/[^"]*", line \d+, in \w+\n    .*\n')


class CountingIds(RandomIdGenerator):
    """Ids in sequence, so that two providers given the same calls make the same ids."""

    def __init__(self) -> None:
        self.last = 0

    def generate_span_id(self) -> int:
        self.last += 1
        return self.last

    def generate_trace_id(self) -> int:
        self.last += 1
        return 0xABC << 64 | self.last


class Named:
    """A value that is not an attribute type but has a stable str()."""

    def __str__(self) -> str:
        return "named"


def _use(tracer: trace.Tracer) -> None:
    """Every API call the gateway's spans (and a careless endpoint) might make."""
    caller = NonRecordingSpan(
        SpanContext(
            0x1234,
            0x5678,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("caller", "1")]),
        )
    )
    server = tracer.start_span(
        "GET",
        context=trace.set_span_in_context(caller),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "list": ["a", "b"], "": "no key"},
        links=[Link(SpanContext(9, 10, is_remote=True), {"note": "x"}), Link(INVALID_SPAN_CONTEXT)],
    )
    with trace.use_span(server):
        server.set_attribute("http.request.method", "GET")  # set again: last in order
        server.set_attribute("nothing", None)
        server.set_attribute("mixed", [1, "a"])
        server.set_attribute("named", Named())  # type: ignore[arg-type]
        server.set_attribute(5, "not a key")  # type: ignore[arg-type]
        server.set_attribute("long", "abcdefgh")
        server.set_attributes({"a": 1, "b": 2.5, "c": True, "d": (1, 2), "e": "text"})
        server.add_event("note", {"k": "v", "n": [1, 2], "m": "long text"}, timestamp=123)
        server.add_event("again")
        with tracer.start_as_current_span("child", attributes={"x": 1}) as child:
            child.set_status(Status(StatusCode.OK))
            child.set_status(StatusCode.ERROR, "ignored after OK")
        with (
            pytest.raises(ValueError, match="refused"),
            tracer.start_as_current_span("token.refresh"),
        ):
            raise ValueError("refused")
        with pytest.raises(KeyError), tracer.start_span("manual"):
            raise KeyError("k")
        quiet = tracer.start_as_current_span(
            "quiet", record_exception=False, set_status_on_exception=False
        )
        with pytest.raises(LookupError), quiet:
            raise LookupError("not recorded")
        root = tracer.start_span("root", context=trace.set_span_in_context(INVALID_SPAN_CONTEXT))  # type: ignore[arg-type]
        root.set_status(StatusCode.UNSET)
        root.set_status(Status(StatusCode.ERROR, "failed"), "ignored description")
        root.set_status(Status(StatusCode.UNSET))
        root.end()
        server.update_name("GET /records")
        server.record_exception(RuntimeError("boom"), {"extra": 1}, timestamp=456)
        server.set_status(StatusCode.ERROR, "described")
        server.add_link(SpanContext(11, 12, is_remote=False), {"l": 1})
        server.add_link(INVALID_SPAN_CONTEXT)
        server.set_attributes({"last": "abcdefgh", "last.list": ["abcdefgh"]})
    server.end()
    server.set_attribute("late", 1)
    server.update_name("late")
    server.add_event("late")
    server.end()


def _otlp(spans: tuple[object, ...]) -> ExportTraceServiceRequest:
    """The OTLP request the exporter would send, its times zeroed (the clock moves)."""
    request: ExportTraceServiceRequest = encode_spans(spans)  # type: ignore[arg-type]
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                span.start_time_unix_nano = span.end_time_unix_nano = 0
                for event in span.events:
                    if event.time_unix_nano not in (123, 456):
                        event.time_unix_nano = 0
                    for attribute in event.attributes:
                        if attribute.key == "exception.stacktrace":
                            text = attribute.value.string_value
                            attribute.value.string_value = _SDK_FRAME.sub("", text)
    return request


@pytest.mark.parametrize(
    "limits",
    [
        SpanLimits(),
        SpanLimits(
            max_span_attributes=4,
            max_events=2,
            max_links=1,
            max_event_attributes=2,
            max_link_attributes=1,
            max_attribute_length=3,
        ),
    ],
    ids=["default-limits", "tight-limits"],
)
def test_lean_spans_export_as_the_sdks_spans(limits: SpanLimits) -> None:
    """Same calls, same OTLP: ids, flags, trace state, parents, attributes, events, links."""
    sdk_spans, lean_spans = InMemorySpanExporter(), InMemorySpanExporter()
    sdk = TracerProvider(
        sampler=ALWAYS_ON,
        resource=RESOURCE,
        id_generator=CountingIds(),
        span_limits=limits,
        shutdown_on_exit=False,
    )
    sdk.add_span_processor(SimpleSpanProcessor(sdk_spans))
    lean = LeanTracerProvider(
        TraceSummaryRecorder(),
        resource=RESOURCE,
        id_generator=CountingIds(),
        span_limits=limits,
        shutdown_on_exit=False,
    )
    lean.add_span_processor(SimpleSpanProcessor(lean_spans))

    for provider in (sdk, lean):
        _use(provider.get_tracer("test.scope", "1.2", "https://schema.example", {"s": 1}))

    expected, actual = sdk_spans.get_finished_spans(), lean_spans.get_finished_spans()
    assert len(expected) == 6
    assert _otlp(expected) == _otlp(actual)
    # OTLP carries no W3C trace flags; the response's traceparent does.
    assert [(s.context, s.parent) for s in expected] == [(s.context, s.parent) for s in actual]


def test_the_recorder_sees_what_the_sdk_would_export() -> None:
    """The summary of a lean trace equals the summary of the same calls on SDK spans."""
    summaries = []
    for lean in (False, True):
        recorder = TraceSummaryRecorder()
        provider: LeanTracerProvider | TracerProvider
        if lean:
            provider = LeanTracerProvider(recorder, shutdown_on_exit=False)
        else:
            provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
            provider.add_span_processor(recorder)
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("GET", kind=SpanKind.SERVER) as root:
            with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as client:
                client.set_attributes({"server.address": "api.example", "url.full": "x"})
                client.set_attribute("http.response.status_code", 503)
                client.set_attribute("error.type", "503")
                client.set_status(Status(StatusCode.ERROR))
            with (
                pytest.raises(ValueError, match="refused"),
                tracer.start_as_current_span("token.refresh"),
            ):
                raise ValueError("refused")
            summary = recorder.audit_summary(f"{root.get_span_context().trace_id:032x}")
        summaries.append(
            [{k: v for k, v in span.items() if k != "duration_us"} for span in summary["spans"]]
        )

    assert summaries[0] == summaries[1]
    assert summaries[1][1]["attributes"] == {
        "error.type": "503",
        "http.response.status_code": 503,
        "server.address": "api.example",
    }


async def test_a_task_started_inside_a_span_is_its_child() -> None:
    """Context propagates to tasks (as to the refresh task): the current span is the lean one."""
    exported = InMemorySpanExporter()
    provider = LeanTracerProvider(TraceSummaryRecorder(), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")

    async def refresh() -> None:
        with tracer.start_as_current_span("token.refresh"):
            await asyncio.sleep(0)

    with tracer.start_as_current_span("GET", kind=SpanKind.SERVER) as server:
        assert trace.get_current_span() is server
        await asyncio.create_task(refresh())
    assert trace.get_current_span() is not server

    child, parent = exported.get_finished_spans()
    assert child.parent == parent.context == server.get_span_context()
    assert (child.name, parent.name) == ("token.refresh", "GET")
