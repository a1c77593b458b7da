"""The Prometheus series the collector serves for the gateway's instruments, derived from them.

Every recording method of `GatewayMetrics` runs once on an SDK meter provider
and an ``InMemoryMetricReader`` collects, so each instrument's name, unit, kind
and attribute keys are those the gateway exports over OTLP. They are then named
the way the collector's prometheus exporter names them (its translator,
``pkg/translator/prometheus`` in opentelemetry-collector-contrib, with the
default ``NormalizeName`` gate and metric suffixes on, as in deploy/):

- the name is split on every character that is not a letter or a digit and
  joined again with underscores (``http.server.request.duration`` ->
  ``http_server_request_duration``);
- a unit in braces is an annotation and is dropped (``{event}``); a real unit is
  appended in Prometheus's words unless the name already ends in it (``s`` ->
  ``_seconds``);
- a monotonic sum (a counter) gets ``_total``; a non-monotonic sum (an up-down
  counter) or a gauge is a Prometheus gauge with no suffix; an explicit-bucket
  histogram is three series, ``_bucket`` (with ``le``), ``_sum`` and ``_count``;
- attribute keys become label names with every other character an underscore;
- every series also carries ``job`` (the resource's ``service.name``),
  ``instance`` (its ``service.instance.id``) and the scope's ``otel_scope_name``,
  ``otel_scope_version`` and ``otel_scope_schema_url``.

The records read through the app are tested in tests/observability/test_metrics.py;
here every instrument must have points, failures and lost grants included,
which only the recording methods give without injecting faults into a server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Metric,
    Sum,
)

from gateway.api.openapi import OPENAPI
from gateway.app import SERVICE_NAME
from gateway.observability import GatewayMetrics
from gateway.observability.metrics import RefreshOutcome
from tests.deploy.promql import Reads, Selector, reads

RECORDS_ROUTE = "/v1/connections/{connection_id}/records/{resource}"
# What the exporter adds to every series (collector.go, getMetricMetadata).
COMMON_LABELS = frozenset(
    {"job", "instance", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}
)
# The only real unit the gateway's instruments use; a new one must be added here
# as the translator's unit table spells it, or the test stops.
_UNITS = {"s": "seconds"}
_SAMPLES = 40  # one every 30 s: twenty minutes of history


@dataclass
class Family:
    """One instrument as Prometheus sees it."""

    instrument: str  # the OpenTelemetry name
    kind: str  # "counter", "gauge" or "histogram"
    base: str  # the Prometheus name before any _total, _bucket, _sum, _count
    labels: set[str] = field(default_factory=set)
    # (series name, labels, promtool values): twenty minutes of this collection repeated.
    input_series: list[tuple[str, dict[str, str], str]] = field(default_factory=list)

    @property
    def names(self) -> dict[str, set[str]]:
        """Each Prometheus name of this family, with its label names."""
        labels = self.labels | COMMON_LABELS
        if self.kind == "histogram":
            return {
                f"{self.base}_bucket": labels | {"le"},
                f"{self.base}_sum": labels,
                f"{self.base}_count": labels,
            }
        if self.kind == "counter":
            return {f"{self.base}_total": labels}
        return {self.base: labels}


class _Pool:
    """A pool with 17 of its connections checked out and 3 idle."""

    def checkedin(self) -> int:
        return 3

    def checkedout(self) -> int:
        return 17


class _Writer:
    pending = 4


def prometheus_name(name: str, unit: str) -> str:
    """*name* and *unit* as the collector's prometheus exporter names them (no type suffix)."""
    tokens = re.findall(r"[A-Za-z0-9]+", name)
    if unit and "{" not in unit and "}" not in unit:
        assert unit in _UNITS, f"{name}: how does the exporter spell unit {unit!r}?"
        if _UNITS[unit] not in tokens:
            tokens.append(_UNITS[unit])
    return "_".join(tokens)


def label_name(key: str) -> str:
    """An attribute key as a Prometheus label name."""
    label = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return label if re.match(r"[A-Za-z]", label) else f"key_{label}"


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else format(bound, "g")


def _labels(attributes: Mapping[str, object]) -> dict[str, str]:
    labels = {label_name(key): str(value) for key, value in attributes.items()}
    labels.update(job=SERVICE_NAME, instance="pod-a", otel_scope_name="gateway")
    return labels


