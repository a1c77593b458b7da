"""Histograms aggregated in the process export what the SDK's own histograms would."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource

from gateway.observability.histograms import MAX_SERIES, HistogramExporter, HistogramSet

BOUNDS = (0.005, 0.01, 0.1, 1.0)
VALUES = [0.0, 0.001, 0.005, 0.0050001, 0.01, 0.05, 0.1, 0.99, 1.0, 1.5, 30.0]


def _point(data: MetricsData | None, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    assert data is not None
    found = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        assert isinstance(point, HistogramDataPoint)
                        found[tuple(sorted((point.attributes or {}).items()))] = (
                            list(point.bucket_counts),
                            point.count,
                            round(point.sum, 9),
                            point.min,
                            point.max,
                            tuple(point.explicit_bounds),
                        )
    return found


def test_a_local_histogram_holds_what_the_sdks_histogram_holds() -> None:
    """Same values, same bounds: same buckets (edges included), count, sum, min and max."""
    reader = InMemoryMetricReader()
    sdk = (
        MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        .get_meter("test")
        .create_histogram("d", unit="s", explicit_bucket_boundaries_advisory=BOUNDS)
    )
    histograms = HistogramSet("test")
    local = histograms.create(
        "d",
        unit="s",
        description="",
        bounds=BOUNDS,
        attributes=lambda route: {"http.route": route},
    )
    for value in VALUES:
        sdk.record(value, {"http.route": "/a"})
        local.record(value, "/a")
    sdk.record(0.2, {"http.route": "/b"})
    local.record(0.2, "/b")

    assert _point(histograms.merged(None), "d") == _point(reader.get_metrics_data(), "d")


def test_merged_adds_the_histograms_to_what_the_sdk_collected() -> None:
    """The SDK's own metrics stay; ours join its scope of the same name, under its resource."""
    reader = InMemoryMetricReader()
    resource = Resource.create({"service.name": "linkgate-test"})
    provider = MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)
    provider.get_meter("gateway").create_counter("c").add(3)
    histograms = HistogramSet("gateway")
    histograms.create("h", unit="s", description="", bounds=BOUNDS).record(0.5)

    merged = histograms.merged(reader.get_metrics_data())

    assert merged is not None
    [resource_metrics] = merged.resource_metrics
    assert resource_metrics.resource.attributes["service.name"] == "linkgate-test"
    [scope] = resource_metrics.scope_metrics
    assert (scope.scope.name, [m.name for m in scope.metrics]) == ("gateway", ["c", "h"])


def test_nothing_recorded_adds_nothing() -> None:
    """Before any value a histogram exports no point, and the SDK's data passes unchanged."""
    histograms = HistogramSet("gateway")
    histograms.create("h", unit="s", description="", bounds=BOUNDS)

    assert histograms.merged(None) is None


def test_series_past_the_limit_are_counted_in_one_overflow_series() -> None:
    """As the SDK does: MAX_SERIES attribute sets, then one otel.metric.overflow series more."""
    histograms = HistogramSet("gateway")
    local = histograms.create(
        "h", unit="s", description="", bounds=BOUNDS, attributes=lambda n: {"n": n}
    )
    for n in range(MAX_SERIES + 5):
        local.record(0.5, n)

    points = _point(histograms.merged(None), "h")

    assert len(points) == MAX_SERIES + 1
    assert points[(("otel.metric.overflow", True),)][1] == 5


class _Keeping(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exported: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def test_the_exporter_hands_on_the_histograms_with_each_export() -> None:
    """HistogramExporter in front of an SDK exporter: every export carries the points."""
    histograms = HistogramSet("gateway")
    histograms.create("h", unit="s", description="", bounds=BOUNDS).record(2.0)
    kept = _Keeping()
    exporter = HistogramExporter(kept, histograms)

    assert exporter.export(MetricsData([])) is MetricExportResult.SUCCESS
    [data] = kept.exported
    assert _point(data, "h") == {(): ([0, 0, 0, 0, 1], 1, 2.0, 2.0, 2.0, BOUNDS)}
