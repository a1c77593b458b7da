"""Console pages for processor requests: file one, list them, follow one, download its result.

They call the request store the JSON API calls
(:func:`gateway.processor_requests.jobs.request_store`) and parse a subject
with the same :func:`gateway.subject_controls.parse_subject`. Another
customer's request is a 404. Identifiers go in and never come out: pages show
how many identifiers a request names, never one of them, and a refused form
asks for them again rather than echoing them back.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.auditors import require_customer
from gateway.errors import Conflict, InvalidParameter, NotFound
from gateway.processor_requests.jobs import request_store
from gateway.processor_requests.machine import OPEN, TERMINAL, Jurisdiction, Kind, Status
from gateway.processor_requests.store import Filing
from gateway.subject_controls import check_note, parse_subject
from gateway.web.console.auth import console_page, runtime_of, signed_in
from gateway.web.console.sessions import ConsoleSession

__all__ = [
    "download_file",
    "download_result",
    "file_request",
    "new_request",
    "request_detail",
    "request_list",
    "verify_request",
]

LIST_LIMIT = 100
_NO_STORE = {"Cache-Control": "no-store"}
KIND_WORDS = {
    Kind.ACCESS: "Access (a report of what was disclosed)",
    Kind.PORTABILITY: "Portability (the data, as JSON and CSV)",
    Kind.ERASURE: "Erasure",
    Kind.RECTIFICATION: "Rectification (find the sources to correct)",
    Kind.RESTRICTION: "Restriction of processing",
    Kind.OBJECTION: "Objection to processing",
    Kind.CONSENT_WITHDRAWAL: "Consent withdrawal",
}


def _wake(request: Request) -> None:
    """Let the local runner start a verified request now, not at its next poll."""
    jobs = getattr(request.state, "processor_jobs", None)
    if jobs is not None:
        jobs.wake()


def _lines(form: FormData, name: str) -> list[str]:
    raw = form.get(name)
    if not isinstance(raw, str):
        return []
    return [line.strip() for line in raw.splitlines() if line.strip()]


def _scoped(values: list[str], key: str, field: str) -> list[dict[str, str]]:
    """``provider:value`` lines as the API's ``{"provider": …, key: …}`` objects."""
    out = []
    for index, line in enumerate(values):
        provider, sep, value = line.partition(":")
        if not sep or not provider.strip() or not value.strip():
            raise InvalidParameter(
                f"{field}, line {index + 1}: write provider:{key}, e.g. sandbox:…", parameter=field
            )
        out.append({"provider": provider.strip(), key: value.strip()})
    return out


def _optional(form: FormData, name: str, limit: int = 200) -> str | None:
    raw = form.get(name)
    if not isinstance(raw, str) or not raw.strip():
        return None
    if len(raw) > limit:
        raise InvalidParameter(f"{name} is longer than {limit} characters", parameter=name)
    return raw.strip()


def _filing(form: FormData, session: ConsoleSession) -> Filing:
    customer_id = _optional(form, "customer_id")
    if customer_id is None or customer_id not in session.caller.customers:
        raise InvalidParameter("choose one of your customers", parameter="customer_id")
    raw_kind = form.get("kind")
    if raw_kind not in {k.value for k in Kind}:
        raise InvalidParameter("choose the kind of request", parameter="kind")
    kind = Kind(str(raw_kind))
    identifiers = parse_subject(
        {
            "emails": _lines(form, "emails"),
            "phones": _lines(form, "phones"),
            "handles": _scoped(_lines(form, "handles"), "handle", "handles"),
            "provider_user_ids": _scoped(_lines(form, "provider_user_ids"), "id", "user ids"),
        }
    )
    raw_jurisdiction = form.get("jurisdiction") or None
    if raw_jurisdiction is not None and raw_jurisdiction not in {j.value for j in Jurisdiction}:
        raise InvalidParameter("jurisdiction must be GDPR or CCPA", parameter="jurisdiction")
    return Filing(
        customer_id=customer_id,
        kind=kind,
        identifiers=identifiers,
        verified_by=_optional(form, "verified_by"),
        # A note that repeats an identifier is refused: identifiers are kept hashed.
        note=check_note(_optional(form, "note", 1000), identifiers, name="note"),
        jurisdiction=Jurisdiction(str(raw_jurisdiction)) if raw_jurisdiction else None,
    )


def _form_page(
    request: Request,
    session: ConsoleSession,
    *,
    status_code: int = 200,
    error: str | None = None,
    kept: dict[str, str] | None = None,
) -> Response:
    return console_page(
        "console/request_new.html",
        session,
        runtime=runtime_of(request),
        status_code=status_code,
        title="File a processor request",
        kinds=KIND_WORDS,
        error=error,
        kept=kept or {},
    )


async def _new_request(request: Request, session: ConsoleSession) -> Response:
    return _form_page(request, session)


