"""A misbehaving provider over real TCP: the caller gets a clear problem, nothing leaks.

The OAuth side is the real sandbox; the API base URL points at a small raw
asyncio server that misbehaves in each way a provider can: resets, stalls,
dribbles, floods, sends bytes that are not UTF-8, HTML, or a 200 whose body is
an error. For each, the caller gets a problem+json, no records, the access is
audited as an error, and the connection and its tokens are untouched.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import select

from gateway.app import create_app
from gateway.callers import CallerKind, create_caller
from gateway.storage import audit_tables, connections, create_engine
from gateway.upstream import RetryPolicy
from providers.sandbox.server import create_sandbox_app
from providers.sandbox.settings import ClientRegistration, SandboxSettings
from tests.conftest import Servers, make_settings, sandbox_provider_settings

FAST_RETRIES = RetryPolicy(attempts=2, deadline=3.0, initial_backoff=0.05, max_backoff=0.1)
HEADERS_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


class ChaosUpstream:
    """A raw HTTP/1.1 server whose next answers follow ``self.mode``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.server = server
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self._answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        if mode == "reset":
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if mode == "stall":
            await asyncio.sleep(30)
            return
        if mode == "dribble":
            writer.write(HEADERS_JSON + b"Content-Length: 1000\r\n\r\n{")
            await writer.drain()
            await asyncio.sleep(30)
            return
        bodies = {
            "ok": b'{"data": [], "paging": {}}',
            "huge": b'{"data": [' + b'{"id": "x", "text": "' + b"a" * 2_000_000 + b'"}]}',
            "not_utf8": b'{"data": [{"id": "\xff\xfe"}]}',
            "error_200": b'{"error": {"message": "Invalid OAuth access token", "code": 190}}',
        }
        if mode == "html":
            body = b"<html><body>Service Unavailable</body></html>"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body
            )  # fmt: skip
        else:
            body = bodies[mode]
            writer.write(HEADERS_JSON + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()


@pytest.fixture
def chaos() -> Iterator[ChaosUpstream]:
    upstream = ChaosUpstream()
    yield upstream
    upstream.stop()


@pytest.mark.parametrize(
    ("mode", "status", "problem"),
    [
        ("reset", 503, "upstream-unavailable"),
        ("stall", 503, "upstream-unavailable"),
        ("dribble", 503, "upstream-unavailable"),
        ("huge", 502, "upstream-malformed"),
        ("not_utf8", 502, "upstream-malformed"),
        ("html", 502, "upstream-malformed"),
        ("error_200", 502, "upstream-malformed"),
    ],
)
async def test_a_misbehaving_provider_gets_a_clear_problem_and_nothing_leaks(
    database_url: str, servers: Servers, chaos: ChaosUpstream, mode: str, status: int, problem: str
) -> None:
    """Each fault: problem+json, no records, an audited error, the connection untouched."""
    secret = secrets.token_urlsafe(16)
    gateway_url, sandbox_url = servers.reserve(), servers.reserve()
    registration = ClientRegistration(
        client_secret=secret, redirect_uris=(f"{gateway_url}/oauth/callback",)
    )
    servers.serve(
        sandbox_url,
        create_sandbox_app(
            SandboxSettings(issuer=sandbox_url, clients={"linkgate-test": registration},
                            auto_approve=True)
        ),
    )  # fmt: skip
    provider = sandbox_provider_settings(sandbox_url, secret)
    provider = replace(provider, endpoints={**provider.endpoints, "api_base_url": chaos.url})
    settings = replace(
        make_settings(database_url, public_url=gateway_url),
        providers={"sandbox": provider},
        upstream_timeout=1.0,
        upstream_max_body=1_000_000,
    )
    servers.serve(gateway_url, create_app(settings, upstream_retry=FAST_RETRIES))
    engine = create_engine(database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.SERVICE, name="crm", customers=["acme"],
            purposes=["essential.service"],
        )  # fmt: skip
        async with httpx.AsyncClient(
            base_url=gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as api:
            session = (await api.post("/v1/connect-sessions", json={"customer_id": "acme"})).json()
            async with httpx.AsyncClient() as browser:
                start = await browser.get(session["connect_url"] + "/sandbox")
                answer = await browser.get(start.headers["location"])
                assert (await browser.get(answer.headers["location"])).status_code == 200
            async with engine.connect() as conn:
                before = (await conn.execute(select(connections))).mappings().one()

            chaos.mode = mode
            response = await api.get(
                f"/v1/connections/{before['id']}/records/posts",
                params={"purpose": "essential.service"},
            )
        async with engine.connect() as conn:
            after = (await conn.execute(select(connections))).mappings().one()
            outcomes = (
                (
                    await conn.execute(
                        select(audit_tables.events.c.outcome).where(
                            audit_tables.events.c.action == "records.read"
                        )
                    )
                )
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/" + problem)
    assert "records" not in body
    assert list(outcomes) == ["error"]
    assert after["status"] == "active"
    assert after["access_token"] == before["access_token"]
    assert after["refresh_token"] == before["refresh_token"]
