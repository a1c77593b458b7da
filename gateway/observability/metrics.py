"""The process's meter provider and the gateway's instruments.

Metrics leave the process the way traces do: over OTLP/HTTP to the collector
at ``LINKGATE_OTLP_ENDPOINT`` (``/v1/metrics``), pushed every
``LINKGATE_METRICS_EXPORT_INTERVAL`` seconds by the SDK's periodic reader on a
thread of its own. Without an endpoint the gateway holds a `GatewayMetrics`
that records nothing: each recording method returns at its first line.

Names, units and attributes follow the OpenTelemetry semantic conventions
where they exist (HTTP server and client, database connection pools);
the rest are the gateway's own, under ``linkgate.``:

- ``http.server.request.duration`` (histogram, s): ``http.request.method``,
  ``http.route``, ``http.response.status_code``, ``error.type``;
- ``http.client.request.duration`` (histogram, s, one per attempt):
  ``http.request.method``, ``server.address``, ``server.port``,
  ``linkgate.provider``, ``http.response.status_code``, ``error.type``;
- ``linkgate.token.refreshes`` (counter): ``linkgate.provider``, ``linkgate.outcome``;
- ``linkgate.records.released`` and ``linkgate.records.dropped`` (counters):
  ``linkgate.provider``, ``linkgate.resource``, and for drops ``linkgate.rule``;
- ``linkgate.audit.append.batch_size`` (histogram, events) and
  ``linkgate.audit.append.duration`` (histogram, s), ``error.type`` on a failed
  batch; ``linkgate.audit.append.failures`` (counter, events);
- ``linkgate.audit.pending`` (observable up-down counter): events not yet durable;
- ``db.client.connection.count`` (observable up-down counter):
  ``db.client.connection.state`` (``idle``, ``used``), ``db.client.connection.pool.name``;
  ``db.client.connection.max`` beside it.

Every attribute value comes from a bounded set: route templates (never the
path, which holds connection ids and connect tokens), methods, status codes,
exception class names, provider and resource names, policy rule ids. No
customer, caller, connection or subject ever becomes an attribute: each would
be a time series per value, and an identifier in the monitoring system.

Nothing on the request path calls the SDK. Durations and batch sizes are
aggregated in the process (`gateway.observability.histograms`) and added to
each export; counters are totals in a dictionary that observable counters
report. The SDK's synchronous instruments cost about 76,000 instructions a
call here, 15% of a records read for the five or six a read made. The
observable instruments are read by the export thread from counters the
gateway keeps in memory anyway (the audit writer's queue, SQLAlchemy's pool
status); their callbacks never touch the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from typing import Protocol

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import (
    CallbackOptions,
    Meter,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
)
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricsData, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.util.types import AttributeValue

from gateway.observability.histograms import HistogramExporter, HistogramSet

__all__ = [
    "DEFAULT_EXPORT_INTERVAL",
    "GatewayMetrics",
    "PendingEvents",
    "PoolStatus",
    "RefreshOutcome",
    "configure_metrics",
]

# Seconds between exports: the OpenTelemetry SDK's own default is 60 s; 30 s
# gives a dashboard two points a minute for about one small OTLP request per
# replica per interval.
DEFAULT_EXPORT_INTERVAL = 30.0

# The OTLP/HTTP path for metrics under a collector's base URL (OTLP spec,
# "OTLP/HTTP Request"), as OTEL_EXPORTER_OTLP_ENDPOINT would append it.
_OTLP_METRICS_PATH = "/v1/metrics"

# The HTTP semantic conventions' advised boundaries for request durations,
# with two below 5 ms: a records read is answered in a few milliseconds, and
# without them its whole distribution would sit in the first bucket.
_HTTP_DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
# An audit append commits in well under a millisecond to tens of milliseconds.
_APPEND_DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Group commit takes up to 500 events a batch (gateway.audit.writer).
_BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)

# Attribute sets are built once per distinct combination, by the export thread,
# and handed to the SDK at every export (it copies what it keeps). Bounded,
# like the SDK's own 2,000 series per instrument: past it a set is built per call.
_CACHED_ATTRIBUTE_SETS = 1024
_SCOPE = "gateway"


class RefreshOutcome(StrEnum):
    """How a token refresh that asked the provider ended (``linkgate.outcome``)."""

    REFRESHED = "refreshed"
    NEEDS_REAUTH = "needs_reauth"  # the grant is gone: the customer must link again
    FAILED = "failed"  # transient or refused; the connection cools off and is retried


_Attributes = Mapping[str, AttributeValue]


class PoolStatus(Protocol):
    """What `GatewayMetrics.watch_pool` reads: SQLAlchemy's ``QueuePool`` has both."""

    def checkedin(self) -> int: ...

    def checkedout(self) -> int: ...


