"""The OpenTelemetry API's spans, recorded without the SDK's machinery until a trace is exported.

Every request is traced (its audit event embeds a summary of its trace), but
only the traces `TailSampledExport` selects leave the process: in deploy/ one
successful trace in ten. The SDK's `Span` pays on every span for what only an
exported one needs: a lock per span and another per attribute mapping, the
cleaning pass and span-limits checks of `BoundedAttributes`, the processor
fan-out and a `ReadableSpan` copy when it ends, about 117k instructions for a
bare start and end and 8k more per attribute.

`LeanTracerProvider` implements the OpenTelemetry *API* (`TracerProvider`,
`Tracer`, `Span`) instead, with a plain span (`LeanSpan`: ids, name, parent,
times, an attributes dict, events, status) handed to one recorder
(`TraceSummaryRecorder`) as it starts and ends. It becomes the SDK's
`ReadableSpan` (`LeanSpan.readable`) only when its trace is exported, and
exported spans read as the SDK's would:

- ids come from the SDK's `RandomIdGenerator`, and every span is recorded and
  sampled, as the SDK's ``ALWAYS_ON`` sampler decides: its trace flags, W3C
  random-trace-id flag and trace state are the ones the SDK's tracer gives;
- attribute values are cleaned as `BoundedAttributes` cleans them (plain
  str, bool, int and float are kept as they are; anything else, and every key
  that is not a non-empty str, goes through a `BoundedAttributes` itself), a
  key set again moves to the end, and the SDK's `SpanLimits` (read from the
  same ``OTEL_*`` variables) bound attributes, events and links;
- status, exception events, context-manager use and calls on an ended span
  follow the SDK's `Span` (its rules and its warnings).

Left out: the per-span lock (a span is changed by the task or thread that
holds it, which is how the gateway uses its spans), the SDK's own metrics
(``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``), tracer configurators, and the
deprecated ``InstrumentationInfo`` on exported spans (the scope is there).
"""

from __future__ import annotations

import atexit
import logging
import sys
import traceback
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from time import time_ns
from types import MappingProxyType, TracebackType
from typing import Protocol, TypeAlias

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

__all__ = ["LeanSpan", "LeanTracer", "LeanTracerProvider", "RecordedSpan", "SpanRecorder"]

_LOG = logging.getLogger(__name__)
_UNSET = Status(StatusCode.UNSET)
# Every span is sampled (ALWAYS_ON); the random-trace-id flag (W3C Trace Context
# Level 2 §3.2.2.5) is the id generator's for a new trace, the parent's otherwise.
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
# Kept as given when the value's type is exactly one of these; the SDK's
# cleaning returns them unchanged too (unless a length limit truncates str).
_PLAIN: frozenset[type] = frozenset({str, bool, int, float})
_PLAIN_UNLESS_TOO_LONG: frozenset[type] = frozenset({bool, int, float})


class SpanRecorder(Protocol):
    """What `LeanTracerProvider` tells of its spans: the recorder of the process's traces."""

    def on_start(self, span: LeanSpan, parent_context: Context | None = None) -> None: ...

    def on_end(self, span: LeanSpan) -> None: ...

    def shutdown(self) -> None: ...

    def force_flush(self, timeout_millis: int = 30_000) -> bool: ...


class _Limits:
    """The SDK's `SpanLimits`, with None (no limit) made a number once."""

    __slots__ = (
        "attribute_length",
        "event_attributes",
        "events",
        "link_attributes",
        "links",
        "plain",
        "span_attribute_length",
        "span_attributes",
    )

    def __init__(self, limits: SpanLimits) -> None:
        self.span_attributes: int = (
            sys.maxsize if limits.max_span_attributes is None else limits.max_span_attributes
        )
        self.span_attribute_length = limits.max_span_attribute_length
        self.attribute_length = limits.max_attribute_length
        self.event_attributes = limits.max_event_attributes
        self.link_attributes = limits.max_link_attributes
        self.events = limits.max_events
        self.links = limits.max_links
        self.plain = _PLAIN if self.span_attribute_length is None else _PLAIN_UNLESS_TOO_LONG


