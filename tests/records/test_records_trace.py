"""A records read's trace as it leaves the process: OTLP spans, response headers, audit summary.

The gateway here is built as deploy/ builds it (`configure_tracing` from the
settings), exporting every trace to a stand-in collector.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from sqlalchemy import select

from gateway.app import create_app
from gateway.observability import GatewayMetrics
from gateway.storage import audit_tables, create_engine
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, Stack
from tests.observability.conftest import Collector

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _spans(received: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Every exported span as plain data, its resource and scope included."""
    spans = []
    for path, body in received:
        if path != "/v1/traces":  # the gateway's metrics go to the same collector
            continue
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        {
                            "service": resource["service.name"],
                            "scope": (scope_spans.scope.name, scope_spans.scope.version),
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "flags": span.flags,
                            "trace_state": span.trace_state,
                            "name": span.name,
                            "kind": span.kind,
                            "attributes": [(a.key, _value(a.value)) for a in span.attributes],
                            "dropped_attributes": span.dropped_attributes_count,
                            "events": [
                                (e.name, [a.key for a in e.attributes]) for e in span.events
                            ],
                            "links": len(span.links),
                            "status": (span.status.code, span.status.message),
                            "ordered": span.start_time_unix_nano <= span.end_time_unix_nano,
                        }
                    )
    return spans


async def _exported(collector: Collector, trace_id: str, count: int) -> list[dict[str, Any]]:
    """The trace's spans once *count* have reached the collector (the batch is flushed often)."""
    for _ in range(400):
        spans = [span for span in _spans(collector.received) if span["trace_id"] == trace_id]
        if len(spans) >= count:
            return spans
        await asyncio.sleep(0.025)
    return spans


async def test_a_records_read_exports_its_whole_trace(
    stack: Stack, servers: Servers, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server, token refresh and upstream spans: names, kinds, links, attributes and status."""
    await stack.link()
    async with stack.api() as api:
        listed = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    [connection] = listed.json()["connections"]
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    settings = replace(stack.settings, otlp_endpoint=collector.url, trace_export_ratio=1.0)
    # Traces only: the app's own metrics would make their last export when the
    # server stops, after the collector has (and retry it for the exporter's 10 s).
    traced = servers.serve(
        servers.reserve(), create_app(settings, metrics=GatewayMetrics.disabled())
    )
    sandbox_host, sandbox_port = stack.sandbox.url.removeprefix("http://").split(":")

    async with httpx.AsyncClient(base_url=traced.url, timeout=15) as api:
        response = await api.get(
            f"/v1/connections/{connection['id']}/records/profile",
            params={"purpose": "essential.service"},
            headers={
                "Authorization": f"Bearer {stack.service_key}",
                "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01",
                "tracestate": "caller=1",
            },
        )
    assert response.status_code == 200, response.text
    spans = await _exported(collector, TRACE_ID, 5)

    ids = {span["span_id"]: span["name"] for span in spans}
    ids[CALLER_SPAN_ID] = "(caller)"
    route = "/v1/connections/{connection_id}/records/{resource}"
    common = {
        "service": "linkgate",
        "trace_id": TRACE_ID,
        "flags": 0x100,  # the parent's remoteness is known: local
        "trace_state": "caller=1",
        "dropped_attributes": 0,
        "links": 0,
        "ordered": True,
    }
    client = {**common, "scope": ("gateway", ""), "kind": 3, "events": []}  # CLIENT
    upstream = [
        ("http.request.method", "GET"),
        ("server.address", sandbox_host),
        ("url.full", f"{stack.sandbox.url}/api/me"),
        ("linkgate.provider", "sandbox"),
        ("server.port", int(sandbox_port)),
    ]
    expected = [
        {
            **client,
            "name": "GET",
            "parent": f"GET {route}",
            "attributes": [*upstream, ("http.response.status_code", 401), ("error.type", "401")],
            "status": (2, ""),  # ERROR
        },
        {
            **client,
            "name": "POST",
            "parent": "token.refresh",
            "attributes": [
                ("http.request.method", "POST"),
                ("server.address", sandbox_host),
                ("url.full", f"{stack.sandbox.url}/token"),
                ("server.port", int(sandbox_port)),
                ("http.response.status_code", 200),
            ],
            "status": (0, ""),  # UNSET
        },
        {
            **common,
            "scope": ("gateway", ""),
            "name": "token.refresh",
            "parent": f"GET {route}",
            "kind": 1,  # INTERNAL
            "attributes": [("linkgate.provider", "sandbox"), ("linkgate.refreshed", True)],
            "events": [],
            "status": (0, ""),
        },
        {
            **client,
            "name": "GET",
            "parent": f"GET {route}",
            "attributes": [*upstream, ("http.response.status_code", 200)],
            "status": (0, ""),
        },
        {
            **common,
            "flags": 0x300,  # the parent (the caller's span) is remote
            "scope": ("gateway.observability.middleware", ""),
            "name": f"GET {route}",
            "parent": "(caller)",
            "kind": 2,  # SERVER
            "attributes": [
                ("http.request.method", "GET"),
                ("url.scheme", "http"),
                ("http.route", route),
                ("url.path", f"/v1/connections/{connection['id']}/records/profile"),
                ("http.response.status_code", 200),
            ],
            "events": [],
            "status": (0, ""),
        },
    ]
    actual = [
        {key: value for key, value in span.items() if key not in ("span_id", "parent_span_id")}
        | {"parent": ids.get(span["parent_span_id"], span["parent_span_id"])}
        for span in spans
    ]
    assert expected == actual
    server = spans[-1]
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{server['span_id']}-01"
    assert response.headers["tracestate"] == "caller=1"
    assert response.headers["x-trace-id"] == TRACE_ID

    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            [content] = (
                await conn.execute(
                    select(audit_tables.events.c.content).where(
                        audit_tables.events.c.trace_id == TRACE_ID
                    )
                )
            ).scalars()
    finally:
        await engine.dispose()
    summary = json.loads(content)["trace_summary"]
    assert {
        "dropped_spans": 0,
        "spans": [
            {
                "name": f"GET {route}",
                "status": "unset",
                "attributes": {"http.response.status_code": 200},
            },
            {
                "name": "GET",
                "status": "error",
                "attributes": {
                    "error.type": "401",
                    "http.response.status_code": 401,
                    "linkgate.provider": "sandbox",
                    "server.address": sandbox_host,
                },
            },
            {
                "name": "POST",
                "status": "unset",
                "attributes": {
                    "http.response.status_code": 200,
                    "server.address": sandbox_host,
                },
            },
            {
                "name": "token.refresh",
                "status": "unset",
                "attributes": {"linkgate.provider": "sandbox", "linkgate.refreshed": True},
            },
            {
                "name": "GET",
                "status": "unset",
                "attributes": {
                    "http.response.status_code": 200,
                    "linkgate.provider": "sandbox",
                    "server.address": sandbox_host,
                },
            },
        ],
    } == {
        "dropped_spans": summary["dropped_spans"],
        "spans": [
            {key: value for key, value in span.items() if key != "duration_us"}
            for span in summary["spans"]
        ],
    }
    assert all(isinstance(span["duration_us"], int) for span in summary["spans"])