class PendingEvents(Protocol):
    """What `GatewayMetrics.watch_audit_writer` reads (`gateway.audit.AuditWriter`)."""

    @property
    def pending(self) -> int: ...


class _AttributeSets:
    """Attribute mappings by a tuple of their values, each built once."""

    __slots__ = ("_build", "_sets")

    def __init__(self, build: Callable[..., _Attributes]) -> None:
        self._build = build
        self._sets: dict[tuple[object, ...], _Attributes] = {}

    def get(self, *key: object) -> _Attributes:
        found = self._sets.get(key)
        if found is None:
            found = self._build(*key)
            if len(self._sets) < _CACHED_ATTRIBUTE_SETS:
                self._sets[key] = found
        return found


class _Totals:
    """A counter kept in memory by the event loop, reported as an observable counter.

    Adding is one dict update. The SDK's ``Counter.add`` checks, copies and
    hashes the attribute set on every call, tens of times the work, and these
    counters are added to on every records read; here the export thread
    builds each attribute set once and reports the totals at each collection.
    """

    __slots__ = ("_counts", "_sets")

    def __init__(self, build: Callable[..., _Attributes]) -> None:
        self._counts: dict[tuple[object, ...], int] = {}
        self._sets = _AttributeSets(build)  # used by the export thread only

    def add(self, amount: int, *key: object) -> None:
        counts = self._counts
        counts[key] = counts.get(key, 0) + amount

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        # list() copies the items in one step of C code, which the event loop's
        # updates cannot interleave (they need the GIL): never a changing dict.
        for key, total in list(self._counts.items()):
            yield Observation(total, self._sets.get(*key))


def _present(*pairs: tuple[str, AttributeValue | None]) -> _Attributes:
    """The attributes among *pairs* whose value is known."""
    return {name: value for name, value in pairs if value is not None}


def _server_attributes(
    method: str, route: str | None, status: int, error: str | None
) -> _Attributes:
    return _present(
        ("http.request.method", method),
        ("http.route", route),
        ("http.response.status_code", status),
        ("error.type", error),
    )


def _client_attributes(
    method: str,
    host: str,
    port: int | None,
    provider: str | None,
    status: int | None,
    error: str | None,
) -> _Attributes:
    return _present(
        ("http.request.method", method),
        ("server.address", host),
        ("server.port", port),
        ("linkgate.provider", provider),
        ("http.response.status_code", status),
        ("error.type", error),
    )


def _failure_attributes(error: str | None) -> _Attributes:
    return _present(("error.type", error))


def _records_attributes(provider: str, resource: str, rule: str | None) -> _Attributes:
    return _present(
        ("linkgate.provider", provider),
        ("linkgate.resource", resource),
        ("linkgate.rule", rule),
    )


def _observed_totals(
    meter: Meter,
    name: str,
    *,
    unit: str,
    description: str,
    attributes: Callable[..., _Attributes],
) -> _Totals:
    """Totals kept in memory, reported as the observable counter *name*."""
    totals = _Totals(attributes)
    meter.create_observable_counter(
        name, callbacks=[totals.observe], unit=unit, description=description
    )
    return totals