async def _file_request(request: Request, session: ConsoleSession) -> Response:
    form = await request.form()
    # Kept for a refused form: not the identifiers, nor the note (it may quote them).
    kept = {
        name: str(form.get(name) or "")
        for name in ("customer_id", "kind", "jurisdiction", "verified_by")
    }
    runtime = runtime_of(request)
    named = form.get("customer_id")
    if isinstance(named, str) and named and named not in session.caller.customers:
        # Not offered by the form: refused like the API refuses it, and recorded.
        await require_customer(runtime, session.caller, named)
    store = request_store(runtime)
    try:
        filing = _filing(form, session)
        created = await store.file(
            filing, actor_id=session.caller.id, actor_class=session.caller.caller_class.value
        )
    except (InvalidParameter, Conflict) as exc:
        return _form_page(
            request,
            session,
            status_code=exc.status,
            error=f"{exc.detail}. Enter the subject's identifiers (and any note) again.",
            kept=kept,
        )
    if created.status is Status.VERIFIED:
        _wake(request)
    return RedirectResponse(f"/console/requests/{created.id}", status_code=303)


async def _request_list(request: Request, session: ConsoleSession) -> Response:
    store = request_store(runtime_of(request))
    raw_status = request.query_params.get("status") or None
    if raw_status is not None and raw_status not in {s.value for s in Status}:
        raise InvalidParameter("unknown status", parameter="status")
    found = await store.search(
        sorted(session.caller.customers),
        status=Status(raw_status) if raw_status else None,
        limit=LIST_LIMIT,
    )
    now = store.clock()
    return console_page(
        "console/requests.html",
        session,
        runtime=runtime_of(request),
        title="Processor requests",
        requests=[r.public(now, with_result=False) for r in found],
        statuses=[s.value for s in Status],
        chosen=raw_status or "",
    )


async def _request_detail(request: Request, session: ConsoleSession) -> Response:
    store = request_store(runtime_of(request))
    found = await store.get(request.path_params["request_id"], customers=session.caller.customers)
    now = store.clock()
    files = await store.files(found.id) if found.status is Status.COMPLETED else []
    result = found.result or {}
    return console_page(
        "console/request.html",
        session,
        runtime=runtime_of(request),
        title=f"Processor request {found.id}",
        item=found.public(now),
        open=found.status in OPEN,
        terminal=found.status in TERMINAL,
        files=files,
        steps=sorted(dict(result.get("steps", {})).keys()),
        report=result.get("report") if isinstance(result.get("report"), dict) else None,
        kind_words=KIND_WORDS,
    )


async def _verify_request(request: Request, session: ConsoleSession) -> Response:
    store = request_store(runtime_of(request))
    found = await store.get(request.path_params["request_id"], customers=session.caller.customers)
    form = await request.form()
    verified_by = _optional(form, "verified_by")
    if verified_by is None:
        raise InvalidParameter("say who verified the requester's identity", parameter="verified_by")
    await store.verify(
        found,
        verified_by,
        actor_id=session.caller.id,
        actor_class=session.caller.caller_class.value,
    )
    _wake(request)
    return RedirectResponse(f"/console/requests/{found.id}", status_code=303)


async def _download_result(request: Request, session: ConsoleSession) -> Response:
    """The finished request as JSON (what ``GET /v1/processor-requests/{id}/result`` returns)."""
    store = request_store(runtime_of(request))
    found = await store.get(request.path_params["request_id"], customers=session.caller.customers)
    if found.status not in TERMINAL:
        raise Conflict(f"the request is {found.status.value}; the result is not ready")
    body: dict[str, Any] = found.public(store.clock())
    return Response(
        json.dumps(body, indent=2, sort_keys=True),
        media_type="application/json",
        headers={
            **_NO_STORE,
            "Content-Disposition": f'attachment; filename="{found.id}.json"',
        },
    )


async def _download_file(request: Request, session: ConsoleSession) -> Response:
    """One file of a portability bundle, for an auditor of the request's customer."""
    store = request_store(runtime_of(request))
    found = await store.get(request.path_params["request_id"], customers=session.caller.customers)
    if found.status is not Status.COMPLETED:
        raise Conflict(f"the request is {found.status.value}; no files are ready")
    names = {f.name for f in await store.files(found.id)}
    name = request.path_params["name"]
    if name not in names:
        raise NotFound("no such file in this request's result")
    stored, content = await store.open_file(found.id, name)
    return Response(
        content,
        media_type=stored.media_type,
        headers={
            **_NO_STORE,
            "Content-Disposition": f'attachment; filename="{found.id}-{stored.name}"',
        },
    )


new_request = signed_in(_new_request)
file_request = signed_in(_file_request)
request_list = signed_in(_request_list)
request_detail = signed_in(_request_detail)
verify_request = signed_in(_verify_request)
download_result = signed_in(_download_result)
download_file = signed_in(_download_file)
