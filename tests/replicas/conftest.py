"""Real `linkgate serve` processes on one PostgreSQL database, and a live sandbox.

Each replica is its own OS process (``python -m gateway serve``) with its own
event loop, engine, pools, audit writer and refresher, configured the way an
operator configures one: ``LINKGATE_*`` variables and a ``LINKGATE_CONFIG``
TOML file. The sandbox provider runs in the test process. Every replica shares
one public URL (the load balancer's), so a test decides which replica a
browser's request lands on by rewriting that prefix.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.audit import AuditStore
from gateway.callers import CallerKind, create_caller
from gateway.storage import audit_tables, create_engine
from gateway.storage.migrate import upgrade
from gateway.vault import generate_key_entry
from policies.vocabulary import CallerClass
from providers.sandbox.server import create_sandbox_app
from providers.sandbox.settings import ClientRegistration, SandboxSettings
from tests.conftest import Servers, free_port

CUSTOMER = "acme"
PURPOSE = "essential.service"
PUBLIC_URL = "http://linkgate.lb.test"  # the load balancer; never contacted
CLIENT_ID = "linkgate-replicas"
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0

StartCluster = Callable[[int], Awaitable["Cluster"]]


@dataclass
class Replica:
    """One `linkgate serve` OS process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no lifespan exit."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass
class Cluster:
    """N replicas, the sandbox they link to, and a service key valid on all of them."""

    database_url: str
    sandbox_url: str
    service_key: str
    replicas: list[Replica] = field(default_factory=list)

    def api(self, replica: Replica) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.service_key}"}
        return httpx.AsyncClient(base_url=replica.url, headers=headers, timeout=30)

    @staticmethod
    def on(replica: Replica, public: str) -> str:
        """The load balancer's choice: send a public URL to this replica."""
        assert public.startswith(PUBLIC_URL), public
        return replica.url + public[len(PUBLIC_URL) :]

    async def connect_session(self, replica: Replica) -> dict[str, str]:
        async with self.api(replica) as api:
            response = await api.post("/v1/connect-sessions", json={"customer_id": CUSTOMER})
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def link(self, start: Replica, finish: Replica) -> httpx.Response:
        """Connect the sandbox account: start the flow on ``start``, call back on ``finish``."""
        session = await self.connect_session(start)
        async with httpx.AsyncClient(timeout=30) as browser:
            begun = await browser.get(self.on(start, f"{session['connect_url']}/sandbox"))
            assert begun.status_code == 303, begun.text
            consent = await browser.get(begun.headers["location"])  # the sandbox auto-approves
            assert consent.status_code in (302, 303), consent.text
            return await browser.get(self.on(finish, consent.headers["location"]))

    async def connection_id(self, replica: Replica) -> str:
        async with self.api(replica) as api:
            listed = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
        [connection] = listed.json()["connections"]
        return str(connection["id"])


def _start(name: str, env: dict[str, str], workdir: Path) -> Replica:
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Replica(name=name, url=f"http://127.0.0.1:{port}", process=process, log=log)


def _wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            pytest.fail(f"{replica.name} exited at start-up:\n{replica.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{replica.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{replica.name} was not ready in {START_TIMEOUT}s:\n{replica.log.read_text()}")


@pytest.fixture
def sandbox_secret() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture
def sandbox_url(servers: Servers, sandbox_secret: str) -> str:
    """A live sandbox provider that redirects back to the load balancer's callback."""
    url = servers.reserve()
    registration = ClientRegistration(
        client_secret=sandbox_secret, redirect_uris=(f"{PUBLIC_URL}/oauth/callback",)
    )
    app = create_sandbox_app(
        SandboxSettings(issuer=url, clients={CLIENT_ID: registration}, auto_approve=True)
    )
    return servers.serve(url, app).url


def _config_file(workdir: Path, sandbox_url: str, sandbox_secret: str) -> Path:
    path = workdir / "linkgate.toml"
    section = {
        "client_id": CLIENT_ID,
        "client_secret": sandbox_secret,
        "issuer": sandbox_url,
        "authorize_url": f"{sandbox_url}/authorize",
        "token_url": f"{sandbox_url}/token",
        "revoke_url": f"{sandbox_url}/revoke",
        "userinfo_url": f"{sandbox_url}/userinfo",
        "jwks_url": f"{sandbox_url}/jwks",
        "api_base_url": f"{sandbox_url}/api",
    }
    # TOML basic strings are JSON strings for everything written here.
    lines = ["[providers.sandbox]", *(f"{k} = {json.dumps(v)}" for k, v in section.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def replica_env(
    postgres_database: str, sandbox_url: str, sandbox_secret: str, tmp_path: Path
) -> dict[str, str]:
    """The environment every replica gets: one database, one public URL, one key set."""
    upgrade(postgres_database)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")}
    return {
        **inherited,
        "PYTHONPATH": str(REPO),
        "LINKGATE_CONFIG": str(_config_file(tmp_path, sandbox_url, sandbox_secret)),
        "LINKGATE_DATABASE_URL": postgres_database,
        "LINKGATE_PUBLIC_URL": PUBLIC_URL,
        "LINKGATE_VAULT_KEYS": generate_key_entry("r1"),
        "LINKGATE_SECRET_KEY": secrets.token_urlsafe(48),
        "LINKGATE_DB_POOL_SIZE": "5",
        "LINKGATE_LOG_LEVEL": "warning",
    }


@pytest.fixture
def start_cluster(
    replica_env: dict[str, str], postgres_database: str, sandbox_url: str, tmp_path: Path
) -> Iterator[StartCluster]:
    """Start ``n`` replicas (in parallel, then wait for each to be ready); all stopped after."""
    started: list[Replica] = []

    async def start(n: int) -> Cluster:
        started.extend(_start(f"replica-{i + 1}", replica_env, tmp_path) for i in range(n))
        for replica in started:
            _wait_ready(replica)
        engine = create_engine(postgres_database)
        try:
            _, key = await create_caller(
                engine,
                kind=CallerKind.SERVICE,
                name="crm",
                customers=[CUSTOMER],
                purposes=[PURPOSE],
                caller_class=CallerClass.INTERNAL,
            )
        finally:
            await engine.dispose()
        return Cluster(
            database_url=postgres_database,
            sandbox_url=sandbox_url,
            service_key=key,
            replicas=list(started),
        )

    yield start
    for replica in started:
        replica.stop()


@pytest.fixture
async def audit(start_cluster: object, postgres_database: str) -> AsyncIterator[AuditStore]:
    """The audit log of the replicas' database, read as an auditor would."""
    engine = create_engine(postgres_database)
    yield AuditStore(engine, audit_tables)
    await engine.dispose()