def _family(metric: Metric) -> Family:
    data = metric.data
    base = prometheus_name(metric.name, metric.unit or "")
    if isinstance(data, Histogram):
        family = Family(metric.name, "histogram", base)
        for point in data.data_points:
            labels = _labels(point.attributes or {})
            cumulative = 0
            for bound, count in zip(
                [*point.explicit_bounds, float("inf")], point.bucket_counts, strict=True
            ):
                cumulative += count
                family.input_series.append(
                    (
                        f"{base}_bucket",
                        {**labels, "le": _bound(bound)},
                        f"0+{cumulative}x{_SAMPLES}",
                    )
                )
            family.input_series.append((f"{base}_sum", labels, f"0+{point.sum}x{_SAMPLES}"))
            family.input_series.append((f"{base}_count", labels, f"0+{point.count}x{_SAMPLES}"))
    elif isinstance(data, Sum) and data.is_monotonic:
        family = Family(metric.name, "counter", base)
        for number in data.data_points:
            family.input_series.append(
                (f"{base}_total", _labels(number.attributes or {}), f"0+{number.value}x{_SAMPLES}")
            )
    else:
        assert isinstance(data, Sum | Gauge), f"{metric.name}: {type(data).__name__}"
        family = Family(metric.name, "gauge", base)
        for number in data.data_points:
            family.input_series.append(
                (base, _labels(number.attributes or {}), f"{number.value}x{_SAMPLES}")
            )
    for _name, labels, _values in family.input_series:
        family.labels |= set(labels) - COMMON_LABELS - {"le"}
    return family


def exported_families() -> dict[str, Family]:
    """Every instrument the gateway exports, by OpenTelemetry name, after one of each recording."""
    reader = InMemoryMetricReader()
    metrics = GatewayMetrics(MeterProvider(metric_readers=[reader], shutdown_on_exit=False))
    try:
        metrics.server_request("GET", RECORDS_ROUTE, 200, None, 0.004)
        metrics.server_request("GET", RECORDS_ROUTE, 503, "503", 0.02)
        metrics.server_request("GET", None, 404, None, 0.001)
        metrics.client_request("GET", "api.sandbox.example", 443, "sandbox", 200, None, 0.05)
        metrics.client_request("GET", "api.sandbox.example", 443, "sandbox", 503, "503", 0.3)
        metrics.client_request("GET", "api.sandbox.example", 443, "sandbox", None, "ReadTimeout", 5)
        metrics.client_request("POST", "auth.sandbox.example", 443, None, 200, None, 0.1)
        for outcome in RefreshOutcome:
            metrics.token_refresh("sandbox", outcome)
        metrics.records("sandbox", "posts", 3, {"public-or-direct": 1, "under-16": 1})
        metrics.batch_committed(2, 0.001)
        metrics.batch_failed(1, 0.002, "OperationalError")
        with (
            metrics.watch_pool(_Pool(), name="postgresql", maximum=20),
            metrics.watch_audit_writer(_Writer()),
        ):
            data = metrics.collected(reader.get_metrics_data())
    finally:
        metrics.shutdown()
    assert data is not None
    return {
        metric.name: _family(metric)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def series_labels(families: Mapping[str, Family]) -> dict[str, set[str]]:
    """Each Prometheus series name the gateway's instruments become, with its label names."""
    return {name: labels for family in families.values() for name, labels in family.names.items()}


def unknown_reads(
    expr: str, families: dict[str, Family], *, own_series: dict[str, set[str]] | None = None
) -> list[str]:
    """What *expr* reads that the exported series do not have: names, labels, label values.

    *own_series* adds series Prometheus makes itself (``up``), by name with their labels.
    """
    exported = series_labels(families)
    known = {**exported, **(own_series or {})}
    read: Reads = reads(expr)
    problems = []
    labels_read: set[str] = set()
    for selector in read.selectors:
        if selector.name not in known:
            problems.append(f"no series {selector.name}")
            continue
        labels_read |= known[selector.name]
        problems += [
            f"{selector.name} has no label {label}"
            for label in sorted(selector.labels - known[selector.name])
        ]
        if selector.name in exported:
            problems += _unknown_values(selector, families)
    problems += [
        f"no series read has label {label}" for label in sorted(read.grouping - labels_read)
    ]
    return problems


def _closed_label_values(families: dict[str, Family]) -> dict[str, set[str]]:
    """Labels whose every value the gateway can produce is known here."""
    states = {
        labels["db_client_connection_state"]
        for _name, labels, _values in families["db.client.connection.count"].input_series
    }
    return {
        "job": {SERVICE_NAME},
        "linkgate_outcome": {outcome.value for outcome in RefreshOutcome},
        "db_client_connection_state": states,
        # The contract's paths are the app's route templates (http.route).
        "http_route": set(OPENAPI["paths"]),
    }


def _unknown_values(selector: Selector, families: dict[str, Family]) -> list[str]:
    closed = _closed_label_values(families)
    return [
        f"{selector.name}{{{matcher.label}={matcher.value!r}}}: no such value"
        for matcher in selector.matchers
        if matcher.op == "="
        and matcher.label in closed
        and matcher.value not in closed[matcher.label]
    ]
