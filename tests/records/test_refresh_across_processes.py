"""Two `linkgate serve` OS processes on one PostgreSQL database refresh a token once.

What production runs: replicas that share nothing but the database. Each
process has its own interpreter, pool and in-process single-flight map, so
only the row lock in gateway.refresh can keep them from refreshing twice.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.audit import AuditStore
from gateway.callers import CallerKind, create_caller
from gateway.storage import audit_tables, create_engine
from gateway.storage.migrate import upgrade
from gateway.vault import generate_key_entry
from providers.sandbox.server import create_sandbox_app
from providers.sandbox.settings import ClientRegistration, SandboxSettings
from tests.conftest import Servers, free_port

CUSTOMER = "acme"
PURPOSE = "essential.service"
START_TIMEOUT = 30.0  # seconds for a process to answer /healthz
REQUESTS_PER_PROCESS = 30

pytestmark = pytest.mark.postgres


def _config_file(path: Path, sandbox_url: str, client_secret: str) -> Path:
    endpoints = {
        "issuer": sandbox_url,
        "authorize_url": f"{sandbox_url}/authorize",
        "token_url": f"{sandbox_url}/token",
        "revoke_url": f"{sandbox_url}/revoke",
        "userinfo_url": f"{sandbox_url}/userinfo",
        "jwks_url": f"{sandbox_url}/jwks",
        "api_base_url": f"{sandbox_url}/api",
    }
    lines = [
        "[providers.sandbox]",
        'client_id = "linkgate-test"',
        f'client_secret = "{client_secret}"',
        *(f'{key} = "{url}"' for key, url in endpoints.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class Replica:
    """One `python -m gateway serve` process, its log kept in a file."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env={**env, "LINKGATE_PUBLIC_URL": self.url},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the gateway exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the gateway did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def replicas(
    postgres_database: str, servers: Servers, tmp_path: Path
) -> Iterator[tuple[list[Replica], str, str]]:
    """Two gateway processes and a live sandbox; yields them, the sandbox URL and the DB URL."""
    upgrade(postgres_database)
    client_secret = secrets.token_urlsafe(16)
    ports = [free_port(), free_port()]
    sandbox_url = servers.reserve()
    servers.serve(
        sandbox_url,
        create_sandbox_app(
            SandboxSettings(
                issuer=sandbox_url,
                clients={
                    "linkgate-test": ClientRegistration(
                        client_secret=client_secret,
                        redirect_uris=tuple(
                            f"http://127.0.0.1:{port}/oauth/callback" for port in ports
                        ),
                    )
                },
                auto_approve=True,
            )
        ),
    )
    env = {
        **os.environ,
        "LINKGATE_DATABASE_URL": postgres_database,
        "LINKGATE_VAULT_KEYS": generate_key_entry("t1"),
        "LINKGATE_SECRET_KEY": secrets.token_urlsafe(48),
        "LINKGATE_CONFIG": str(
            _config_file(tmp_path / "linkgate.toml", sandbox_url, client_secret)
        ),
        "LINKGATE_LOG_LEVEL": "warning",
    }
    started = [Replica(env, port, tmp_path / f"gateway-{port}.log") for port in ports]
    try:
        for replica in started:
            replica.wait_ready()
        yield started, sandbox_url, postgres_database
    finally:
        for replica in started:
            replica.stop()


async def _link(gateway_url: str, service_key: str) -> str:
    """The admin's whole connect round trip through one process; returns the connection id."""
    headers = {"Authorization": f"Bearer {service_key}"}
    async with (
        httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=15) as api,
        httpx.AsyncClient(timeout=15, follow_redirects=False) as browser,
    ):
        session = await api.post("/v1/connect-sessions", json={"customer_id": CUSTOMER})
        assert session.status_code == 201, session.text
        start = await browser.get(f"{session.json()['connect_url']}/sandbox")
        answer = await browser.get(start.headers["location"])
        callback = await browser.get(answer.headers["location"])
        assert callback.status_code < 400, callback.text
        listed = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    [connection] = listed.json()["connections"]
    return str(connection["id"])


async def test_two_processes_refresh_an_expired_token_exactly_once(
    replicas: tuple[list[Replica], str, str],
) -> None:
    """Concurrent reads split over two processes: one token request, all served, chain intact."""
    processes, sandbox_url, database_url = replicas
    engine = create_engine(database_url)
    try:
        _, key = await create_caller(
            engine,
            kind=CallerKind.SERVICE,
            name="crm",
            customers=[CUSTOMER],
            purposes=[PURPOSE],
        )
        connection_id = await _link(processes[0].url, key)
        async with httpx.AsyncClient(base_url=sandbox_url) as sandbox:
            (await sandbox.post("/_sandbox/tokens/expire")).raise_for_status()
        headers = {"Authorization": f"Bearer {key}"}
        path = f"/v1/connections/{connection_id}/records/profile"
        clients = [
            httpx.AsyncClient(base_url=p.url, headers=headers, timeout=60) for p in processes
        ]
        try:
            responses = await asyncio.gather(
                *(
                    client.get(path, params={"purpose": PURPOSE})
                    for _ in range(REQUESTS_PER_PROCESS)
                    for client in clients
                )
            )
        finally:
            for client in clients:
                await client.aclose()
        async with httpx.AsyncClient(base_url=sandbox_url) as sandbox:
            stats = (await sandbox.get("/_sandbox/stats")).json()
        verified = await AuditStore(engine, audit_tables).verify(CUSTOMER)
    finally:
        await engine.dispose()
    assert [r.status_code for r in responses] == [200] * (2 * REQUESTS_PER_PROCESS)
    assert stats["token_requests"]["refresh_token"] == 1
    assert verified.ok, verified
