"""Requests refused for their key's rate land in the audit log, one event per caller and window."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import secrets
from dataclasses import replace
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.callers import CallerKind, list_callers
from gateway.config import validate
from gateway.rate_limit_audit import MAX_KINDS, RefusalWindows
from gateway.storage import create_engine
from tests.audit_api.conftest import make_key
from tests.conftest import Servers, make_settings
from tests.gateway.conftest import CUSTOMER, Stack, build_stack

PURPOSE = "essential.service"
RECORDS_ROUTE = "GET /v1/connections/{connection_id}/records/{resource}"
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _digest(n: int) -> bytes:
    return hashlib.sha256(f"lgk_{n}".encode()).digest()


def test_a_window_closes_its_window_seconds_after_its_first_refusal() -> None:
    """Refusals of one key count in one window; it is taken once ``window`` seconds passed."""
    clock = _Clock()
    windows = RefusalWindows(window=60, clock=clock)
    for _ in range(5):
        windows.note(_digest(1), "GET", "/v1/connections", None)
    clock.now += 59
    windows.note(_digest(1), "GET", "/v1/connections", None)
    early = windows.closed()
    clock.now += 1

    [closed] = windows.closed()

    assert early == []
    assert (closed.digest, closed.requests, closed.last_at >= closed.first_at) == (
        _digest(1),
        6,
        True,
    )
    assert len(windows) == 0


def test_keys_past_the_bound_and_paths_past_the_kinds_are_counted_not_kept() -> None:
    """Two windows at most: three more keys share the anonymous one; a window names at most
    MAX_KINDS paths and purposes, the rest count as other."""
    windows = RefusalWindows(window=60, max_windows=2, clock=_Clock())
    for n in range(5):
        windows.note(_digest(n), "GET", "/v1/connections", None)
    for n in range(MAX_KINDS + 3):
        windows.note(_digest(0), "GET", f"/v1/connections/con_{n}", f"purpose-{n}")

    closed = {w.digest: w for w in windows.closed(everything=True)}

    assert sorted(w.requests for w in closed.values()) == [1, 3, 1 + MAX_KINDS + 3]
    assert closed[None].requests == 3  # keys 2, 3 and 4: nothing of them kept
    first = closed[_digest(0)]
    assert len(first.paths) == MAX_KINDS + 1
    assert first.paths[("other", "other")] == 4  # its first path took one of the eight
    assert first.purposes["other"] == 3
    assert len(first.purposes) == MAX_KINDS + 1


@pytest.fixture
async def limited(database_url: str, servers: Servers) -> Stack:
    """A gateway allowing a burst of 3 per key, refilled too slowly to matter in a test."""
    return await build_stack(
        database_url, servers, auto_approve=True, rate_limit=0.001, rate_limit_burst=3
    )


async def _flood(stack: Stack, key: str, refused: int) -> list[int]:
    """The key's burst on /v1/connections, then ``refused`` records reads."""
    async with stack.api(key) as api:
        codes = [
            (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).status_code
            for _ in range(3)
        ]
        for _ in range(refused):
            response = await api.get(
                "/v1/connections/con_x/records/posts", params={"purpose": PURPOSE}
            )
            codes.append(response.status_code)
    return codes


async def _rate_limited_events(url: str, auditor: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {auditor}"}, timeout=15
    ) as api:
        found = await api.get(
            "/v1/audit/events", params={"customer_id": CUSTOMER, "action": "access.rate_limited"}
        )
    assert found.status_code == 200, found.text
    return list(found.json()["events"])


