"""POST /v1/connect-sessions — a short-lived portal link for one customer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.api.requests import json_object, runtime_of, service_caller, string_field, string_list
from gateway.errors import InvalidParameter


async def create_connect_session(request: Request) -> JSONResponse:
    caller = await service_caller(request)
    runtime = runtime_of(request)
    body = await json_object(request)
    customer_id = string_field(body, "customer_id")
    assert customer_id is not None
    caller.require_customer(customer_id)
    providers = string_list(body, "providers")
    unknown = [name for name in providers if name not in runtime.providers]
    if unknown:
        raise InvalidParameter(
            f"providers not configured here: {', '.join(unknown)}", parameter="providers"
        )
    session, token = await runtime.sessions.create(
        customer_id=customer_id,
        providers=providers,
        return_url=string_field(body, "return_url", required=False),
        created_by=caller.id,
    )
    base = runtime.settings.public_url.rstrip("/")
    return JSONResponse(
        {
            "id": session.id,
            "token": token,
            "connect_url": f"{base}/connect/{token}",
            "customer_id": session.customer_id,
            "expires_at": session.expires_at.isoformat(),
        },
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )
