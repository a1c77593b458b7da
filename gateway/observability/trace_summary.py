"""A compact, in-memory summary of each in-flight request's trace.

The audit log stores, beside each event's trace id, what happened on the way
(span names, durations, upstream status codes, retries, whether a token was
refreshed) so an auditor can read it without a tracing backend.
`TraceSummaryRecorder` keeps that summary per trace from the moment the
trace's local root span (the request's server span) starts until it ends;
memory is bounded by the number of traces and of spans per trace.

Holding each trace until its root ends is also what a tail-based export
decision needs, so the recorder is the one recorder of the process's tracer
provider (`LeanTracerProvider`) and drives the export as well
(`TailSampledExport`): one lookup per finished span for both jobs. It reads
the provider's lean spans and the SDK's spans alike (as a `SpanProcessor` of
an SDK provider, which is how tests that bring their own provider use it).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor
from opentelemetry.trace import StatusCode
from opentelemetry.util.types import AttributeValue

from gateway.observability.export_sampling import TailSampledExport
from gateway.observability.lean_spans import LeanSpan, RecordedSpan
from gateway.observability.middleware import name_server_span
from gateway.observability.redaction import MASK, is_secret_key, redact_text

__all__ = [
    "AUDIT_MAX_SPANS",
    "DEFAULT_MAX_SPANS_PER_TRACE",
    "DEFAULT_MAX_TRACES",
    "SUMMARY_ATTRIBUTES",
    "SpanSummary",
    "TraceSummary",
    "TraceSummaryRecorder",
]

DEFAULT_MAX_TRACES = 1_024
DEFAULT_MAX_SPANS_PER_TRACE = 64
# An audit row's summary stays well inside the event's item budget
# (gateway.audit.event.MAX_TRACE_SUMMARY_ITEMS): about 15 items per span.
AUDIT_MAX_SPANS = 24

# Attributes worth keeping in an audit summary. The HTTP ones are OpenTelemetry
# semantic conventions (http.request.resend_count is the retry count); the
# linkgate.* ones are set by the gateway's own spans. http.request.method and
# http.route are not kept: an HTTP span's name is already "{method}" or
# "{method} {route}" (the HTTP conventions' span names), and every item of a
# summary is paid for again by the audit event's canonical JSON.
SUMMARY_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "error.type",
        "http.request.resend_count",
        "http.response.status_code",
        "linkgate.provider",
        "linkgate.refresh.trace_id",
        "linkgate.refreshed",
        "linkgate.resource",
        "linkgate.retries",
        "server.address",
    }
)
_STATUS_NAMES = {code: code.name.lower() for code in StatusCode}
_UNSET, _OK, _ERROR = StatusCode.UNSET, StatusCode.OK, StatusCode.ERROR


def _status_name(code: StatusCode) -> str:
    """``_STATUS_NAMES[code]``, by identity: an enum member's hash is a Python-level call."""
    if code is _UNSET:
        return "unset"
    if code is _ERROR:
        return "error"
    if code is _OK:
        return "ok"
    return _STATUS_NAMES[code]


class SpanSummary(TypedDict):
    """One finished span: ``{"name", "duration_ms", "status", "attributes"?}``."""

    name: str
    duration_ms: float
    status: str
    attributes: NotRequired[dict[str, AttributeValue]]


class TraceSummary(TypedDict):
    """A trace's finished spans so far, in the order they ended."""

    trace_id: str
    spans: list[SpanSummary]
    dropped_spans: int


@dataclass(slots=True)
class _Trace:
    root_span_id: int
    root: Span | LeanSpan  # the open local root (the request's server span)
    # Finished spans, summarised only when a summary is asked for: most
    # requests ask once (for their audit event), some never.
    spans: list[RecordedSpan] = field(default_factory=list)
    dropped_spans: int = 0
    # Exported whatever happens (decided when the root started): its spans go
    # to the exporter as they end rather than waiting for the root.
    exporting: bool = False


