"""GET /v1/customers/{customer_id}/suppressions — the suppression list, without identities.

Counts per kind and the newest suppressions by id, kind, purposes and time:
never an identifier (the list holds only keyed hashes) and not the free-text
reason. Suppressions are added in process by processor requests
(:meth:`gateway.subject_controls.SuppressionStore.add`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.api.requests import runtime_of, service_caller
from gateway.errors import InvalidParameter
from gateway.subject_controls.suppressions import MAX_LIST

DEFAULT_LIMIT = 50


async def list_suppressions(request: Request) -> JSONResponse:
    caller = await service_caller(request)
    customer_id = request.path_params["customer_id"]
    caller.require_customer(customer_id)
    raw = request.query_params.get("limit")
    if raw is not None and (not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST):
        raise InvalidParameter(f"limit must be between 1 and {MAX_LIST}", parameter="limit")
    limit = int(raw) if raw is not None else DEFAULT_LIMIT
    store = runtime_of(request).suppressions
    counts = await store.counts(customer_id)
    latest = await store.latest(customer_id, limit=limit)
    return JSONResponse(
        {
            "customer_id": customer_id,
            "counts": counts,
            "total": sum(counts.values()),
            "suppressions": [suppression.public() for suppression in latest],
        },
        headers={"Cache-Control": "no-store"},
    )
