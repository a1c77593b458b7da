"""Running the gateway under uvicorn."""

from __future__ import annotations

import asyncio
import gc

import uvicorn
import uvloop

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


# A records read allocates tens of thousands of short-lived objects, nearly all
# freed by reference counting; at CPython's default threshold (700) the cyclic
# collector runs several times per request and is charged to whatever allocates.
# Fewer, larger young-generation passes cost less CPU per request in
# bench_gateway (tests/benchmarks/README.md, "History") for a few MB of cycles living longer.
GC_THRESHOLDS = (50_000, 20, 100)


async def serve(settings: Settings, *, host: str, port: int) -> int:
    server = server_for(settings, host=host, port=port)
    gc.collect()
    gc.freeze()  # what start-up built lives as long as the process: never scan it again
    gc.set_threshold(*GC_THRESHOLDS)
    await server.serve()
    return 0 if server.started else 1


def run(settings: Settings, *, host: str, port: int) -> int:
    """Serve until stopped, on uvloop: the event loop uvicorn itself picks when it is installed.

    Its loop and transports are in C; the stdlib loop's own scheduling showed
    up in every profile of the records path (tests/benchmarks/README.md, "History").
    """
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(settings, host=host, port=port))
