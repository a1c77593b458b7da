"""GET /v1/connections/{id}/records/{resource} — a policy-filtered page of records."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gateway.api.requests import runtime_of, service_caller
from gateway.api.responses import JSONResponse, isoformat
from gateway.errors import InvalidParameter
from gateway.records.service import RecordsPage, RecordsQuery
from policies import Record, Subject

_RESERVED = frozenset({"purpose", "cursor", "limit"})


async def read_records(request: Request) -> JSONResponse:
    caller = await service_caller(request)
    query = request.query_params
    purpose = query.get("purpose")
    if not purpose:
        raise InvalidParameter("purpose is required", parameter="purpose")
    repeated = [key for key in query if len(query.getlist(key)) > 1]
    if repeated:
        raise InvalidParameter(f"{repeated[0]} is given twice", parameter=repeated[0])
    page = await runtime_of(request).records.read(
        caller,
        RecordsQuery(
            connection_id=request.path_params["connection_id"],
            resource=request.path_params["resource"],
            purpose=purpose,
            limit=query.get("limit"),
            cursor=query.get("cursor"),
            params={k: v for k, v in query.items() if k not in _RESERVED},
        ),
    )
    return JSONResponse(_page(page), headers={"Cache-Control": "no-store"})


def _page(page: RecordsPage) -> dict[str, Any]:
    fetched_at = isoformat(page.fetched_at)
    return {
        "records": [_record(record, fetched_at) for record in page.records],
        "next_cursor": page.next_cursor,
        "dropped": dict(page.decision.dropped),
        "redacted": [
            {"record_id": item.record_id, "field": item.field, "rule_id": item.rule_id}
            for item in page.decision.redacted
        ],
        "trace_id": page.trace_id,
    }


def _record(record: Record, fetched_at: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    categories: dict[str, str] = {}
    for name, value in record.data.items():  # one walk over the fields fills both
        data[name] = value.value
        categories[name] = value.category
    return {
        "id": record.id,
        "customer_id": record.customer_id,
        "connection_id": record.connection_id,
        "provider": record.provider,
        "resource": record.resource,
        # Visibility and IdentifierKind are StrEnums: JSON writes a member as its
        # value, without the Python-level ``.value`` property call.
        "visibility": record.visibility,
        "subjects": [_subject(subject) for subject in record.subjects],
        "data": data,
        "categories": categories,
        "occurred_at": isoformat(record.occurred_at) if record.occurred_at else None,
        "fetched_at": fetched_at,
    }


def _subject(subject: Subject) -> dict[str, Any]:
    return {
        "role": subject.role,
        "identifiers": [
            {"kind": identifier.kind, "value": identifier.value}
            for identifier in subject.identifiers
        ],
    }
