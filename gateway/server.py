"""Running the gateway under uvicorn."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.config import Settings
from gateway.observability import configure_logging


def server_for(settings: Settings, *, host: str, port: int) -> uvicorn.Server:
    configure_logging(level=settings.log_level, json=settings.log_json)
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,  # our structlog pipeline (with redaction) handles uvicorn's records
        access_log=False,  # TracingMiddleware logs each request without its query string
        lifespan="on",
        server_header=False,
    )
    return uvicorn.Server(config)


async def serve(settings: Settings, *, host: str, port: int) -> int:
    server = server_for(settings, host=host, port=port)
    await server.serve()
    return 0 if server.started else 1
