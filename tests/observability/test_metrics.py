"""The gateway's metrics, as a dashboard reads them after real requests through the real app.

The app is the one `tests.gateway.conftest.build_stack` serves (live sandbox
provider, real database), its instruments read through the SDK's
``InMemoryMetricReader``; one test runs ``linkgate serve`` itself and reads
what reaches a stand-in OTLP collector.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import Receive, Scope, Send

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.observability import GatewayMetrics, TracingMiddleware, configure_metrics
from gateway.storage.migrate import upgrade
from gateway.vault import generate_key_entry
from tests.conftest import Servers, free_port, rename_table
from tests.gateway.conftest import CUSTOMER, Stack, build_stack
from tests.observability.conftest import Collector

PURPOSE = "essential.service"
RECORDS_ROUTE = "/v1/connections/{connection_id}/records/{resource}"
REPO = Path(__file__).resolve().parents[2]

Point = tuple[dict[str, Any], Any]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """What is measured does not depend on the database: SQLite is enough here."""
    url = f"sqlite+aiosqlite:///{tmp_path}/linkgate.db"
    upgrade(url)
    return url


@pytest.fixture
async def stack(database_url: str, servers: Servers) -> Stack:
    """Gateway + sandbox (auto-approving), the gateway's metrics read in memory."""
    return await build_stack(database_url, servers, auto_approve=True)


def _points(stack: Stack, name: str) -> list[Point]:
    """The instrument's data points as (attributes, point), from one collection."""
    data = stack.metrics()
    found: list[Point] = []
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    found.extend((dict(p.attributes or {}), p) for p in metric.data.data_points)
    return found


async def _eventually(check: Callable[[], list[Point]]) -> list[Point]:
    """*check*'s points once it finds some: the server's duration is recorded just after
    the response's last byte left, so a client may read the metrics a moment before it."""
    for _ in range(200):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.01)
    return check()


