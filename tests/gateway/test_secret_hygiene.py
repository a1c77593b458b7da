"""Canary secrets never reach logs, spans, error bodies or the database's plaintext."""

from __future__ import annotations

import io
from pathlib import Path

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select, text

from gateway.storage import connections, create_engine, metadata
from gateway.vault import KeyRing, token_row
from tests.gateway.conftest import CUSTOMER, Stack


async def test_tokens_codes_and_keys_never_leak(stack: Stack, json_logs: io.StringIO) -> None:
    """Across linking, replays, bad keys and disconnecting, no secret shows up anywhere."""
    spans = InMemorySpanExporter()
    stack.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    bodies: list[str] = []

    async with stack.browser() as browser:
        answer = await stack.begin(browser, await stack.connect_session())
        callback = answer.headers["location"]
        code = callback.split("code=")[1].split("&")[0]
        bodies.append((await browser.get(callback)).text)
        bodies.append((await browser.get(callback)).text)  # replay: an error page
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(connections))).mappings().one()
    finally:
        await engine.dispose()
    vault = KeyRing.parse(stack.settings.vault_keys)
    access = vault.open(row["access_token"], row=token_row(row["id"], "access_token"))
    refresh = vault.open(row["refresh_token"], row=token_row(row["id"], "refresh_token"))
    async with stack.api() as api:
        bodies.append((await api.get("/v1/connections", params={"customer_id": CUSTOMER})).text)
        bodies.append((await api.get(f"/v1/connections/{row['id']}")).text)
    async with stack.api(stack.service_key + "x") as api:
        bodies.append((await api.get("/v1/connections", params={"customer_id": CUSTOMER})).text)
    async with stack.api() as api:
        bodies.append((await api.delete(f"/v1/connections/{row['id']}")).text)

    canaries = {
        "access token": access,
        "refresh token": refresh,
        "authorization code": code,
        "service key": stack.service_key,
        "client secret": stack.settings.providers["sandbox"].client_secret,
    }
    logs = json_logs.getvalue()
    span_text = repr(
        [(s.name, dict(s.attributes or {}), s.events) for s in spans.get_finished_spans()]
    )
    assert "connection.linked" in logs, "the gateway's logs were captured"
    assert spans.get_finished_spans(), "the gateway's spans were captured"
    for name, secret in canaries.items():
        assert secret not in logs, f"{name} in logs"
        assert secret not in span_text, f"{name} in spans"
        for body in bodies:
            assert secret not in body, f"{name} in a response body"
    raw = await _database_plaintext(stack.settings.database_url)
    for name in ("access token", "refresh token", "service key", "authorization code"):
        assert canaries[name].encode() not in raw, f"{name} in the database's plaintext"


async def _database_plaintext(url: str) -> bytes:
    """The database file's bytes (SQLite), or every row of every table as text (PostgreSQL)."""
    if url.startswith("sqlite"):
        database = Path(url.removeprefix("sqlite+aiosqlite:///"))
        return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            chunks = []
            for table in metadata.tables:
                query = text(f"SELECT string_agg(t::text, ' ') FROM {table} t")  # noqa: S608
                chunks.append(str((await conn.execute(query)).scalar()))
    finally:
        await engine.dispose()
    return " ".join(chunks).encode()


async def test_an_error_body_never_repeats_a_connect_token(stack: Stack) -> None:
    """A wrong method or a NUL on a portal link: an error page that never repeats the token."""
    session = await stack.connect_session()
    token = session["token"]
    async with stack.browser() as browser:
        answers = [
            await browser.put(session["connect_url"]),
            await browser.delete(f"{session['connect_url']}/sandbox"),
            await browser.get(f"{session['connect_url']}%00"),
        ]

    assert [answer.status_code for answer in answers] == [405, 405, 400]
    for answer in answers:
        assert answer.headers["content-type"] == "text/html; charset=utf-8", answer.text
        assert token not in answer.text