class GatewayMetrics:
    """The gateway's instruments, recorded through small methods that the hot path calls.

    Built from an SDK meter provider it records: counters and gauges through
    the provider's readers, histograms through `collected` (which an exporter
    wrapped in `HistogramExporter` calls at each export, and a test may call on
    what an ``InMemoryMetricReader`` returns). Built by `disabled` (no
    endpoint), every method returns before doing anything.
    """

    def __init__(
        self,
        provider: MeterProvider,
        *,
        enabled: bool = True,
        histograms: HistogramSet | None = None,
    ) -> None:
        self.provider = provider
        self.enabled = enabled
        # Durations and batch sizes: recorded on the event loop, aggregated here
        # and added to each export (gateway.observability.histograms), because
        # the SDK's own Histogram.record was most of what metrics cost a request.
        self.histograms = histograms if histograms is not None else HistogramSet(_SCOPE)
        meter = provider.get_meter(_SCOPE)
        self._server_duration = self.histograms.create(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            bounds=_HTTP_DURATION_BUCKETS,
            attributes=_AttributeSets(_server_attributes).get,
        )
        self._client_duration = self.histograms.create(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (one per attempt).",
            bounds=_HTTP_DURATION_BUCKETS,
            attributes=_AttributeSets(_client_attributes).get,
        )
        failures = _AttributeSets(_failure_attributes).get
        self._batch_size = self.histograms.create(
            "linkgate.audit.append.batch_size",
            unit="{event}",
            description="Audit events committed together by one group commit.",
            bounds=_BATCH_SIZE_BUCKETS,
            attributes=failures,
        )
        self._append_duration = self.histograms.create(
            "linkgate.audit.append.duration",
            unit="s",
            description="Time from a batch of audit events leaving the queue to its commit.",
            bounds=_APPEND_DURATION_BUCKETS,
            attributes=failures,
        )
        self._refreshes = _observed_totals(
            meter,
            "linkgate.token.refreshes",
            unit="{refresh}",
            description="Token refreshes, by outcome.",
            attributes=lambda provider, outcome: {
                "linkgate.provider": provider,
                "linkgate.outcome": outcome,
            },
        )
        self._released = _observed_totals(
            meter,
            "linkgate.records.released",
            unit="{record}",
            description="Records released to callers after the privacy rules.",
            attributes=_records_attributes,
        )
        self._dropped = _observed_totals(
            meter,
            "linkgate.records.dropped",
            unit="{record}",
            description="Records withheld from callers, by the privacy rule that dropped them.",
            attributes=_records_attributes,
        )
        self._append_failures = _observed_totals(
            meter,
            "linkgate.audit.append.failures",
            unit="{event}",
            description="Audit events whose append failed (their requests were refused).",
            attributes=_failure_attributes,
        )
        # Watched sources, replaced (never mutated in place) so that the export
        # thread can iterate over them while the event loop adds or removes one.
        self._pools: tuple[tuple[PoolStatus, str, int], ...] = ()
        self._writers: tuple[PendingEvents, ...] = ()
        meter.create_observable_up_down_counter(
            "linkgate.audit.pending",
            callbacks=[self._observe_pending],
            unit="{event}",
            description="Audit events queued or being committed, not yet durable.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[self._observe_connections],
            unit="{connection}",
            description="Connections of the database pool, by state (idle or used).",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            callbacks=[self._observe_connection_limit],
            unit="{connection}",
            description="The most connections the pool opens (its size plus overflow).",
        )

    @classmethod
    def disabled(cls) -> GatewayMetrics:
        """Instruments that record nothing (no OTLP endpoint)."""
        return cls(NoOpMeterProvider(), enabled=False)

    def collected(self, data: MetricsData | None) -> MetricsData | None:
        """*data*, as an SDK reader collected it, with this process's histograms added."""
        return self.histograms.merged(data)

    def shutdown(self) -> None:
        """Export what was recorded since the last export, then stop the export thread."""
        if isinstance(self.provider, SdkMeterProvider):
            self.provider.shutdown()

    # -- the request path -------------------------------------------------------

    def server_request(
        self, method: str, route: str | None, status: int, error: str | None, seconds: float
    ) -> None:
        """One HTTP request served: *route* is the template (None when no route matched)."""
        if self.enabled:
            self._server_duration.record(seconds, method, route, status, error)

    def client_request(
        self,
        method: str,
        host: str,
        port: int | None,
        provider: str | None,
        status: int | None,
        error: str | None,
        seconds: float,
    ) -> None:
        """One outbound attempt (an upstream API call, a token or JWKS request)."""
        if self.enabled:
            self._client_duration.record(seconds, method, host, port, provider, status, error)

    def token_refresh(self, provider: str, outcome: RefreshOutcome) -> None:
        """A token refresh ended: the provider was asked, or had to be and could not be."""
        if self.enabled:
            self._refreshes.add(1, provider, outcome.value)

    def records(
        self, provider: str, resource: str, released: int, dropped: Mapping[str, int]
    ) -> None:
        """A page served: records released, and those dropped by each rule id."""
        if not self.enabled:
            return
        if released:
            self._released.add(released, provider, resource, None)
        for rule, count in dropped.items():
            self._dropped.add(count, provider, resource, rule)

    # -- the audit writer (gateway.audit.writer.BatchObserver) --------------------

    def batch_committed(self, size: int, seconds: float) -> None:
        if self.enabled:
            self._batch_size.record(size, None)
            self._append_duration.record(seconds, None)

    def batch_failed(self, size: int, seconds: float, error: str) -> None:
        if self.enabled:
            self._batch_size.record(size, error)
            self._append_duration.record(seconds, error)
            self._append_failures.add(size, error)

    # -- what the export thread reads ---------------------------------------------

    @contextmanager
    def watch_pool(self, pool: PoolStatus, *, name: str, maximum: int) -> Iterator[None]:
        """Report *pool*'s idle and used connections (and *maximum*) while in the block."""
        entry = (pool, name, maximum)
        self._pools = (*self._pools, entry)
        try:
            yield
        finally:
            self._pools = tuple(watched for watched in self._pools if watched is not entry)

    @contextmanager
    def watch_audit_writer(self, writer: PendingEvents) -> Iterator[None]:
        """Report *writer*'s events not yet durable while in the block."""
        self._writers = (*self._writers, writer)
        try:
            yield
        finally:
            self._writers = tuple(watched for watched in self._writers if watched is not writer)

    def _observe_pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        writers = self._writers
        if writers:
            yield Observation(sum(writer.pending for writer in writers))

    def _observe_connections(self, _options: CallbackOptions) -> Iterable[Observation]:
        for pool, name, _maximum in self._pools:
            base = {"db.client.connection.pool.name": name}
            yield Observation(pool.checkedin(), {**base, "db.client.connection.state": "idle"})
            yield Observation(pool.checkedout(), {**base, "db.client.connection.state": "used"})

    def _observe_connection_limit(self, _options: CallbackOptions) -> Iterable[Observation]:
        for _pool, name, maximum in self._pools:
            yield Observation(maximum, {"db.client.connection.pool.name": name})