class LeanSpan(trace.Span):
    """A span of the OpenTelemetry API as plain data; see the module docstring.

    Read like the SDK's `ReadableSpan` (`name`, `context`, `parent`, `kind`,
    `attributes`, `events`, `links`, `status`, `start_time`, `end_time`), so
    that the recorder and the export decision read either alike.
    """

    __slots__ = (
        "_attributes",
        "_context",
        "_dropped_attributes",
        "_end_time",
        "_events",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_record_exception",
        "_set_status_on_exception",
        "_start_time",
        "_status",
        "_tracer",
    )

    def __init__(
        self,
        tracer: LeanTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_time: int,
        *,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._start_time = start_time
        self._end_time: int | None = None
        self._attributes: dict[str, types.AnyValue] = {}
        self._dropped_attributes = 0
        self._events: list[Event] = []
        self._links: list[Link] = []
        self._status = _UNSET
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    # What a processor reads, as ReadableSpan names it.

    @property
    def name(self) -> str:
        return self._name

    @property
    def context(self) -> SpanContext:
        return self._context

    @property
    def parent(self) -> SpanContext | None:
        return self._parent

    @property
    def kind(self) -> SpanKind:
        return self._kind

    @property
    def attributes(self) -> Mapping[str, types.AnyValue]:
        return MappingProxyType(self._attributes)

    @property
    def events(self) -> Sequence[Event]:
        return tuple(self._events)

    @property
    def links(self) -> Sequence[Link]:
        return tuple(self._links)

    @property
    def status(self) -> Status:
        return self._status

    @property
    def start_time(self) -> int:
        return self._start_time

    @property
    def end_time(self) -> int | None:
        return self._end_time

    # The API's Span.

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            _LOG.warning("Setting attribute on ended span.")
            return
        limits = self._tracer.limits
        if value.__class__ in limits.plain and key.__class__ is str and key:
            self._put(key, value, limits)
            return
        # Anything else is cleaned (or refused, with a warning) by the SDK's own code.
        cleaned = BoundedAttributes(
            None, None, immutable=False, max_value_len=limits.span_attribute_length
        )
        cleaned[key] = value
        self._dropped_attributes += cleaned.dropped
        for item in cleaned.items():
            self._put(*item, limits)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end_time is not None:
            _LOG.warning("Setting attribute on ended span.")
            return
        self._put_all(attributes)

    def _put_all(self, attributes: Mapping[str, types.AnyValue]) -> None:
        limits = self._tracer.limits
        plain = limits.plain
        for key, value in attributes.items():
            if value.__class__ not in plain or key.__class__ is not str or not key:
                cleaned = BoundedAttributes(
                    None, attributes, max_value_len=limits.span_attribute_length
                )
                self._dropped_attributes += cleaned.dropped
                attributes = cleaned
                break
        own = self._attributes
        if not own and len(attributes) <= limits.span_attributes:
            own.update(attributes)  # a span's first attributes: nothing to reorder or drop
            return
        for item in attributes.items():
            self._put(*item, limits)

    def _put(self, key: str, value: types.AnyValue, limits: _Limits) -> None:
        """Set a clean item as `BoundedAttributes` sets it: last set last, oldest dropped."""
        attributes = self._attributes
        if key in attributes:
            del attributes[key]
        elif len(attributes) >= limits.span_attributes:
            if not limits.span_attributes:
                self._dropped_attributes += 1
                return
            _LOG.warning(
                "Attributes dict is full. Dropping the oldest key-value pair from attributes "
                "to make space for the new key-value pair."
            )
            del attributes[next(iter(attributes))]
            self._dropped_attributes += 1
        attributes[key] = value

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is not None:
            _LOG.warning("Tried calling %s on an ended span.", "_add_event")
            return
        limits = self._tracer.limits
        cleaned = BoundedAttributes(
            limits.event_attributes, attributes, max_value_len=limits.attribute_length
        )
        self._events.append(Event(name, cleaned, timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not _is_valid_link(context, attributes):
            return
        if self._end_time is not None:
            _LOG.warning("Tried calling %s on an ended span.", "_add_link")
            return
        self._links.append(_bounded_link(context, attributes, self._tracer.limits))

    def update_name(self, name: str) -> None:
        if self._end_time is not None:
            _LOG.warning("Tried calling %s on an ended span.", "update_name")
            return
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None:
            _LOG.warning("Tried calling %s on an ended span.", "set_status")
            return
        # As the SDK: an OK status is final, and UNSET never replaces a status.
        if self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _LOG.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description,
                )
            self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Record *exception* as an ``exception`` event, as the SDK's span records it."""
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        exception_type = f"{module}.{qualname}" if module and module != "builtins" else qualname
        recorded: dict[str, types.AnyValue] = {
            EXCEPTION_TYPE: exception_type,
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            _LOG.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        self._tracer.provider.ended(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """End the span; an exception leaving the block is recorded first, as the SDK does."""
        if exc_val is not None and self._end_time is None:
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    def readable(self) -> ReadableSpan:
        """This ended span as the SDK's `ReadableSpan`, for the export processor."""
        tracer = self._tracer
        attributes: Mapping[str, types.AnyValue] = MappingProxyType(self._attributes)
        if self._dropped_attributes:
            bounded = BoundedAttributes(
                tracer.limits.span_attributes, self._attributes, immutable=True
            )
            bounded.dropped = self._dropped_attributes
            attributes = bounded
        return ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=tracer.provider.resource,
            attributes=attributes,
            events=BoundedList.from_seq(tracer.limits.events, self._events) if self._events else (),
            links=BoundedList.from_seq(tracer.limits.links, self._links) if self._links else (),
            kind=self._kind,
            status=self._status,
            start_time=self._start_time,
            end_time=self._end_time,
            instrumentation_scope=tracer.scope,
        )


# A span as the recorder and the export decision read it: the SDK's or a lean one.
RecordedSpan: TypeAlias = ReadableSpan | LeanSpan


def _is_valid_link(context: SpanContext, attributes: types.Attributes) -> bool:
    """The SDK's rule: a link needs a valid context, or attributes or a trace state."""
    return bool(context and (context.is_valid or (attributes or context.trace_state)))


def _bounded_link(context: SpanContext, attributes: types.Attributes, limits: _Limits) -> Link:
    cleaned = BoundedAttributes(
        limits.link_attributes, attributes, max_value_len=limits.attribute_length
    )
    return Link(context, cleaned)


class LeanTracer(trace.Tracer):
    """Starts `LeanSpan`s for one instrumentation scope."""

    __slots__ = ("_ids", "limits", "provider", "scope")

    def __init__(self, provider: LeanTracerProvider, scope: InstrumentationScope) -> None:
        self.provider = provider
        self.scope = scope
        self.limits = provider.limits
        self._ids = provider.id_generator

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> LeanSpan:
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is not None and not isinstance(parent, SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
        ids = self._ids
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = ids.generate_trace_id()
            flags = _SAMPLED_RANDOM if ids.is_trace_id_random() else _SAMPLED
            trace_state = None
        else:
            trace_id = parent.trace_id
            flags = _SAMPLED_RANDOM if parent.trace_flags.random_trace_id else _SAMPLED
            trace_state = parent.trace_state
        span = LeanSpan(
            self,
            name,
            SpanContext(
                trace_id,
                ids.generate_span_id(),
                is_remote=False,
                trace_flags=flags,
                trace_state=trace_state,
            ),
            parent,
            kind,
            start_time if start_time is not None else time_ns(),
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )
        if attributes:
            span._put_all(attributes)
        if links:
            valid = [
                _bounded_link(link.context, link.attributes, self.limits)
                for link in links
                if link and _is_valid_link(link.context, link.attributes)
            ]
            span._links.extend(valid)
        self.provider.started(span, context)
        return span

    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> AbstractContextManager[trace.Span]:
        """Start a span and make it current, as the SDK's tracer does (through `use_span`)."""
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        return trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )


class LeanTracerProvider(trace.TracerProvider):
    """The process's tracer provider: lean spans, each handed to *recorder* as it starts and ends.

    Processors added with `add_span_processor` (a test's in-memory exporter, say)
    are given every span when it ends, as the SDK's `ReadableSpan`; their
    ``on_start`` is not called, as there is no SDK span to give them.
    """

    def __init__(
        self,
        recorder: SpanRecorder,
        *,
        resource: Resource | None = None,
        id_generator: IdGenerator | None = None,
        span_limits: SpanLimits | None = None,
        shutdown_on_exit: bool = True,
    ) -> None:
        self.recorder = recorder
        self.resource = resource if resource is not None else Resource.create({})
        self.id_generator = id_generator or RandomIdGenerator()
        self.limits = _Limits(span_limits or SpanLimits())
        self._processors: list[SpanProcessor] = []
        self._shut_down = False
        if shutdown_on_exit:
            atexit.register(self.shutdown)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> LeanTracer:
        if not instrumenting_module_name:
            instrumenting_module_name = ""
            _LOG.error("get_tracer called with missing module name.")
        scope = InstrumentationScope(
            instrumenting_module_name, instrumenting_library_version or "", schema_url, attributes
        )
        return LeanTracer(self, scope)

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """Also give *processor* every span as it ends (see the class docstring)."""
        self._processors.append(processor)

    def started(self, span: LeanSpan, context: Context | None) -> None:
        self.recorder.on_start(span, context)

    def ended(self, span: LeanSpan) -> None:
        self.recorder.on_end(span)
        if self._processors:
            readable = span.readable()
            for processor in self._processors:
                processor.on_end(readable)

    def shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        self.recorder.shutdown()
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        flushed = self.recorder.force_flush(timeout_millis)
        return all([flushed, *(p.force_flush(timeout_millis) for p in self._processors)])
