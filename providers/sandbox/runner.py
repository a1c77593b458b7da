"""Serving the sandbox with uvicorn: in the foreground, or on an ephemeral port in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import uvicorn
from starlette.applications import Starlette

from providers.sandbox.server import SandboxState, create_sandbox_app
from providers.sandbox.settings import SandboxSettings

STARTUP_TIMEOUT = 10.0  # seconds


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    # No websockets and no lifespan: the sandbox needs neither, and loading the
    # websockets implementation only adds start-up time and deprecation noise.
    return uvicorn.Config(app, host=host, port=port, ws="none", lifespan="off", log_level="warning")


def run(settings: SandboxSettings, *, host: str, port: int) -> None:
    """Serve until interrupted (``python -m providers.sandbox``)."""
    uvicorn.Server(_config(create_sandbox_app(settings), host, port)).run()


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    url: str  # also the issuer
    app: Starlette

    @property
    def state(self) -> SandboxState:
        state: SandboxState = self.app.state.sandbox
        return state


@contextmanager
def serve_in_thread(
    settings: SandboxSettings | None = None, *, host: str = "127.0.0.1"
) -> Iterator[RunningSandbox]:
    """Serve on a free port in a background thread; the issuer becomes the real URL.

    The socket is bound before the server starts, so the port cannot be taken in between.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    url = f"http://{host}:{sock.getsockname()[1]}"
    app = create_sandbox_app(replace(settings or SandboxSettings(), issuer=url))
    server = uvicorn.Server(_config(app, host, 0))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sandbox", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)
        yield RunningSandbox(url=url, app=app)
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        sock.close()
