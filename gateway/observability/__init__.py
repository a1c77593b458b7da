"""Logs, traces, metrics and the request middleware that ties them together.

Imports nothing else from `gateway`, so every other package may use it.
"""

from __future__ import annotations

from gateway.observability.client_spans import (
    ClientCall,
    TracedTransport,
    client_span,
    scrubbed_url,
)
from gateway.observability.export_sampling import DEFAULT_EXPORT_RATIO, TailSampledExport
from gateway.observability.lean_spans import LeanSpan, LeanTracer, LeanTracerProvider
from gateway.observability.logs import configure_logging
from gateway.observability.metrics import (
    DEFAULT_EXPORT_INTERVAL,
    GatewayMetrics,
    RefreshOutcome,
    configure_metrics,
)
from gateway.observability.middleware import TracingMiddleware, current_trace_id
from gateway.observability.redaction import (
    MASK,
    SECRET_KEYS,
    SECRET_PATTERNS,
    SecretPattern,
    is_secret_key,
    redact_text,
    redact_value,
)
from gateway.observability.trace_summary import SpanSummary, TraceSummary, TraceSummaryRecorder
from gateway.observability.tracing import (
    RedactingSpanExporter,
    Tracing,
    configure_tracing,
    redact_attributes,
)

__all__ = [
    "DEFAULT_EXPORT_INTERVAL",
    "DEFAULT_EXPORT_RATIO",
    "MASK",
    "SECRET_KEYS",
    "SECRET_PATTERNS",
    "ClientCall",
    "GatewayMetrics",
    "LeanSpan",
    "LeanTracer",
    "LeanTracerProvider",
    "RedactingSpanExporter",
    "RefreshOutcome",
    "SecretPattern",
    "SpanSummary",
    "TailSampledExport",
    "TraceSummary",
    "TraceSummaryRecorder",
    "TracedTransport",
    "Tracing",
    "TracingMiddleware",
    "client_span",
    "configure_logging",
    "configure_metrics",
    "configure_tracing",
    "current_trace_id",
    "is_secret_key",
    "redact_attributes",
    "redact_text",
    "redact_value",
    "scrubbed_url",
]
