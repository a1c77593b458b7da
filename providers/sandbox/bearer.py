"""Bearer-token access to protected resources and its error answers (RFC 6750)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

REALM = "sandbox"


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1), if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def missing_token() -> JSONResponse:
    """RFC 6750 §3.1: a request without credentials gets no error code, only the challenge."""
    return JSONResponse(
        {"error": "unauthorized", "error_description": "a bearer token is required"},
        status_code=401,
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
    )


def invalid_token(description: str) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_token", "error_description": description},
        status_code=401,
        headers={
            "WWW-Authenticate": (
                f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"'
            )
        },
    )


def insufficient_scope(scope: str) -> JSONResponse:
    return JSONResponse(
        {"error": "insufficient_scope", "error_description": f"this needs the {scope} scope"},
        status_code=403,
        headers={
            "WWW-Authenticate": (
                f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
            )
        },
    )