class TraceSummaryRecorder(SpanProcessor):
    """Keep a `TraceSummary` for each trace while its local root span is open.

    A span whose parent is absent or remote (the server span of a request)
    opens a trace; its children are kept as they end and summarised when a
    summary is asked for; the trace is forgotten when the root span ends or
    `discard` is called. Beyond *max_traces* open traces the oldest is
    forgotten; beyond *max_spans_per_trace* spans are only counted.

    With *export*, finished spans are also handed to it: a trace's spans as
    they end when its export was decided at the start, the held spans and the
    root when the root ends otherwise, and nothing for a trace it drops. Spans
    beyond *max_spans_per_trace* are exported only in a trace decided at its
    start; a span whose trace is no longer held (it ended after its root, or
    its trace was forgotten as too old) by `TailSampledExport.lone_decision`.
    """

    def __init__(
        self,
        *,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_spans_per_trace: int = DEFAULT_MAX_SPANS_PER_TRACE,
        attributes: Iterable[str] = SUMMARY_ATTRIBUTES,
        export: TailSampledExport | None = None,
    ) -> None:
        self._export = export
        self._max_traces = max_traces
        self._max_spans_per_trace = max_spans_per_trace
        self._attributes = frozenset(attributes)
        # Decided once: the kept keys are a fixed list, so whether each names a
        # secret never changes.
        self._secret_attributes = frozenset(key for key in self._attributes if is_secret_key(key))
        self._traces: OrderedDict[int, _Trace] = OrderedDict()
        # on_end runs on whichever thread ends the span (threadpool included).
        self._lock = threading.Lock()

    def on_start(self, span: Span | LeanSpan, parent_context: Context | None = None) -> None:
        if span.parent is not None and not span.parent.is_remote:
            return
        context = span.get_span_context()
        export = self._export
        trace = _Trace(
            context.span_id, span, exporting=export is not None and export.head_decision(span)
        )
        with self._lock:
            self._traces[context.trace_id] = trace
            while len(self._traces) > self._max_traces:
                self._traces.popitem(last=False)

    def on_end(self, span: RecordedSpan) -> None:
        context = span.context
        if context is None:
            return
        with self._lock:
            trace = self._traces.get(context.trace_id)
            root = trace is not None and context.span_id == trace.root_span_id
            if root:
                del self._traces[context.trace_id]
            elif trace is not None:
                if len(trace.spans) < self._max_spans_per_trace:
                    trace.spans.append(span)
                else:
                    trace.dropped_spans += 1
        export = self._export
        if export is None:
            return
        # Handed over outside the lock: the exporter has its own.
        if trace is None:
            if export.lone_decision(span):
                export.export(span)
        elif trace.exporting:
            export.export(span)
        elif root and export.tail_decision(span, trace.spans):
            for held in trace.spans:
                export.export(held)
            export.export(span)

    def _open(self, trace_id: str) -> tuple[Span | LeanSpan | None, list[RecordedSpan], int]:
        """The trace's open root, its finished spans so far and how many were dropped."""
        with self._lock:
            trace = self._traces.get(int(trace_id, 16))
            if trace is None:
                return None, [], 0
            return trace.root, list(trace.spans), trace.dropped_spans

    def _selected(self, span: RecordedSpan) -> dict[str, AttributeValue]:
        """The span's attributes worth an audit summary, secrets masked."""
        selected: dict[str, AttributeValue] = {}
        attributes = span.attributes
        if not attributes:
            return selected
        kept, secret = self._attributes, self._secret_attributes
        for key, value in attributes.items():
            if key in kept:
                selected[key] = MASK if key in secret else _redacted(value)
        return selected

    def _summarise(self, span: RecordedSpan) -> SpanSummary:
        duration_ns = (span.end_time or 0) - (span.start_time or 0)
        summary = SpanSummary(
            name=redact_text(span.name),
            duration_ms=round(duration_ns / 1_000_000, 3),
            status=_STATUS_NAMES[span.status.status_code],
        )
        selected = self._selected(span)
        if selected:
            summary["attributes"] = selected
        return summary

    def _summarise_root(self, root: Span | LeanSpan | None) -> SpanSummary | None:
        if root is None or root.start_time is None:
            return None
        name_server_span(root)
        summary = SpanSummary(
            name=redact_text(root.name),
            duration_ms=round((time.time_ns() - root.start_time) / 1_000_000, 3),
            status="in_progress",
        )
        selected = self._selected(root)
        if selected:
            summary["attributes"] = selected
        return summary

    def summary_for(self, trace_id: str) -> TraceSummary:
        """The summary of the trace with this 32-hex id; empty if unknown."""
        _root, spans, dropped = self._open(trace_id)
        return TraceSummary(
            trace_id=trace_id,
            spans=[self._summarise(span) for span in spans],
            dropped_spans=dropped,
        )

    def root_for(self, trace_id: str) -> SpanSummary | None:
        """The trace's local root span as it stands now, still open; None if unknown.

        Its status is ``in_progress`` and its duration the time elapsed so far:
        an audit event is written before its request's server span ends. A
        server span is named after its route by then (`name_server_span`).
        """
        root, _spans, _dropped = self._open(trace_id)
        return self._summarise_root(root)

    def audit_summary(self, trace_id: str, status_code: int | None = None) -> dict[str, Any]:
        """The summary in the audit log's form: integers and strings only.

        The open server span comes first, then the finished spans in the order
        they ended. The server span is still open (the event is written before
        the response), so its duration is the time so far; with the
        ``status_code`` the response is about to have, it reads as that
        response will: ``http.response.status_code`` set and the status the
        middleware will give it (``error`` for a 5xx, OpenTelemetry's HTTP
        server rule; ``unset`` otherwise). Without one it says ``in_progress``.

        The audit chain hashes canonical JSON without floats (RFC 8785
        §3.2.2.3 is where float formatting stops being reproducible), so
        durations are whole microseconds and any float attribute becomes its
        ``repr``.
        """
        # Built straight in the audit form (one dict per span, only the spans
        # the event keeps), copying only the kept spans: this runs for every
        # audited request.
        with self._lock:
            trace = self._traces.get(int(trace_id, 16))
            if trace is None:
                return {"spans": [], "dropped_spans": 0}
            root = trace.root
            started = root.start_time
            finished = trace.spans
            kept = finished[: AUDIT_MAX_SPANS if started is None else AUDIT_MAX_SPANS - 1]
            dropped = trace.dropped_spans + len(finished) - len(kept)
        spans: list[dict[str, Any]] = []
        if started is not None:
            name_server_span(root)
            elapsed = time.time_ns() - started
            if status_code is None:
                spans.append(self._audit_item(root, elapsed, "in_progress"))
            else:
                spans.append(self._audit_response(root, elapsed, status_code))
        for span in kept:
            duration_ns = (span.end_time or 0) - (span.start_time or 0)
            spans.append(self._audit_item(span, duration_ns, _status_name(span.status.status_code)))
        return {"spans": spans, "dropped_spans": dropped}

    def _audit_item(self, span: RecordedSpan, duration_ns: int, status: str) -> dict[str, Any]:
        """One span in the audit form: what ``_selected`` keeps, made ``_integral``.

        The same values as ``_integral(_redacted(value))`` (or the mask) for each
        kept attribute, in one pass: strings, ints and booleans, nearly every
        value here, are answered without the two calls.
        """
        item: dict[str, Any] = {
            "name": redact_text(span.name),
            "duration_us": round(duration_ns / 1_000),
            "status": status,
        }
        attributes = span.attributes
        if not attributes:
            return item
        kept, secret = self._attributes, self._secret_attributes
        selected: dict[str, Any] = {}
        for key, value in attributes.items():
            if key not in kept:
                continue
            if key in secret:
                selected[key] = MASK
            elif value.__class__ is str:
                selected[key] = redact_text(value)
            elif value.__class__ is int or value.__class__ is bool:
                selected[key] = value
            else:
                selected[key] = _integral(_redacted(value))
        if selected:
            item["attributes"] = selected
        return item

    def _audit_response(self, root: RecordedSpan, duration_ns: int, code: int) -> dict[str, Any]:
        """The open server span as it will end with a ``code`` response (see middleware)."""
        failed = code >= 500
        item = self._audit_item(root, duration_ns, "error" if failed else "unset")
        attributes: dict[str, Any] = item.setdefault("attributes", {})
        attributes["http.response.status_code"] = code
        if failed:
            attributes["error.type"] = str(code)
        return item

    def discard(self, trace_id: str) -> None:
        """Forget the trace with this 32-hex id (no error if unknown)."""
        with self._lock:
            self._traces.pop(int(trace_id, 16), None)

    def shutdown(self) -> None:
        with self._lock:
            self._traces.clear()
        if self._export is not None:
            self._export.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._export is None or self._export.force_flush(timeout_millis)


def _redacted(value: AttributeValue) -> AttributeValue:
    """*value* with credential-shaped text masked (its key is not a secret's)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (list, tuple)) and any(isinstance(item, str) for item in value):
        return [redact_text(item) if isinstance(item, str) else str(item) for item in value]
    return value


def _integral(value: object) -> Any:
    if isinstance(value, float):
        return repr(value)
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, (list, tuple)):
        return [_integral(item) for item in value]
    return str(value)
