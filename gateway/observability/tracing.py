"""OpenTelemetry tracing: the tracer provider and the export boundary.

Every span leaves the process through `RedactingSpanExporter`, which masks
secrets (`gateway.observability.redaction`) in span names, attribute values,
event attributes, link attributes and status descriptions. Spans are exported
over OTLP/HTTP only when an endpoint is configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.util.types import AttributeValue

from gateway.observability.redaction import MASK, is_secret_key, redact_text

__all__ = [
    "RedactingSpanExporter",
    "configure_tracing",
    "redact_attributes",
    "redact_span",
]

# The OTLP/HTTP path for traces under a collector's base URL (OTLP spec,
# "OTLP/HTTP Request"), as OTEL_EXPORTER_OTLP_ENDPOINT would append it.
_OTLP_TRACES_PATH = "/v1/traces"


def _redact_attribute(key: str, value: AttributeValue) -> AttributeValue:
    if is_secret_key(key):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Sequence) and any(isinstance(item, str) for item in value):
        return [redact_text(item) if isinstance(item, str) else str(item) for item in value]
    return value


def redact_attributes(attributes: Mapping[str, AttributeValue] | None) -> dict[str, AttributeValue]:
    """Return span attributes with every secret masked."""
    if not attributes:
        return {}
    return {key: _redact_attribute(key, value) for key, value in attributes.items()}


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """Return a copy of a finished span with every secret masked."""
    status = span.status
    if status.description:
        status = trace.Status(status.status_code, redact_text(status.description))
    return ReadableSpan(
        name=redact_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redact_attributes(span.attributes),
        events=[
            Event(event.name, redact_attributes(event.attributes), event.timestamp)
            for event in span.events
        ],
        links=[trace.Link(link.context, redact_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Export through *exporter* only spans whose secrets have been masked.

    Redaction happens here, at the boundary, rather than when attributes are
    set: the SDK's spans are immutable once ended, and this runs on the batch
    processor's worker thread, off the request path.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([redact_span(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def _traces_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    return base if base.endswith(_OTLP_TRACES_PATH) else base + _OTLP_TRACES_PATH


def configure_tracing(*, service_name: str, otlp_endpoint: str | None) -> TracerProvider:
    """Build the process's tracer provider.

    *otlp_endpoint* is the collector's base URL (``http://collector:4318``);
    when it is ``None`` or empty spans are recorded but not exported. The
    provider is returned, not installed globally: the caller decides (see
    `opentelemetry.trace.set_tracer_provider`) and shuts it down on exit.
    """
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}),
        # Every request is recorded whatever the caller's sampling flag says:
        # the audit log stores a summary of each request's trace.
        sampler=ALWAYS_ON,
    )
    if otlp_endpoint:
        exporter = OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint))
        provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(exporter)))
    return provider
