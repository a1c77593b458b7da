from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import ASGIApp

from gateway.observability import (
    LeanTracerProvider,
    RedactingSpanExporter,
    TraceSummaryRecorder,
    TracingMiddleware,
    configure_logging,
)


@pytest.fixture
def canary() -> str:
    """A value that must never appear in any log line, span or header."""
    return "canary-Zq8xW3vT9kPf2mLr"


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def recorder() -> TraceSummaryRecorder:
    return TraceSummaryRecorder()


@pytest.fixture(params=["lean", "sdk"])
def tracer_provider(
    request: pytest.FixtureRequest, exported: InMemorySpanExporter, recorder: TraceSummaryRecorder
) -> Iterator[LeanTracerProvider | TracerProvider]:
    """The gateway's own provider (lean spans), and the SDK's with the recorder as a processor."""
    provider: LeanTracerProvider | TracerProvider
    if request.param == "lean":
        provider = LeanTracerProvider(recorder, shutdown_on_exit=False)
    else:
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(recorder)
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(exported)))
    yield provider
    provider.shutdown()


@pytest.fixture
def make_client(
    tracer_provider: LeanTracerProvider | TracerProvider,
) -> Callable[[ASGIApp], httpx.AsyncClient]:
    def make(app: ASGIApp) -> httpx.AsyncClient:
        traced = TracingMiddleware(app, tracer_provider=tracer_provider)
        transport = httpx.ASGITransport(app=traced, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    return make


@pytest.fixture
def configured_logging() -> Iterator[Callable[..., None]]:
    """configure_logging, with structlog and the root logger restored afterwards."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    access = logging.getLogger("uvicorn.access")
    saved_access_level = access.level
    yield configure_logging
    access.setLevel(saved_access_level)
    structlog.configure(**saved_config)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.contextvars.clear_contextvars()


class Collector(ThreadingHTTPServer):
    """A stand-in OTLP/HTTP collector that keeps what it receives."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.received: list[tuple[str, bytes]] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _CollectorHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()
