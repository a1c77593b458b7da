"""Liveness, readiness and the API description."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.api.openapi import OPENAPI, for_deployment
from gateway.api.requests import runtime_of
from gateway.errors import PROBLEM_BASE
from gateway.problems import problem_response


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    try:
        async with runtime_of(request).engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            try:
                # Any revision will do: during a rolling upgrade the schema may
                # be newer than this release, which it is written to run on.
                migrated = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).first() is not None
            except SQLAlchemyError:  # no such table: never migrated
                migrated = False
    except (SQLAlchemyError, OSError):
        return _not_ready("The database is not reachable")
    if not migrated:
        return _not_ready(
            "The database holds no Linkgate schema",
            detail="run linkgate migrate against LINKGATE_DATABASE_URL",
        )
    return JSONResponse({"status": "ready", "database": "ok"})


def _not_ready(title: str, **extra: str) -> JSONResponse:
    body = {"type": PROBLEM_BASE + "not-ready", "title": title, "status": 503, **extra}
    return problem_response(body, 503)  # type: ignore[return-value]


async def openapi(request: Request) -> JSONResponse:
    """The API description, with what this deployment accepts filled in.

    Which providers a connect session may name and which return URLs it may
    use are configuration, so the document says so: a client generated from
    it (or a fuzzer) knows the valid values.
    """
    settings = runtime_of(request).settings
    return JSONResponse(
        for_deployment(
            OPENAPI,
            providers=sorted(runtime_of(request).providers),
            return_urls=settings.return_url_allowlist,
        )
    )
