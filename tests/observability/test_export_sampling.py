from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.observability import (
    LeanTracerProvider,
    RedactingSpanExporter,
    TailSampledExport,
    TraceSummaryRecorder,
    TracingMiddleware,
    configure_tracing,
    current_trace_id,
)
from gateway.vault import generate_key_entry
from tests.observability.conftest import Collector

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NOT_SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


class Gateway:
    """A tiny traced app: a client span per request, its status chosen by the caller."""

    def __init__(self, ratio: float) -> None:
        self.exported = InMemorySpanExporter()
        processor = SimpleSpanProcessor(RedactingSpanExporter(self.exported))
        self.recorder = TraceSummaryRecorder(export=TailSampledExport(processor, ratio=ratio))
        # As configure_tracing builds it: every request recorded, whatever the caller samples.
        self.provider = LeanTracerProvider(self.recorder, shutdown_on_exit=False)
        tracer = self.provider.get_tracer("test")

        async def records(request: Request) -> JSONResponse:
            upstream = int(request.query_params.get("upstream", "200"))
            with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
                span.set_attribute("http.response.status_code", upstream)
                if upstream >= 400:
                    span.set_status(Status(StatusCode.ERROR))
            if request.query_params.get("raise"):
                raise RuntimeError("boom")
            summary = self.recorder.audit_summary(current_trace_id())
            status = int(request.query_params.get("status", "200"))
            return JSONResponse(summary, status_code=status)

        app = Starlette(routes=[Route("/records", records)])
        traced = TracingMiddleware(app, tracer_provider=self.provider)
        self.transport = httpx.ASGITransport(app=traced, raise_app_exceptions=False)

    async def get(self, query: str = "", **headers: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://test") as client:
            return await client.get(f"/records?{query}", headers=headers)

    def exported_traces(self) -> dict[str, list[str]]:
        """Span names by trace id (32 hex), in the order they were exported."""
        traces: dict[str, list[str]] = {}
        for span in self.exported.get_finished_spans():
            assert span.context is not None
            traces.setdefault(f"{span.context.trace_id:032x}", []).append(span.name)
        return traces


@pytest.fixture
def sampled_out() -> Iterator[Gateway]:
    gateway = Gateway(ratio=0.0)
    yield gateway
    gateway.provider.shutdown()


async def test_an_allowed_request_sampled_out_exports_nothing(sampled_out: Gateway) -> None:
    """At ratio 0 a successful request leaves no span at the exporter."""
    response = await sampled_out.get()

    assert response.status_code == 200
    assert sampled_out.exported_traces() == {}


async def test_the_audit_summary_is_there_when_the_trace_is_not_exported(
    sampled_out: Gateway,
) -> None:
    """The audit event's summary does not depend on the export decision."""
    response = await sampled_out.get()

    assert [span["name"] for span in response.json()["spans"]] == ["GET /records", "GET"]


@pytest.mark.parametrize(
    "query",
    ["status=403", "status=404", "status=503", "raise=1", "upstream=502"],
    ids=["denied", "not-found", "unavailable", "exception", "failed-client-span"],
)
async def test_denied_and_failed_requests_are_exported_at_ratio_zero(
    sampled_out: Gateway, query: str
) -> None:
    """A 4xx or 5xx answer, or any span in error, exports the whole trace."""
    response = await sampled_out.get(query)

    assert sampled_out.exported_traces() == {
        response.headers["x-trace-id"]: ["GET", "GET /records"]
    }


async def test_a_caller_that_samples_gets_the_trace_exported(sampled_out: Gateway) -> None:
    """An incoming traceparent with the sampled flag exports the trace at ratio 0."""
    response = await sampled_out.get(traceparent=SAMPLED)

    assert response.headers["x-trace-id"] == SAMPLED.split("-")[1]
    assert sampled_out.exported_traces() == {SAMPLED.split("-")[1]: ["GET", "GET /records"]}


async def test_a_caller_that_does_not_sample_leaves_the_decision_to_the_ratio(
    sampled_out: Gateway,
) -> None:
    """An unsampled incoming traceparent is still recorded but not exported at ratio 0."""
    response = await sampled_out.get(traceparent=NOT_SAMPLED)

    assert response.json()["spans"]
    assert sampled_out.exported_traces() == {}


async def test_ratio_one_exports_every_trace() -> None:
    """At ratio 1 every request's trace is exported, as without sampling."""
    gateway = Gateway(ratio=1.0)
    responses = [await gateway.get() for _ in range(3)]
    gateway.provider.shutdown()

    assert gateway.exported_traces() == {
        response.headers["x-trace-id"]: ["GET", "GET /records"] for response in responses
    }


def test_the_ratio_decides_on_the_trace_id_as_the_sdk_sampler_does() -> None:
    """Replicas and other OpenTelemetry tracers at the same ratio agree on every trace id."""
    export = TailSampledExport(SimpleSpanProcessor(InMemorySpanExporter()), ratio=0.25)
    sampler = TraceIdRatioBased(0.25)
    trace_ids = [(n * 0x9E3779B97F4A7C15_2545F4914F6CDD1D) % (1 << 128) for n in range(1, 400)]

    decisions = [export.in_ratio(trace_id) for trace_id in trace_ids]

    assert decisions == [
        sampler.should_sample(None, trace_id, "GET").decision.is_sampled() for trace_id in trace_ids
    ]
    assert 0 < sum(decisions) < len(decisions)


def test_a_span_ending_after_its_root_is_exported_only_if_it_failed() -> None:
    """Past its root, a span of a sampled-out trace is exported only when in error."""
    gateway = Gateway(ratio=0.0)
    tracer = gateway.provider.get_tracer("test")
    root = tracer.start_span("job")
    late, failed = (tracer.start_span(name, set_span_in_context(root)) for name in ("ok", "bad"))
    root.end()
    late.end()
    failed.set_status(Status(StatusCode.ERROR))
    failed.end()
    gateway.provider.shutdown()

    assert list(gateway.exported_traces().values()) == [["bad"]]


def _exported_span_names(collector: Collector) -> dict[str, list[str]]:
    traces: dict[str, list[str]] = {}
    for _path, body in collector.received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    traces.setdefault(span.trace_id.hex(), []).append(span.name)
    return traces


async def test_the_configured_exporter_sends_only_the_traces_it_keeps(
    collector: Collector,
) -> None:
    """Through OTLP/HTTP at ratio 0, the collector receives the denied trace only."""
    tracing = configure_tracing(
        service_name="linkgate-test", otlp_endpoint=collector.url, export_ratio=0.0
    )

    async def records(request: Request) -> JSONResponse:
        summary = tracing.summaries.audit_summary(current_trace_id())
        return JSONResponse(summary, status_code=int(request.query_params["status"]))

    app = Starlette(routes=[Route("/records", records)])
    transport = httpx.ASGITransport(app=TracingMiddleware(app, tracer_provider=tracing.provider))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        allowed = await client.get("/records?status=200")
        denied = await client.get("/records?status=403")
    tracing.provider.shutdown()

    assert allowed.json()["spans"]
    assert denied.json()["spans"]
    assert _exported_span_names(collector) == {denied.headers["x-trace-id"]: ["GET /records"]}


def _settings_problems(tmp_path: Path, **environ: str) -> list[str]:
    config = tmp_path / "linkgate.toml"
    config.touch()
    try:
        load_settings({"LINKGATE_CONFIG": str(config), **environ})
    except ConfigError as exc:
        return exc.problems
    return []


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_an_export_ratio_outside_zero_to_one_is_a_config_error(tmp_path: Path, value: str) -> None:
    """The error names the setting and what it accepts."""
    problems = _settings_problems(tmp_path, LINKGATE_TRACE_EXPORT_RATIO=value)

    assert (
        "LINKGATE_TRACE_EXPORT_RATIO: a share between 0 and 1 "
        "(0.1 exports one trace in ten, plus every denied or failed request)"
    ) in problems


def test_an_export_ratio_that_is_not_a_number_is_a_config_error(tmp_path: Path) -> None:
    """A value that does not parse is reported as such."""
    problems = _settings_problems(tmp_path, LINKGATE_TRACE_EXPORT_RATIO="ten percent")

    assert "LINKGATE_TRACE_EXPORT_RATIO: expected float, got 'ten percent'" in problems


def test_the_export_ratio_comes_from_the_config_file_or_the_environment(tmp_path: Path) -> None:
    """``trace_export_ratio`` in linkgate.toml, overridden by LINKGATE_TRACE_EXPORT_RATIO."""
    config = tmp_path / "linkgate.toml"
    config.write_text("trace_export_ratio = 0.1\n")
    (tmp_path / "empty.toml").touch()
    required = {
        "LINKGATE_CONFIG": str(config),
        "LINKGATE_VAULT_KEYS": generate_key_entry("k1"),
        "LINKGATE_SECRET_KEY": "s" * 32,
    }

    from_file = load_settings(required)
    from_environment = load_settings({**required, "LINKGATE_TRACE_EXPORT_RATIO": "0.25"})
    default = load_settings({**required, "LINKGATE_CONFIG": str(tmp_path / "empty.toml")})

    assert (from_file.trace_export_ratio, from_environment.trace_export_ratio) == (0.1, 0.25)
    assert default.trace_export_ratio == 1.0