async def _console_pages(url: str, auditor: str, seq: int) -> tuple[str, str]:
    """The console's page of event ``seq`` and its list of rate-limited events, as text."""
    async with httpx.AsyncClient(base_url=url, timeout=15) as browser:
        form = await browser.get("/console/sign-in")
        token = _CSRF.search(form.text)
        assert token, form.text
        signed_in = await browser.post(
            "/console/sign-in", data={"csrf_token": token.group(1), "credential": auditor}
        )
        assert signed_in.status_code == 303, signed_in.text
        page = await browser.get(f"/console/events/{CUSTOMER}/{seq}")
        listing = await browser.get(
            "/console/events", params={"customer_id": CUSTOMER, "action": "access.rate_limited"}
        )
    assert (page.status_code, listing.status_code) == (200, 200), page.text + listing.text
    return _text(page.text), _text(listing.text)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_a_flood_past_the_burst_is_one_audit_event_with_its_count(
    limited: Stack, servers: Servers, json_logs: io.StringIO
) -> None:
    """20 refused reads of one key: at shutdown one access.rate_limited event in its
    customer's log counts them (caller, route, purpose, replica), the chain verifies, and no
    key (nor its hash) is in the event, the logs or the spans; a guessed key is logged only."""
    spans = InMemorySpanExporter()
    limited.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    guessed = "lgk_" + secrets.token_urlsafe(32)

    mine = await _flood(limited, limited.service_key, 20)
    theirs = await _flood(limited, guessed, 7)
    limited.gateway.stop()  # the open windows are recorded on the way out

    assert mine == [200] * 3 + [429] * 20
    assert theirs == [401] * 3 + [429] * 7
    auditor = await make_key(limited, CallerKind.AUDITOR, [CUSTOMER])
    reader = servers.serve(servers.reserve(), create_app(limited.settings))
    [event] = await _rate_limited_events(reader.url, auditor)
    engine = create_engine(limited.settings.database_url)
    try:
        [crm] = [c for c in await list_callers(engine) if c.name == "crm"]
    finally:
        await engine.dispose()
    window = event["trace_summary"]["rate_limited"]
    assert {
        "caller_id": event["caller_id"],
        "outcome": event["outcome"],
        "problem_type": event["problem_type"].rsplit("/", 1)[-1],
        "purpose": event["purpose"],
        "requests": window["requests"],
        "routes": window["routes"],
        "purposes": window["purposes"],
        "window_seconds": window["window_seconds"],
    } == {
        "caller_id": crm.id,
        "outcome": "denied",
        "problem_type": "rate-limited",
        "purpose": PURPOSE,
        "requests": 20,
        "routes": {RECORDS_ROUTE: 20},
        "purposes": {PURPOSE: 20},
        "window_seconds": 60,
    }
    assert window["first_at"] <= window["last_at"]
    assert window["replica"]
    async with httpx.AsyncClient(
        base_url=reader.url, headers={"Authorization": f"Bearer {auditor}"}, timeout=15
    ) as api:
        verified = await api.get("/v1/audit/verify", params={"customer_id": CUSTOMER})
    assert verified.json()["ok"] is True, verified.text

    page, listing = await _console_pages(reader.url, auditor, event["seq"])
    assert "Requests refused 20" in page
    assert f"{RECORDS_ROUTE} 20" in page
    assert f"purpose {PURPOSE} 20" in page
    assert "access.rate_limited 20 requests refused" in listing

    logs = json_logs.getvalue()
    anonymous = [
        line
        for line in map(json.loads, logs.splitlines())
        if line.get("event") == "access.rate_limited"
    ]
    assert [(a["caller"], a["requests"]) for a in anonymous] == [("anonymous", 7)]
    sinks = {
        "event": json.dumps(event),
        "logs": logs,
        "spans": repr([(s.name, s.attributes, s.events) for s in spans.get_finished_spans()]),
    }
    for key in (limited.service_key, guessed):
        digest = hashlib.sha256(key.encode()).hexdigest()
        for sink, text in sinks.items():
            assert key not in text, f"a key in the {sink}"
            assert digest not in text, f"a key's hash in the {sink}"


async def test_a_window_is_recorded_when_it_closes(database_url: str, servers: Servers) -> None:
    """With a short window the event lands while the gateway runs; every refusal is counted
    once across the windows it took."""
    stack = await build_stack(
        database_url,
        servers,
        auto_approve=True,
        rate_limit=0.001,
        rate_limit_burst=3,
        rate_limit_audit_window=0.2,
    )
    auditor = await make_key(stack, CallerKind.AUDITOR, [CUSTOMER])

    codes = await _flood(stack, stack.service_key, 10)

    assert codes == [200] * 3 + [429] * 10
    events: list[dict[str, Any]] = []
    for _ in range(200):  # the window closes 0.2 s after the first 429; then one tick
        events = await _rate_limited_events(stack.gateway.url, auditor)
        if sum(e["trace_summary"]["rate_limited"]["requests"] for e in events) >= 10:
            break
        await asyncio.sleep(0.05)
    assert sum(e["trace_summary"]["rate_limited"]["requests"] for e in events) == 10
    assert {e["caller_id"] for e in events} == {events[0]["caller_id"]}


def test_settings_refuse_a_window_that_is_not_positive() -> None:
    """LINKGATE_RATE_LIMIT_AUDIT_WINDOW must be positive."""
    settings = replace(make_settings("sqlite+aiosqlite:///unused.db"), rate_limit_audit_window=0)
    assert any("LINKGATE_RATE_LIMIT_AUDIT_WINDOW" in p for p in validate(settings))
