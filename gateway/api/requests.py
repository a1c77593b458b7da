"""Reading a caller and a JSON body off a request, with clear errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from gateway.callers import Caller, CallerKind, authenticate
from gateway.errors import BadRequest, InvalidParameter
from gateway.runtime import Runtime

MAX_JSON_BODY = 64 * 1024


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.state.runtime
    return runtime


async def service_caller(request: Request) -> Caller:
    runtime = runtime_of(request)
    caller = await authenticate(
        runtime.engine,
        request.headers.get("authorization"),
        CallerKind.SERVICE,
        cache=runtime.callers,  # revocation takes effect within CALLER_CACHE_TTL
    )
    request.state.caller = caller  # so a refusal can be audited (gateway.problems)
    return caller


async def json_object(request: Request) -> dict[str, Any]:
    if "json" not in request.headers.get("content-type", ""):
        raise BadRequest("send a JSON body with Content-Type: application/json")
    raw = await request.body()
    if len(raw) > MAX_JSON_BODY:
        raise BadRequest("the JSON body is too large")
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    except RecursionError:  # valid JSON within the size limit, nested past the parser's stack
        raise BadRequest("the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    # JSON can carry a NUL only as the escape \u0000; PostgreSQL's text cannot
    # store one, and would refuse the statement as if the database were down.
    if b"\\u0000" in raw and _holds_nul(body):
        raise InvalidParameter("a string in the body carries a NUL character (\\u0000)")
    return body


def _holds_nul(body: dict[str, Any]) -> bool:
    """Whether any key or string in ``body`` holds a NUL (a loop: the body may nest deeply)."""
    pending: list[Any] = [body]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def string_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise InvalidParameter(f"{name} must be a non-empty string", parameter=name)
    return value


def string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidParameter(f"{name} must be a list of strings", parameter=name)
    return list(value)
