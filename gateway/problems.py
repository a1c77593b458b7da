"""Turning any error into RFC 9457 problem+json — the one place that does it."""

from __future__ import annotations

import json
from typing import Any

import structlog
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.auditors import record_refusal
from gateway.callers import Caller
from gateway.errors import (
    PROBLEM_BASE,
    PROBLEM_CONTENT_TYPE,
    DatabaseUnavailable,
    LinkgateError,
)
from gateway.observability import redact_text

log = structlog.get_logger(__name__)

_STARLETTE_TYPES = {404: "not-found", 405: "method-not-allowed", 400: "bad-request"}


def instance(path: str) -> str:
    """A problem's ``instance`` (RFC 9457 §3.1.5): the path, with any secret in it masked.

    ``/connect/{token}`` carries a connect-session token; an error body never repeats it.
    """
    return redact_text(path)


def problem_response(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


async def linkgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LinkgateError)
    level = "warning" if exc.status < 500 else "error"
    getattr(log, level)("request.failed", problem=exc.problem, status=exc.status)
    caller = getattr(request.state, "caller", None)
    if exc.refused_customer and isinstance(caller, Caller):
        # Every refused attempt on a customer's data lands in that customer's
        # audit log (issue: "an audited denial"); if it cannot, fail closed.
        try:
            await record_refusal(request.state.runtime, caller, exc.refused_customer, exc)
        except LinkgateError as failure:
            return problem_response(failure.to_problem(instance(request.url.path)), failure.status)
    return problem_response(exc.to_problem(instance(request.url.path)), exc.status, exc.headers)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = _STARLETTE_TYPES.get(exc.status_code, "http-error")
    body = {
        "type": PROBLEM_BASE + kind,
        "title": str(exc.detail),
        "status": exc.status_code,
        "instance": instance(request.url.path),
    }
    return problem_response(body, exc.status_code, dict(exc.headers or {}))


async def database_error(request: Request, exc: Exception) -> Response:
    """SQLAlchemy's connection-level failures, translated at the boundary (never a 500).

    A transaction that failed this way was rolled back, so nothing half-written
    stays behind; the caller may retry.
    """
    if isinstance(exc, IntegrityError | ProgrammingError | DataError):
        return await unexpected_error(request, exc)  # our bug, not an outage
    log.error("database.unavailable", error_type=type(exc).__name__)
    error = DatabaseUnavailable("try again shortly")
    body = error.to_problem(instance(request.url.path))
    return problem_response(body, error.status, error.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # The detail stays in our log (redacted); the caller learns only that it failed.
    log.error("request.crashed", error_type=type(exc).__name__, exc_info=exc)
    body = {
        "type": PROBLEM_BASE + "internal",
        "title": "Internal error",
        "status": 500,
        "instance": instance(request.url.path),
    }
    return problem_response(body, 500)
