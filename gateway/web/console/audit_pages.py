"""Console pages over the audit log: search, one event, chain verification, disclosures.

They call what the JSON API calls (:mod:`gateway.auditors` for entitlement,
subjects and cursors; the audit store for reads and verification), so a page
and ``/v1/audit/…`` always agree. An event id of a customer the auditor does
not serve is a 404, and the refusal is recorded in that customer's log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from gateway import audit
from gateway.audit import Action, AuditCursor, AuditEvent, Outcome, months_before
from gateway.auditors import (
    AuditCursorKey,
    customer_param,
    parse_moment,
    require_customer,
    subject_hashes,
)
from gateway.errors import AuditChainBroken, AuditUnavailable, InvalidParameter, NotFound
from gateway.web.console.auth import console_page, runtime_of, signed_in
from gateway.web.console.chart import disclosure_matrix, layout
from gateway.web.console.sessions import ConsoleSession

__all__ = ["disclosures", "event", "events", "verify", "verify_form"]

PAGE_SIZE = 25
MONTHS = 12  # the notice's California section: "in the preceding 12 months"
MAX_DISCLOSURE_EVENTS = 100_000
_BATCH = 1000
_FILTERS = (
    "customer_id",
    "subject",
    "connection_id",
    "caller",
    "action",
    "outcome",
    "since",
    "until",
)


@asynccontextmanager
async def _store_errors() -> AsyncIterator[None]:
    """The audit package's errors, in the gateway's tree (rendered as pages)."""
    try:
        yield
    except audit.AuditUnavailable as exc:
        raise AuditUnavailable(str(exc)) from None
    except audit.ChainBroken as exc:
        raise AuditChainBroken(str(exc)) from None


async def _customers(request: Request, session: ConsoleSession, raw: str | None) -> list[str]:
    """The customers a filter names: one the auditor serves, or all of them."""
    customer_id = customer_param(raw, required=False)
    if customer_id is None:
        return sorted(session.caller.customers)
    await require_customer(runtime_of(request), session.caller, customer_id)
    return [customer_id]


def _text(value: str | None, name: str, limit: int = 128) -> str | None:
    if not value or not value.strip():
        return None
    if len(value) > limit:
        raise InvalidParameter(f"{name} is longer than {limit} characters", parameter=name)
    return value.strip()


def _choice(value: str | None, name: str, allowed: set[str]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise InvalidParameter(
            f"{name} must be one of {', '.join(sorted(allowed))}", parameter=name
        )
    return value


def _until(value: str | None) -> datetime | None:
    """A bare date means "up to the end of that day": the form's until is inclusive."""
    moment = parse_moment(value, "until")
    if moment is not None and value is not None and len(value.strip()) == 10:
        try:
            moment += timedelta(days=1)
        except OverflowError:  # through 9999-12-31: every event there can be
            moment = datetime.max.replace(tzinfo=UTC)
    return moment


async def _events(request: Request, session: ConsoleSession) -> Response:
    runtime = runtime_of(request)
    query = request.query_params
    filters = {name: query.get(name, "") for name in _FILTERS}
    context: dict[str, Any] = {
        "title": "Access events",
        "filters": filters,
        "actions": [a.value for a in Action],
        "outcomes": [o.value for o in Outcome],
        "events": [],
        "next_url": None,
        "error": None,
        "paged": "cursor" in query,
    }
    cursors = AuditCursorKey(runtime.settings.secret_key.encode())
    try:
        customers = await _customers(request, session, filters["customer_id"] or None)
        subject = _text(filters["subject"], "subject", 320)
        raw_cursor = query.get("cursor")
        async with _store_errors():
            page = await runtime.audit_store.search(
                customers,
                subject_hash=subject_hashes(runtime, subject, customers) if subject else None,
                connection_id=_text(filters["connection_id"], "connection"),
                caller_id=_text(filters["caller"], "caller"),
                action=_choice(filters["action"], "action", {a.value for a in Action}),
                outcome=_choice(filters["outcome"], "outcome", {o.value for o in Outcome}),
                since=parse_moment(filters["since"] or None, "since"),
                until=_until(filters["until"] or None),
                before=cursors.open(raw_cursor) if raw_cursor else None,
                limit=PAGE_SIZE,
            )
    except InvalidParameter as exc:
        # A bad filter is shown beside the form; the value itself is not repeated.
        context["error"] = exc.detail
        return console_page(
            "console/events.html", session, runtime=runtime, status_code=400, **context
        )
    context["events"] = page.events
    if page.next_cursor is not None:
        kept = {k: v for k, v in filters.items() if v}
        kept["cursor"] = cursors.sign(page.next_cursor)
        context["next_url"] = "/console/events?" + urlencode(kept)
    return console_page("console/events.html", session, runtime=runtime, **context)