async def _linked(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        listed = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    [connection] = listed.json()["connections"]
    return str(connection["id"])


async def _read(stack: Stack, connection_id: str, resource: str = "posts") -> httpx.Response:
    async with stack.api() as api:
        return await api.get(
            f"/v1/connections/{connection_id}/records/{resource}", params={"purpose": PURPOSE}
        )


def _records_route(points: list[Point], status: int) -> list[Any]:
    return [
        point
        for attributes, point in points
        if attributes
        == {
            "http.request.method": "GET",
            "http.route": RECORDS_ROUTE,
            "http.response.status_code": status,
        }
    ]


async def test_a_records_read_shows_its_route_upstream_call_and_records(stack: Stack) -> None:
    """One read: a 200 on the records route, a sandbox call, released and dropped counts."""
    connection_id = await _linked(stack)

    response = await _read(stack, connection_id)
    assert response.status_code == 200, response.text
    page = response.json()

    server = await _eventually(
        lambda: _records_route(_points(stack, "http.server.request.duration"), 200)
    )
    [read] = server
    assert read.count == 1
    assert 0 < read.sum < 15
    upstream = [
        (attributes, point.count)
        for attributes, point in _points(stack, "http.client.request.duration")
        if attributes.get("linkgate.provider") == "sandbox"
    ]
    host, port = stack.sandbox.url.removeprefix("http://").split(":")
    assert upstream == [
        (
            {
                "http.request.method": "GET",
                "server.address": host,
                "server.port": int(port),
                "linkgate.provider": "sandbox",
                "http.response.status_code": 200,
            },
            1,
        )
    ]
    released = {
        attributes["linkgate.resource"]: point.value
        for attributes, point in _points(stack, "linkgate.records.released")
    }
    dropped = {
        attributes["linkgate.rule"]: point.value
        for attributes, point in _points(stack, "linkgate.records.dropped")
        if attributes["linkgate.resource"] == "posts"
    }
    assert released == {"posts": len(page["records"])}
    assert dropped == page["dropped"]
    assert dropped, "the sandbox's posts include some the rules drop"


async def test_the_audit_writer_and_the_pool_are_visible(stack: Stack) -> None:
    """Batch sizes and append times of every event written; nothing pending; pool in use."""
    connection_id = await _linked(stack)
    assert (await _read(stack, connection_id)).status_code == 200

    [(attributes, sizes)] = _points(stack, "linkgate.audit.append.batch_size")
    [(_, durations)] = _points(stack, "linkgate.audit.append.duration")
    assert attributes == {}
    assert sizes.sum >= 2, "the link's and the read's events at least"
    assert durations.count == sizes.count
    assert [point.value for _, point in _points(stack, "linkgate.audit.pending")] == [0]
    assert _points(stack, "linkgate.audit.append.failures") == []
    connections = {
        attributes["db.client.connection.state"]: point.value
        for attributes, point in _points(stack, "db.client.connection.count")
        if attributes["db.client.connection.pool.name"] == "sqlite"
    }
    assert set(connections) == {"idle", "used"}
    assert connections["idle"] + connections["used"] >= 1
    limits = [
        (attributes, point.value)
        for attributes, point in _points(stack, "db.client.connection.max")
    ]
    assert limits == [({"db.client.connection.pool.name": "sqlite"}, 20)]  # 10 + 10 overflow


async def test_a_failed_audit_append_is_counted_and_the_request_is_a_5xx(stack: Stack) -> None:
    """The audit table gone: 503 audit-unavailable, an append failure, error.type on the route."""
    connection_id = await _linked(stack)
    await rename_table(stack.settings.database_url, "audit_events", "audit_events_gone")

    response = await _read(stack, connection_id)

    assert response.status_code == 503, response.text
    failures = [
        (attributes, point.value)
        for attributes, point in _points(stack, "linkgate.audit.append.failures")
    ]
    assert failures == [({"error.type": "AuditUnavailable"}, 1)]
    server = await _eventually(
        lambda: [
            (attributes, point)
            for attributes, point in _points(stack, "http.server.request.duration")
            if attributes.get("http.route") == RECORDS_ROUTE
        ]
    )
    assert [attributes for attributes, _ in server] == [
        {
            "http.request.method": "GET",
            "http.route": RECORDS_ROUTE,
            "http.response.status_code": 503,
            "error.type": "503",
        }
    ]
    assert _points(stack, "linkgate.records.released") == []


async def test_token_refreshes_are_counted_by_outcome(stack: Stack) -> None:
    """An expired token refreshed, then a refresh refused with invalid_grant: one of each."""
    connection_id = await _linked(stack)
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
    assert (await _read(stack, connection_id)).status_code == 200
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
    await stack.sandbox_faults(refresh="invalid_grant")
    assert (await _read(stack, connection_id)).status_code == 409

    outcomes = {
        attributes["linkgate.outcome"]: point.value
        for attributes, point in _points(stack, "linkgate.token.refreshes")
        if attributes["linkgate.provider"] == "sandbox"
    }
    assert outcomes == {"refreshed": 1, "needs_reauth": 1}
    token_calls = [
        attributes
        for attributes, _ in _points(stack, "http.client.request.duration")
        if attributes["http.request.method"] == "POST"
    ]
    assert {attributes.get("http.response.status_code") for attributes in token_calls} == {
        200,
        400,
    }, "the token endpoint's answers: the code exchange and refresh, then invalid_grant"


async def test_no_attribute_holds_a_path_an_identifier_or_a_secret(stack: Stack) -> None:
    """Connection ids, the customer, connect tokens, keys and raw paths never become attributes."""
    connection_id = await _linked(stack)
    session = await stack.connect_session()
    token = session["connect_url"].rsplit("/", 1)[-1]
    async with httpx.AsyncClient(timeout=15) as browser:
        portal = await browser.get(session["connect_url"])
    assert portal.status_code == 200
    assert (await _read(stack, connection_id)).status_code == 200
    assert (await _read(stack, connection_id, "no-such-resource")).status_code == 404
    async with stack.api() as api:
        unrouted = await api.get(f"/v1/unrouted/{connection_id}", params={"access_token": token})
        refused = await api.get(
            f"/v1/connections/{connection_id}", headers={"Authorization": "Bearer lgs_not-a-key"}
        )
    assert (unrouted.status_code, refused.status_code) == (404, 401)
    await _eventually(
        lambda: [
            point
            for attributes, point in _points(stack, "http.server.request.duration")
            if attributes.get("http.response.status_code") == 401
        ]
    )

    values = {
        str(value)
        for name in (
            "http.server.request.duration",
            "http.client.request.duration",
            "linkgate.records.released",
            "linkgate.records.dropped",
            "linkgate.token.refreshes",
            "linkgate.audit.append.batch_size",
            "db.client.connection.count",
        )
        for attributes, _ in _points(stack, name)
        for value in attributes.values()
    }
    forbidden = {
        "connection id": connection_id,
        "customer id": CUSTOMER,
        "connect token": token,
        "service key": stack.service_key,
        "offered key": "lgs_not-a-key",
    }
    for what, secret in forbidden.items():
        assert [value for value in values if secret in value] == [], what
    assert [value for value in values if "?" in value] == []
    routes = {
        attributes.get("http.route")
        for attributes, _ in _points(stack, "http.server.request.duration")
    }
    assert {RECORDS_ROUTE, "/connect/{token}", "/v1/connections/{connection_id}", None} <= routes


async def test_an_exception_names_its_class_and_an_unrouted_path_has_no_route() -> None:
    """error.type is the exception's class when the app raised; no route, no http.route."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("a message that must not become an attribute")
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    reader = InMemoryMetricReader()
    metrics = GatewayMetrics(MeterProvider(metric_readers=[reader], shutdown_on_exit=False))
    traced = TracingMiddleware(app, tracer_provider=TracerProvider(), metrics=metrics)
    transport = httpx.ASGITransport(app=traced, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.get("/boom")
        await client.get("/nowhere/0123456789")

    data = metrics.collected(reader.get_metrics_data())
    assert data is not None
    [metric] = [
        metric
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == "http.server.request.duration"
    ]
    assert sorted(
        (dict(point.attributes or {}) for point in metric.data.data_points),
        key=lambda attributes: str(attributes.get("error.type")),
    ) == [
        {"http.request.method": "GET", "http.response.status_code": 404},
        {
            "http.request.method": "GET",
            "http.response.status_code": 500,
            "error.type": "RuntimeError",
        },
    ]


async def test_without_an_endpoint_nothing_is_recorded() -> None:
    """No OTLP endpoint: instruments that record nothing and no export thread."""
    metrics = configure_metrics(service_name="linkgate-test", otlp_endpoint=None)

    assert metrics.enabled is False
    metrics.server_request("GET", "/healthz", 200, None, 0.001)  # returns at once
    metrics.shutdown()
    assert GatewayMetrics.disabled().enabled is False


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_a_metrics_export_interval_that_is_not_positive_is_a_config_error(
    tmp_path: Path, value: str
) -> None:
    """The error names the variable and what it takes."""
    assert (
        "LINKGATE_METRICS_EXPORT_INTERVAL: a positive number of seconds between metric exports"
    ) in _settings_problems(tmp_path, LINKGATE_METRICS_EXPORT_INTERVAL=value)


def test_a_metrics_export_interval_that_is_not_a_number_is_a_config_error(tmp_path: Path) -> None:
    """A value that does not parse is reported with the variable's name."""
    assert "LINKGATE_METRICS_EXPORT_INTERVAL: expected float, got 'often'" in _settings_problems(
        tmp_path, LINKGATE_METRICS_EXPORT_INTERVAL="often"
    )


def _settings_problems(tmp_path: Path, **environ: str) -> list[str]:
    config = tmp_path / "linkgate.toml"
    config.touch()
    try:
        load_settings({"LINKGATE_CONFIG": str(config), **environ})
    except ConfigError as exc:
        return exc.problems
    return []


# -- end to end: linkgate serve exporting to a collector ---------------------------------


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _exported_durations(collector: Collector) -> Iterator[tuple[str, dict[str, Any], int]]:
    """(service.name, attributes, count) of every http.server.request.duration point received."""
    for path, body in list(collector.received):
        if path != "/v1/metrics":
            continue
        request = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            resource = {a.key: _value(a.value) for a in resource_metrics.resource.attributes}
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name != "http.server.request.duration":
                        continue
                    assert metric.unit == "s"
                    for point in metric.histogram.data_points:
                        attributes = {a.key: _value(a.value) for a in point.attributes}
                        yield resource["service.name"], attributes, point.count


def test_linkgate_serve_exports_request_durations_to_the_collector(
    collector: Collector, tmp_path: Path
) -> None:
    """A real `linkgate serve` with LINKGATE_OTLP_ENDPOINT pushes OTLP metrics for its routes."""
    database_url = f"sqlite+aiosqlite:///{tmp_path}/linkgate.db"
    upgrade(database_url)
    config = tmp_path / "linkgate.toml"
    config.touch()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LINKGATE_", "OTEL_"))},
        "PYTHONPATH": str(REPO),
        "LINKGATE_CONFIG": str(config),
        "LINKGATE_DATABASE_URL": database_url,
        "LINKGATE_VAULT_KEYS": generate_key_entry("m1"),
        "LINKGATE_SECRET_KEY": secrets.token_urlsafe(48),
        "LINKGATE_OTLP_ENDPOINT": collector.url,
        "LINKGATE_METRICS_EXPORT_INTERVAL": "0.2",
        "LINKGATE_LOG_LEVEL": "warning",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_healthy(process, base, log)
        for _ in range(3):
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        deadline = time.monotonic() + 30
        seen: list[tuple[str, dict[str, Any], int]] = []
        while time.monotonic() < deadline:
            seen = [
                found
                for found in _exported_durations(collector)
                if found[1].get("http.route") == "/healthz"
            ]
            if seen and seen[-1][2] >= 4:  # the start-up probe and the three asked here
                break
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert seen, f"no request duration reached the collector:\n{log.read_text()[-3000:]}"
    service, attributes, count = seen[-1]
    assert service == "linkgate"
    assert attributes == {
        "http.request.method": "GET",
        "http.route": "/healthz",
        "http.response.status_code": 200,
    }
    assert count >= 4
    assert "Traceback" not in log.read_text(), "stopping flushed the metrics without an error"


def _wait_until_healthy(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"linkgate serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"linkgate serve did not start:\n{log.read_text()[-3000:]}")
