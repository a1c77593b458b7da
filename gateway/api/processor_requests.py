"""/v1/processor-requests — file, follow, verify and download End Users' privacy requests.

Thin: parse, authorize, call the request store, shape. Service keys and
auditor credentials (privacy team) entitled to the customer may both file
and follow. Another customer's request is a 404, never a 403: its existence
does not leak. Identifiers come in, are hashed (and sealed while the
request runs), and never go out: responses count identifiers.
Every response is ``Cache-Control: no-store`` (RFC 9111 §5.2.2.5).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.api.requests import json_object, runtime_of
from gateway.auditors import record_refusal
from gateway.callers import KEY_PREFIX, Caller, CallerKind, authenticate
from gateway.errors import Conflict, Forbidden, InvalidParameter
from gateway.processor_requests.download import DownloadKey
from gateway.processor_requests.jobs import request_store
from gateway.processor_requests.machine import TERMINAL, Jurisdiction, Kind, Status
from gateway.processor_requests.store import Filing, ProcessorRequest, RequestStore
from gateway.subject_controls import check_note, parse_subject

_NO_STORE = {"Cache-Control": "no-store"}
_FIELDS = frozenset(
    {"customer_id", "kind", "subject", "purposes", "verified_by", "note", "jurisdiction", "lift"}
)
MAX_LIMIT = 200


async def _caller(request: Request) -> Caller:
    """A service key or an auditor credential (RFC 6750 §2.1), told apart by prefix."""
    header = request.headers.get("authorization")
    _, _, key = (header or "").partition(" ")
    kind = (
        CallerKind.AUDITOR
        if key.strip().startswith(KEY_PREFIX[CallerKind.AUDITOR])
        else CallerKind.SERVICE
    )
    caller = await authenticate(runtime_of(request).engine, header, kind)
    request.state.caller = caller  # so a refusal can be audited (gateway.problems)
    return caller


async def _entitled(request: Request, caller: Caller, customer_id: str) -> None:
    if customer_id not in caller.customers:
        error = Forbidden(f"this credential is not entitled to customer {customer_id!r}")
        await record_refusal(runtime_of(request), caller, customer_id, error)
        raise error


def _wake(request: Request) -> None:
    jobs = getattr(request.state, "processor_jobs", None)
    if jobs is not None:
        jobs.wake()


def _text(body: dict[str, Any], name: str, *, limit: int = 200) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidParameter(
            f"{name} must be a non-empty string of at most {limit} characters", parameter=name
        )
    return value.strip()


def _filing(request: Request, body: dict[str, Any]) -> Filing:
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidParameter(f"unknown member {unknown[0]!r}", parameter=unknown[0])
    customer_id = _text(body, "customer_id")
    if customer_id is None:
        raise InvalidParameter("customer_id is required", parameter="customer_id")
    raw_kind = body.get("kind")
    # isinstance first: a JSON list or object is unhashable, and a set lookup would raise.
    if not isinstance(raw_kind, str) or raw_kind not in {k.value for k in Kind}:
        raise InvalidParameter(
            f"kind must be one of {', '.join(k.value for k in Kind)}", parameter="kind"
        )
    kind = Kind(raw_kind)
    identifiers = parse_subject(body.get("subject"))
    purposes = body.get("purposes", [])
    if not isinstance(purposes, list) or not all(isinstance(p, str) and p for p in purposes):
        raise InvalidParameter("purposes must be a list of strings", parameter="purposes")
    if purposes and not kind.takes_purposes:
        raise InvalidParameter(f"{kind.value} takes no purposes", parameter="purposes")
    taxonomy = runtime_of(request).policy.policy.taxonomy
    if any(taxonomy.purpose_problem(p) is not None for p in purposes):
        raise InvalidParameter("purposes must be known Fides data uses", parameter="purposes")
    lift = body.get("lift", False)
    if not isinstance(lift, bool) or (lift and kind not in (Kind.RESTRICTION, Kind.OBJECTION)):
        raise InvalidParameter(
            "lift is a boolean, for restriction and objection only", parameter="lift"
        )
    raw_jurisdiction = body.get("jurisdiction")
    if raw_jurisdiction is not None and (
        not isinstance(raw_jurisdiction, str)
        or raw_jurisdiction not in {j.value for j in Jurisdiction}
    ):
        raise InvalidParameter("jurisdiction must be gdpr or ccpa", parameter="jurisdiction")
    return Filing(
        customer_id=customer_id,
        kind=kind,
        identifiers=identifiers,
        purposes=tuple(sorted(set(purposes))),
        lift=lift,
        verified_by=_text(body, "verified_by"),
        # A note that repeats an identifier is refused: identifiers are kept hashed.
        # A rectification's note is the correction itself, so it cannot be left out.
        note=check_note(
            body.get("note"), identifiers, name="note", required=kind is Kind.RECTIFICATION
        ),
        jurisdiction=Jurisdiction(raw_jurisdiction) if raw_jurisdiction else None,
    )


async def create_request(request: Request) -> JSONResponse:
    caller = await _caller(request)
    body = await json_object(request)
    customer_id = body.get("customer_id")
    if isinstance(customer_id, str):
        # Entitlement before the rest of the body: a request for another
        # customer's subject is refused (and audited) whatever else it holds.
        await _entitled(request, caller, customer_id)
    filing = _filing(request, body)
    store = request_store(runtime_of(request))
    created = await store.file(filing, actor_id=caller.id, actor_class=caller.caller_class.value)
    if created.status is Status.VERIFIED:
        _wake(request)
    return JSONResponse(
        created.public(store.clock()),
        status_code=201,
        headers={**_NO_STORE, "Location": f"/v1/processor-requests/{created.id}"},
    )


async def _own(request: Request) -> tuple[Caller, RequestStore, ProcessorRequest]:
    caller = await _caller(request)
    store = request_store(runtime_of(request))
    found = await store.get(request.path_params["request_id"], customers=caller.customers)
    return caller, store, found


async def get_request(request: Request) -> JSONResponse:
    _, store, found = await _own(request)
    return JSONResponse(found.public(store.clock()), headers=_NO_STORE)


async def list_requests(request: Request) -> JSONResponse:
    caller = await _caller(request)
    query = request.query_params
    customer_id = query.get("customer_id")
    if customer_id is not None:
        await _entitled(request, caller, customer_id)
    status_text = query.get("status")
    if status_text is not None and status_text not in {s.value for s in Status}:
        raise InvalidParameter(
            f"status must be one of {', '.join(s.value for s in Status)}", parameter="status"
        )
    overdue_text = query.get("overdue")
    if overdue_text not in (None, "true", "false"):
        raise InvalidParameter("overdue must be true or false", parameter="overdue")
    raw_limit = query.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_LIMIT}", parameter="limit")
    store = request_store(runtime_of(request))
    found = await store.search(
        [customer_id] if customer_id else sorted(caller.customers),
        status=Status(status_text) if status_text else None,
        overdue=None if overdue_text is None else overdue_text == "true",
        limit=int(raw_limit),
    )
    now = store.clock()
    return JSONResponse(
        {"requests": [r.public(now, with_result=False) for r in found]}, headers=_NO_STORE
    )


async def verify_request(request: Request) -> JSONResponse:
    caller, store, found = await _own(request)
    body = await json_object(request)
    verified_by = _text(body, "verified_by")
    if verified_by is None:
        raise InvalidParameter("verified_by is required", parameter="verified_by")
    verified = await store.verify(
        found, verified_by, actor_id=caller.id, actor_class=caller.caller_class.value
    )
    _wake(request)
    return JSONResponse(verified.public(store.clock()), headers=_NO_STORE)


async def get_result(request: Request) -> Response:
    """The result as JSON; for portability, signed short-lived links to the bundle's files."""
    query = request.query_params
    if "token" in query or "file" in query:
        return await _download(request)
    _, store, found = await _own(request)
    if found.status not in TERMINAL:
        raise Conflict(f"the request is {found.status.value}; the result is not ready")
    body: dict[str, Any] = found.public(store.clock())
    if found.kind is Kind.PORTABILITY and found.status is Status.COMPLETED:
        key = DownloadKey(runtime_of(request).settings.secret_key.encode())
        links = []
        for stored in await store.files(found.id):
            token, expires = key.sign(found.id, stored.name, now=store.clock())
            links.append(
                {
                    "name": stored.name,
                    "media_type": stored.media_type,
                    "bytes": stored.bytes,
                    "sha256": stored.sha256,
                    "url": f"/v1/processor-requests/{found.id}/result"
                    f"?file={stored.name}&token={token}",
                    "expires_at": expires.isoformat(),
                }
            )
        body["files"] = links
    return JSONResponse(
        body,
        headers={
            **_NO_STORE,
            "Content-Disposition": f'attachment; filename="{found.id}.json"',
        },
    )


async def _download(request: Request) -> Response:
    """One bundle file, for whoever holds an unexpired link (no credential needed)."""
    request_id = request.path_params["request_id"]
    name = request.query_params.get("file") or ""
    token = request.query_params.get("token") or ""
    store = request_store(runtime_of(request))
    key = DownloadKey(runtime_of(request).settings.secret_key.encode())
    key.check(token, request_id, name, now=store.clock())
    stored, content = await store.open_file(request_id, name)
    return Response(
        content,
        media_type=stored.media_type,
        headers={
            **_NO_STORE,
            "Content-Disposition": f'attachment; filename="{request_id}-{stored.name}"',
        },
    )
