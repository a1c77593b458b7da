"""Shared fixtures: real databases (SQLite and PostgreSQL), settings, live servers."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
import uvicorn
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from gateway.config import ProviderSettings, Settings
from gateway.storage.migrate import upgrade
from gateway.vault import generate_key_entry
from providers.sandbox.server import create_sandbox_app
from providers.sandbox.settings import ClientRegistration, SandboxSettings

POSTGRES_URL = os.environ.get(
    "LINKGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"linkgate_t_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc}); start it "
            "(pg_ctlcluster … main start) or set LINKGATE_TEST_POSTGRES_URL"
        )
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A migrated database of each kind; every storage test runs on both."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/linkgate.db"
    else:
        url = request.getfixturevalue("postgres_database")
    upgrade(url)
    return url


def quiet_structlog() -> None:
    """structlog as the suite runs it unless a test asks for logs: rendered into nothing.

    structlog's own default prints each event to the stdout of the moment. A live
    server thread that logs while pytest has capture suspended (writing its
    progress dots) would print its access line into the test report. Tests that
    look at logs configure them (``json_logs``, ``configured_logging``) or use
    ``structlog.testing.capture_logs``, which swaps the processors and so still
    sees every event.
    """
    structlog.reset_defaults()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())


async def rename_table(database_url: str, old: str, new: str) -> None:
    """Rename a table behind the gateway's back: how tests make a store fail for real
    (the audit log unwritable, say) and then heal it."""
    from sqlalchemy import text

    from gateway.storage import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
    finally:
        await engine.dispose()


def undo_logging() -> None:
    """Take back what ``configure_logging`` (a CLI command, a test) set up: its root
    handler, the root level, and structlog's configuration."""
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == "linkgate":
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    quiet_structlog()


def pytest_configure(config: pytest.Config) -> None:
    quiet_structlog()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    base = Settings(
        database_url=database_url,
        vault_keys=generate_key_entry("t1"),
        secret_key=secrets.token_urlsafe(48),
        log_json=True,
    )
    return replace(base, **overrides)


@pytest.fixture
def settings_factory(database_url: str) -> Callable[..., Settings]:
    return lambda **overrides: make_settings(database_url, **overrides)


def _ephemeral_ports() -> range:
    """The ports the kernel hands to outgoing connections (Linux's ip_local_port_range)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        low, high = "32768", "60999"  # Linux's default
    return range(int(low), int(high) + 1)


def free_port() -> int:
    """A free port for a child process to bind later (``--port``).

    A port the kernel picked (bind to 0, close) is an ephemeral one, which any
    outgoing connection of the busy test run may take before the child binds
    it ("address already in use"); this one is chosen below that range, where
    only a listener asking for it by number would.
    """
    ephemeral = _ephemeral_ports()
    start = max(1024, min(ephemeral.start, 20000) - 10000)
    for _ in range(100):
        port = secrets.randbelow(min(ephemeral.start, 65536) - start) + start
        if port in ephemeral:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class LiveServer:
    """An ASGI app served by uvicorn over real TCP in a background thread."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_in_thread(app: Any, sock: socket.socket) -> LiveServer:
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    host, port = sock.getsockname()
    return LiveServer(url=f"http://{host}:{port}", server=server, thread=thread)


class Servers:
    """Ephemeral-port servers for one test: reserve URLs first, then serve apps on them."""

    def __init__(self) -> None:
        self._sockets: dict[str, socket.socket] = {}
        self._started: list[LiveServer] = []

    def reserve(self) -> str:
        sock = free_socket()
        host, port = sock.getsockname()
        url = f"http://{host}:{port}"
        self._sockets[url] = sock
        return url

    def serve(self, url: str, app: Any) -> LiveServer:
        server = serve_in_thread(app, self._sockets.pop(url))
        self._started.append(server)
        return server

    def stop_all(self) -> None:
        for server in reversed(self._started):
            server.stop()
        for sock in self._sockets.values():
            sock.close()


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Start apps on ephemeral ports; all stopped at teardown."""
    running = Servers()
    yield running
    running.stop_all()


def sandbox_app(
    sandbox_url: str,
    client_secret: str,
    *gateway_urls: str,
    client_id: str = "linkgate-test",
    **settings: Any,
) -> ASGIApp:
    """The sandbox provider served on ``sandbox_url``, with the gateway(s) at
    ``gateway_urls`` registered as ``client_id`` (by default the client
    :func:`sandbox_provider_settings` signs in as); ``settings`` as SandboxSettings."""
    registration = ClientRegistration(
        client_secret=client_secret,
        redirect_uris=tuple(f"{url}/oauth/callback" for url in gateway_urls),
    )
    return create_sandbox_app(
        SandboxSettings(issuer=sandbox_url, clients={client_id: registration}, **settings)
    )


def sandbox_provider_settings(sandbox_url: str, client_secret: str) -> ProviderSettings:
    """Point the built-in sandbox provider at a sandbox served on ``sandbox_url``."""
    return ProviderSettings(
        name="sandbox",
        client_id="linkgate-test",
        client_secret=client_secret,
        endpoints={
            "authorize_url": f"{sandbox_url}/authorize",
            "token_url": f"{sandbox_url}/token",
            "revoke_url": f"{sandbox_url}/revoke",
            "userinfo_url": f"{sandbox_url}/userinfo",
            "jwks_url": f"{sandbox_url}/jwks",
            "api_base_url": f"{sandbox_url}/api",
            "issuer": sandbox_url,
        },
    )


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The production logging pipeline (JSON lines, redaction) into a buffer, undone after."""
    from gateway.observability import configure_logging

    buffer = io.StringIO()
    configure_logging(level="debug", json=True, stream=buffer)
    yield buffer
    undo_logging()
