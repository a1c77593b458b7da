"""GET/DELETE /v1/connections — a customer's linked accounts, never their tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.api.requests import runtime_of, service_caller
from gateway.connect.disconnect import disconnect
from gateway.errors import InvalidParameter


async def list_connections(request: Request) -> JSONResponse:
    caller = await service_caller(request)
    customer_id = request.query_params.get("customer_id")
    if not customer_id:
        raise InvalidParameter("customer_id is required", parameter="customer_id")
    caller.require_customer(customer_id)
    found = await runtime_of(request).connections.list(customer_id)
    return JSONResponse({"connections": [c.public() for c in found]})


async def get_connection(request: Request) -> JSONResponse:
    caller = await service_caller(request)
    connection = await runtime_of(request).connections.get(
        request.path_params["connection_id"], customers=caller.customers
    )
    return JSONResponse(connection.public())


async def delete_connection(request: Request) -> Response:
    caller = await service_caller(request)
    runtime = runtime_of(request)
    connection = await runtime.connections.get(
        request.path_params["connection_id"], customers=caller.customers
    )
    revoked = await disconnect(
        connection,
        actor_id=caller.id,
        actor_class=caller.caller_class.value,
        store=runtime.connections,
        registry=runtime.providers,
        http=runtime.oauth_http,
    )
    updated = await runtime.connections.get(connection.id, customers=caller.customers)
    return JSONResponse({**updated.public(), "revoked_at_provider": revoked})
