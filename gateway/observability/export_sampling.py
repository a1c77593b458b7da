"""Which traces leave the process: a decision taken when the trace's local root ends.

Every request is recorded (its audit event stores a summary of its trace), but
not every trace has to be exported. A trace is exported whole when

- the caller's ``traceparent`` had its sampled flag set (W3C Trace Context
  §3.2.2.5: the caller's tracer records this trace and wants our part of it),
- or its trace id falls within the export ratio, decided on the id alone
  exactly as the SDK's ``TraceIdRatioBased`` sampler decides, so that every
  replica (and any other OpenTelemetry tracer with the same ratio) agrees,
- or, known only when the root ends, any of its spans has an error status or
  the root's ``http.response.status_code`` is 400 or more (denials, errors).

The first two are known when the root starts: such traces are handed to the
export processor span by span as their spans end, as if nothing decided. The
others are held by `TraceSummaryRecorder`, which keeps each trace's finished
spans until its root ends anyway, and are handed over or dropped then:
a dropped trace never reaches the batch processor, so it costs nothing on the
export thread, and its lean spans are never made the SDK's
(`gateway.observability.lean_spans`).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import StatusCode

from gateway.observability.lean_spans import LeanSpan, RecordedSpan

__all__ = ["DEFAULT_EXPORT_RATIO", "TailSampledExport"]

DEFAULT_EXPORT_RATIO = 1.0

# TraceIdRatioBased reads the 64 low-order bits of the trace id (compatibility
# with 64-bit trace ids); the same bits and bound keep the decisions identical.
_TRACE_ID_BITS = TraceIdRatioBased.TRACE_ID_LIMIT


class TailSampledExport:
    """Decide which traces *processor* (the batch span processor) receives.

    Driven by `TraceSummaryRecorder`: `head_decision` when a trace's local root
    starts, `tail_decision` when it ends undecided, `export` for the spans of
    an exported trace.
    """

    __slots__ = ("_bound", "_processor", "ratio")

    def __init__(self, processor: SpanProcessor, *, ratio: float = DEFAULT_EXPORT_RATIO) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"export ratio must be between 0 and 1, not {ratio!r}")
        self._processor = processor
        self.ratio = ratio
        self._bound = TraceIdRatioBased.get_bound_for_rate(ratio)

    def head_decision(self, root: RecordedSpan) -> bool:
        """Whether the trace of this starting local root is exported whatever happens."""
        parent = root.parent
        if parent is not None and parent.trace_flags.sampled:
            return True
        context = root.context
        return context is not None and self.in_ratio(context.trace_id)

    def in_ratio(self, trace_id: int) -> bool:
        """Whether the trace id falls within the export ratio (`TraceIdRatioBased`'s rule)."""
        return trace_id & _TRACE_ID_BITS < self._bound

    def tail_decision(self, root: RecordedSpan, spans: Sequence[RecordedSpan]) -> bool:
        """Whether an undecided trace is exported now that its root has ended."""
        status = (root.attributes or {}).get("http.response.status_code")
        if isinstance(status, int) and status >= 400:
            return True
        return _failed(root) or any(_failed(span) for span in spans)

    def lone_decision(self, span: RecordedSpan) -> bool:
        """Whether a span whose trace is not held is exported.

        Its trace's root ended first (a task that outlived its request) or was
        forgotten among too many open traces; the caller's sampled flag is no
        longer known, the rest of the rule still applies.
        """
        context = span.context
        return _failed(span) or (context is not None and self.in_ratio(context.trace_id))

    def export(self, span: RecordedSpan) -> None:
        """Hand one span of an exported trace to the export processor, as the SDK's span."""
        self._processor.on_end(span.readable() if isinstance(span, LeanSpan) else span)

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._processor.force_flush(timeout_millis)


def _failed(span: RecordedSpan) -> bool:
    """Whether the span ended with an error status."""
    return span.status.status_code is StatusCode.ERROR
