"""An erasure's runner killed (SIGKILL) while it revokes the subject's connection at the provider.

The erasure's ``disconnect_account_holder`` step revokes the connection the
subject linked (RFC 7009), then sets it ``revoked`` with its
``connection.deleted`` event in one transaction. A :class:`RevokeGate` in front
of the sandbox provider holds the first revocation request and tells the test,
which kills ``linkgate requests run`` right there. A later runner resumes: it
revokes again (harmless, RFC 7009 §2.2), the connection is gone, and its
``connection.deleted`` event is in the chain once; the chain verifies.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.audit import Action
from gateway.config import load_settings
from gateway.oauth import TokenSet
from gateway.processor_requests.jobs import services
from gateway.processor_requests.machine import Kind, Status
from gateway.processor_requests.runner import Runner
from gateway.processor_requests.store import Filing
from gateway.runtime import Runtime, open_runtime
from gateway.storage import connections
from gateway.vault import generate_key_entry
from providers.base import Account
from tests.conftest import Servers, sandbox_app
from tests.processor_requests.test_purge_audit import _audit_verify
from tests.processor_requests.test_runner import (
    CUSTOMER,
    ERASURE_EVENTS,
    SUBJECT,
    _later,
    _step_events,
)
from tests.replicas.conftest import CLIENT_ID, PUBLIC_URL, REPO, _config_file

WAIT = 60.0  # seconds before a test gives up waiting for a moment that should come
HOLDER = "jane@customer.example"  # SUBJECT's e-mail: the subject linked the account


class RevokeGate:
    """Pure ASGI middleware around the sandbox: holds the first revocation request.

    The request waits for :attr:`release` (the test kills the gateway meanwhile),
    then is answered 503, which nobody reads. Later revocations pass through.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.reached = threading.Event()  # the sandbox runs on a server thread of its own
        self.release = threading.Event()
        self.revocations = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/revoke":
            await self.app(scope, receive, send)
            return
        self.revocations += 1
        if self.reached.is_set():
            await self.app(scope, receive, send)
            return
        self.reached.set()
        await asyncio.to_thread(self.release.wait)
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def gate(servers: Servers) -> Iterator[tuple[RevokeGate, str, str]]:
    """The gated sandbox, its URL and the client secret the gateway signs in with."""
    secret = secrets.token_urlsafe(16)
    url = servers.reserve()
    running = RevokeGate(sandbox_app(url, secret, PUBLIC_URL, client_id=CLIENT_ID))
    servers.serve(url, running)
    try:
        yield running, url, secret
    finally:
        running.release.set()  # a held request must not keep the sandbox's thread


def _env(database_url: str, sandbox_url: str, secret: str, workdir: Path) -> dict[str, str]:
    """What ``linkgate`` reads: the database, keys, and the sandbox as a provider."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")}
    return {
        **inherited,
        "PYTHONPATH": str(REPO),
        "LINKGATE_CONFIG": str(_config_file(workdir, sandbox_url, secret)),
        "LINKGATE_PUBLIC_URL": PUBLIC_URL,
        "LINKGATE_DATABASE_URL": database_url,
        "LINKGATE_VAULT_KEYS": generate_key_entry("c1"),
        "LINKGATE_SECRET_KEY": secrets.token_urlsafe(48),
    }


def _start_run(env: dict[str, str], request_id: str, workdir: Path) -> subprocess.Popen[bytes]:
    """``linkgate requests run ID`` in its own process, to be killed."""
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "requests", "run", request_id],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _the_subjects_connection(runtime: Runtime) -> str:
    """A sandbox account linked by the subject (its name is the subject's e-mail)."""
    connection, _ = await runtime.connections.link(
        customer_id=CUSTOMER, provider="sandbox",
        account=Account(subject="u_1001", name=HOLDER, issuer="sandbox"),
        tokens=TokenSet(access_token=secrets.token_urlsafe(16), token_type="Bearer",
                        expires_at=None, refresh_token=secrets.token_urlsafe(16)),
        scopes=("profile",),
    )  # fmt: skip
    return connection.id


async def _deleted_events(runtime: Runtime, connection_id: str) -> int:
    page = await runtime.audit_store.search(
        [CUSTOMER], action=Action.CONNECTION_DELETED.value, limit=1000
    )
    return sum(e.connection_id == connection_id for e in page.events)


async def test_a_runner_killed_while_revoking_records_the_disconnect_once(
    database_url: str, gate: tuple[RevokeGate, str, str], tmp_path: Path
) -> None:
    """Killed while the provider holds its revocation request: the connection is still
    active with no ``connection.deleted`` event; the resumed erasure revokes again,
    deletes it, and its event is in the chain once."""
    held, sandbox_url, secret = gate
    env = _env(database_url, sandbox_url, secret, tmp_path)
    settings = load_settings(env)
    async with open_runtime(settings) as runtime:
        connection_id = await _the_subjects_connection(runtime)
        filed = await services(runtime).store.file(
            Filing(customer_id=CUSTOMER, kind=Kind.ERASURE, identifiers=SUBJECT, verified_by="dpo"),
            actor_id="svc_test",
            actor_class="internal",
        )

    killed = _start_run(env, filed.id, tmp_path)
    try:
        reached = await asyncio.to_thread(held.reached.wait, WAIT)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=WAIT)
        held.release.set()
    assert reached, "the runner never revoked the connection"

    async with open_runtime(settings) as runtime:
        async with runtime.engine.connect() as conn:
            status = (
                await conn.execute(
                    select(connections.c.status).where(connections.c.id == connection_id)
                )
            ).scalar_one()
        assert status == "active"
        assert await _deleted_events(runtime, connection_id) == 0

        resumed = await Runner(_later(runtime, minutes=10)).run_next()

        assert resumed is not None
        assert resumed.status is Status.COMPLETED
        assert resumed.result is not None
        assert resumed.result["steps"]["disconnect_account_holder"]["connections_deleted"] == [
            connection_id
        ]
        assert await runtime.connections.list(CUSTOMER) == []
        assert await _deleted_events(runtime, connection_id) == 1
        assert await _step_events(runtime, filed.id) == ERASURE_EVENTS
    assert held.revocations >= 2  # the held one, and the resumed run's again
    verified = _audit_verify(settings, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