async def _two_from(request: Request, customer_id: str, seq: int) -> list[AuditEvent]:
    """The event at ``seq`` and the one after it, if any."""
    found: list[AuditEvent] = []
    async with _store_errors():
        # The store reads in batches and holds no connection between yields.
        async for item in runtime_of(request).audit_store.events(customer_id, after_seq=seq - 1):
            found.append(item)
            if len(found) == 2:
                break
    return found


async def _event(request: Request, session: ConsoleSession) -> Response:
    runtime = runtime_of(request)
    customer_id = request.path_params["customer_id"]
    await require_customer(runtime, session.caller, customer_id, hide=True)
    raw_seq = request.path_params["seq"]
    if not raw_seq.isdigit() or not 1 <= int(raw_seq) < 2**63:
        raise NotFound("no such audit event")
    seq = int(raw_seq)
    found = await _two_from(request, customer_id, seq)
    if not found or found[0].seq != seq:
        raise NotFound("no such audit event")
    shown = found[0]
    spans = shown.trace_summary.get("spans")
    spans = spans if isinstance(spans, list) else []
    return console_page(
        "console/event.html",
        session,
        runtime=runtime,
        title=f"Event {seq} of {customer_id}",
        event=shown,
        spans=spans,
        # The request's own (server) span comes first, named "{method} {route}"
        # (gateway.observability.trace_summary); client spans are named by method.
        request_span=bool(spans)
        and isinstance(spans[0], dict)
        and " /" in str(spans[0].get("name", "")),
        dropped_spans=shown.trace_summary.get("dropped_spans", 0),
        # access.rate_limited: the window's counts (gateway.rate_limit_audit), not a trace.
        rate_limited=_mapping(shown.trace_summary.get("rate_limited")),
        has_next=len(found) == 2,
    )


def _mapping(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _verify_context(session: ConsoleSession, **extra: Any) -> dict[str, Any]:
    return {"title": "Verify the audit chain", "result": None, "chosen": None, **extra}


async def _verify_form(request: Request, session: ConsoleSession) -> Response:
    return console_page(
        "console/verify.html", session, runtime=runtime_of(request), **_verify_context(session)
    )


async def _verify(request: Request, session: ConsoleSession) -> Response:
    runtime = runtime_of(request)
    form = await request.form()
    raw = form.get("customer_id")
    customer_id = customer_param(raw if isinstance(raw, str) else None)
    assert customer_id is not None
    await require_customer(runtime, session.caller, customer_id)
    async with _store_errors():
        result = await runtime.audit_store.verify(customer_id)
    return console_page(
        "console/verify.html",
        session,
        runtime=runtime,
        **_verify_context(session, result=result, chosen=customer_id),
    )


async def _disclosures(request: Request, session: ConsoleSession) -> Response:
    runtime = runtime_of(request)
    raw = request.query_params.get("customer_id") or None
    customers = await _customers(request, session, raw)
    until = datetime.now(UTC)
    since = months_before(until, MONTHS)
    events: list[AuditEvent] = []
    before: AuditCursor | None = None
    async with _store_errors():
        while len(events) < MAX_DISCLOSURE_EVENTS:
            page = await runtime.audit_store.search(
                customers,
                action=Action.RECORDS_READ.value,
                outcome=Outcome.ALLOWED.value,
                since=since,
                before=before,
                limit=_BATCH,
            )
            events.extend(page.events)
            if page.next_cursor is None:
                break
            before = page.next_cursor
    truncated = len(events) >= MAX_DISCLOSURE_EVENTS and before is not None
    matrix = disclosure_matrix(events)
    return console_page(
        "console/disclosures.html",
        session,
        runtime=runtime,
        title="Disclosures in the last 12 months",
        chosen=raw or "",
        since=since,
        until=until,
        matrix=matrix,
        chart=layout(matrix),
        truncated=truncated,
    )


events = signed_in(_events)
event = signed_in(_event)
verify_form = signed_in(_verify_form)
verify = signed_in(_verify)
disclosures = signed_in(_disclosures)
