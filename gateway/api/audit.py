"""GET /v1/audit/… — auditors search, read, verify and account for the audit log.

Thin: parse, authorize (:mod:`gateway.auditors`), call the audit store, shape.
Every response is ``Cache-Control: no-store`` (RFC 9111 §5.2.2.5): what the
log says about End Users belongs in no shared cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway import audit
from gateway.api.requests import runtime_of
from gateway.audit import (
    Action,
    AuditEvent,
    Outcome,
    account_disclosures,
    format_time,
    months_before,
)
from gateway.auditors import (
    AuditCursorKey,
    auditor_caller,
    customer_param,
    event_json,
    parse_moment,
    require_customer,
    subject_hashes,
)
from gateway.errors import AuditChainBroken, AuditUnavailable, InvalidParameter, NotFound

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
DEFAULT_MONTHS = 12  # the notice's California section: "in the preceding 12 months"
MAX_MONTHS = 120
_NO_STORE = {"Cache-Control": "no-store"}


@asynccontextmanager
async def _store_errors() -> AsyncIterator[None]:
    """The audit package's errors, in the gateway's tree."""
    try:
        yield
    except audit.AuditUnavailable as exc:
        raise AuditUnavailable(str(exc)) from None
    except audit.ChainBroken as exc:
        raise AuditChainBroken(str(exc)) from None


async def search_events(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    query = request.query_params
    customer_id = customer_param(query.get("customer_id"), required=False)
    caller = await auditor_caller(runtime, request.headers.get("authorization"), customer_id)
    if customer_id is not None:
        await require_customer(runtime, caller, customer_id)
    customers = [customer_id] if customer_id else sorted(caller.customers)
    subject = query.get("subject")
    action = _choice(query.get("action"), "action", {a.value for a in Action})
    outcome = _choice(query.get("outcome"), "outcome", {o.value for o in Outcome})
    cursors = AuditCursorKey(runtime.settings.secret_key.encode())
    raw_cursor = query.get("cursor")
    async with _store_errors():
        page = await runtime.audit_store.search(
            customers,
            subject_hash=subject_hashes(runtime, subject, customers) if subject else None,
            connection_id=query.get("connection_id") or None,
            caller_id=query.get("caller") or None,
            action=action,
            outcome=outcome,
            since=parse_moment(query.get("since"), "since"),
            until=parse_moment(query.get("until"), "until"),
            before=cursors.open(raw_cursor) if raw_cursor else None,
            limit=_limit(query.get("limit")),
        )
    return JSONResponse(
        {
            "events": [event_json(event) for event in page.events],
            "next_cursor": cursors.sign(page.next_cursor) if page.next_cursor else None,
        },
        headers=_NO_STORE,
    )


async def get_event(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    customer_id = request.path_params["customer_id"]
    caller = await auditor_caller(runtime, request.headers.get("authorization"), customer_id)
    await require_customer(runtime, caller, customer_id, hide=True)
    raw_seq = request.path_params["seq"]
    if not raw_seq.isdigit() or not 1 <= int(raw_seq) < 2**63:
        raise NotFound("no such audit event")
    seq = int(raw_seq)
    found: AuditEvent | None = None
    async with _store_errors():
        # The store reads in batches and holds no connection between yields.
        async for event in runtime.audit_store.events(customer_id, after_seq=seq - 1):
            found = event if event.seq == seq else None
            break
    if found is None:
        raise NotFound("no such audit event")
    return JSONResponse(event_json(found), headers=_NO_STORE)


async def verify(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    customer_id = customer_param(request.query_params.get("customer_id"))
    assert customer_id is not None
    caller = await auditor_caller(runtime, request.headers.get("authorization"), customer_id)
    await require_customer(runtime, caller, customer_id)
    async with _store_errors():
        result = await runtime.audit_store.verify(customer_id)
    return JSONResponse(
        {
            "customer_id": customer_id,
            "ok": result.ok,
            "events_checked": result.events_checked,
            "head": {"seq": result.head_seq, "hash": result.head_hash},
            "first_bad_seq": result.first_bad_seq,
            "problem": result.problem or None,
        },
        headers=_NO_STORE,
    )


async def disclosures(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    query = request.query_params
    customer_id = customer_param(query.get("customer_id"))
    assert customer_id is not None
    caller = await auditor_caller(runtime, request.headers.get("authorization"), customer_id)
    await require_customer(runtime, caller, customer_id)
    subject = query.get("subject")
    if not subject:
        raise InvalidParameter("subject is required", parameter="subject")
    months = _months(query.get("months"))
    until = datetime.now(UTC)
    since = months_before(until, months)
    hashes = subject_hashes(runtime, subject, [customer_id])
    events: list[AuditEvent] = []
    before = None
    async with _store_errors():
        while True:
            page = await runtime.audit_store.search(
                [customer_id],
                subject_hash=hashes,
                action=Action.RECORDS_READ.value,
                outcome=Outcome.ALLOWED.value,
                since=since,
                before=before,
                limit=MAX_LIMIT,
            )
            events.extend(page.events)
            if page.next_cursor is None:
                break
            before = page.next_cursor
    # The subject is never echoed: the answer names the customer and the window only.
    return JSONResponse(
        {
            "customer_id": customer_id,
            "months": months,
            "since": format_time(since),
            "until": format_time(until),
            **account_disclosures(events).json(),
        },
        headers=_NO_STORE,
    )


def _choice(value: str | None, name: str, allowed: set[str]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise InvalidParameter(
            f"{name} must be one of {', '.join(sorted(allowed))}", parameter=name
        )
    return value


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_LIMIT}", parameter="limit")
    return int(raw)


def _months(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_MONTHS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_MONTHS:
        raise InvalidParameter(f"months must be between 1 and {MAX_MONTHS}", parameter="months")
    return int(raw)