def _metrics_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    return base if base.endswith(_OTLP_METRICS_PATH) else base + _OTLP_METRICS_PATH


def configure_metrics(
    *,
    service_name: str,
    otlp_endpoint: str | None,
    export_interval: float = DEFAULT_EXPORT_INTERVAL,
) -> GatewayMetrics:
    """The process's instruments: exported to *otlp_endpoint* every *export_interval* seconds.

    *otlp_endpoint* is the collector's base URL (``http://collector:4318``);
    when it is ``None`` or empty nothing is recorded. The caller shuts the
    result down (`GatewayMetrics.shutdown`) on exit, which exports what the
    last interval recorded.
    """
    if not otlp_endpoint:
        return GatewayMetrics.disabled()
    resource = Resource.create({SERVICE_NAME: service_name})
    histograms = HistogramSet(_SCOPE, resource=resource)
    reader = PeriodicExportingMetricReader(
        HistogramExporter(OTLPMetricExporter(endpoint=_metrics_url(otlp_endpoint)), histograms),
        export_interval_millis=export_interval * 1000,
    )
    provider = SdkMeterProvider(
        metric_readers=[reader],
        resource=resource,
        shutdown_on_exit=False,  # the app's lifespan shuts it down
    )
    return GatewayMetrics(provider, histograms=histograms)
