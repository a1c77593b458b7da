"""OpenTelemetry tracing: the tracer provider and the export boundary.

Every span leaves the process through `RedactingSpanExporter`, which masks
secrets (`gateway.observability.redaction`) in span names, attribute values,
event attributes, link attributes and status descriptions. Spans are exported
over OTLP/HTTP only when an endpoint is configured, and then only the traces
`TailSampledExport` selects (`gateway.observability.export_sampling`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.util.types import AttributeValue

from gateway.observability.export_sampling import DEFAULT_EXPORT_RATIO, TailSampledExport
from gateway.observability.lean_spans import LeanTracerProvider
from gateway.observability.redaction import (
    CLEAN_TEXT_MAX_LENGTH,
    MASK,
    KnownClean,
    is_secret_key,
    redact_text,
)
from gateway.observability.trace_summary import TraceSummaryRecorder

__all__ = [
    "RedactingSpanExporter",
    "Tracing",
    "configure_tracing",
    "redact_attributes",
    "redact_span",
]

# The OTLP/HTTP path for traces under a collector's base URL (OTLP spec,
# "OTLP/HTTP Request"), as OTEL_EXPORTER_OTLP_ENDPOINT would append it.
_OTLP_TRACES_PATH = "/v1/traces"


def _redact_attribute(key: str, value: AttributeValue) -> AttributeValue:
    """*value* with secrets masked; *value* itself when there is nothing to mask."""
    if is_secret_key(key):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Sequence) and any(isinstance(item, str) for item in value):
        items = [redact_text(item) if isinstance(item, str) else str(item) for item in value]
        unchanged = all(new is old for new, old in zip(items, value, strict=True))
        return value if unchanged else items
    return value


def redact_attributes(attributes: Mapping[str, AttributeValue] | None) -> dict[str, AttributeValue]:
    """Return span attributes with every secret masked."""
    if not attributes:
        return {}
    return {key: _redact_attribute(key, value) for key, value in attributes.items()}


# Attribute items (key, value) already checked and found to need no masking.
# The gateway's spans repeat most of theirs on every request (method, scheme,
# route, host, provider, status), so the export thread checks an item with one
# set lookup instead of the rules.
_CLEAN_ITEMS: KnownClean[tuple[str, AttributeValue]] = KnownClean()


def _is_known_clean(attributes: Mapping[str, AttributeValue]) -> bool:
    try:
        return _CLEAN_ITEMS.issuperset(attributes.items())
    except TypeError:  # an unhashable value (a list in a hand-built span)
        return False


def _remember_clean(key: str, value: AttributeValue) -> None:
    if isinstance(value, str) and len(value) > CLEAN_TEXT_MAX_LENGTH:
        return
    try:
        _CLEAN_ITEMS.remember((key, value))
    except TypeError:  # an unhashable value
        return


def _masked(attributes: Mapping[str, AttributeValue] | None) -> dict[str, AttributeValue] | None:
    """`redact_attributes`, or None when not one value would change."""
    if not attributes or _is_known_clean(attributes):
        return None
    redacted: dict[str, AttributeValue] = {}
    changed = False
    for key, value in attributes.items():  # one pass: the SDK's mappings iterate in Python
        redacted[key] = masked = _redact_attribute(key, value)
        if masked is value:
            _remember_clean(key, value)
        else:
            changed = True
    return redacted if changed else None


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """Return *span* with every secret masked: a copy, or *span* itself if it holds none.

    Most spans hold none (the gateway's own spans scrub their URLs and paths
    when they set them), and copying every exported span cost more than
    checking it.
    """
    name = redact_text(span.name)
    attributes = _masked(span.attributes)
    events = [(event, _masked(event.attributes)) for event in span.events]
    links = [(link, _masked(link.attributes)) for link in span.links]
    status = span.status
    if status.description:
        description = redact_text(status.description)
        if description != status.description:
            status = trace.Status(status.status_code, description)
    if (
        name == span.name
        and attributes is None
        and status is span.status
        and all(masked is None for _, masked in (*events, *links))
    ):
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes if attributes is None else attributes,
        events=[
            Event(event.name, event.attributes if masked is None else masked, event.timestamp)
            for event, masked in events
        ],
        links=[
            trace.Link(link.context, link.attributes if masked is None else masked)
            for link, masked in links
        ],
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


class _ProcessResource(Resource):
    """A `Resource` whose hash is worked out once.

    The OTLP encoder groups every exported span by its resource, and the
    SDK's ``Resource.__hash__`` serialises the attributes to JSON each time
    (open-telemetry/opentelemetry-python#5577): a tenth of the export
    thread's work. A process's resource never changes (its attributes are
    immutable), so its hash cannot either.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def _traces_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    return base if base.endswith(_OTLP_TRACES_PATH) else base + _OTLP_TRACES_PATH


@dataclass(frozen=True, slots=True)
class Tracing:
    """The process's tracer provider and the recorder of its traces.

    The recorder is given every span of the provider: it keeps each request's
    trace summary for the audit log and hands the exported traces on.
    """

    provider: LeanTracerProvider
    summaries: TraceSummaryRecorder


def configure_tracing(
    *, service_name: str, otlp_endpoint: str | None, export_ratio: float = DEFAULT_EXPORT_RATIO
) -> Tracing:
    """Build the process's tracer provider and its trace recorder.

    *otlp_endpoint* is the collector's base URL (``http://collector:4318``);
    when it is ``None`` or empty spans are recorded but not exported. With
    one, the traces `TailSampledExport` selects at *export_ratio* are
    exported (every trace at 1.0). The provider is returned, not installed
    globally: the caller decides (see `opentelemetry.trace.set_tracer_provider`)
    and shuts it down on exit.

    Spans are exported by the SDK's `BatchSpanProcessor` on a thread of its
    own, which competes with the event loop for the GIL. Its knobs are the
    SDK's standard environment variables, read by the SDK itself:
    ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (512: the thread wakes when this many
    spans wait), ``OTEL_BSP_SCHEDULE_DELAY`` (5000 ms at most between exports),
    ``OTEL_BSP_MAX_QUEUE_SIZE`` (2048; spans beyond it are dropped and
    counted) and ``OTEL_BSP_EXPORT_TIMEOUT`` (30000 ms). At about two spans
    per records read, a batch of 512 is one OTLP request per ~250 reads; the
    encoding cost is per span, so larger batches save little CPU and smaller
    ones only spread the GIL hold more thinly. A trace dropped by the export
    ratio never reaches the batch processor, and its spans never become the
    SDK's (`gateway.observability.lean_spans`).

    Every request is recorded whatever the caller's sampling flag says (the
    lean provider samples every span, as the SDK's ``ALWAYS_ON`` sampler
    would): the audit log stores a summary of each request's trace. Which
    traces are exported is decided after the fact (`TailSampledExport`).
    """
    export = None
    if otlp_endpoint:
        exporter = OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint))
        batches = BatchSpanProcessor(RedactingSpanExporter(exporter))
        export = TailSampledExport(batches, ratio=export_ratio)
    summaries = TraceSummaryRecorder(export=export)
    resource = _ProcessResource(Resource.create({SERVICE_NAME: service_name}))
    return Tracing(LeanTracerProvider(summaries, resource=resource), summaries)
