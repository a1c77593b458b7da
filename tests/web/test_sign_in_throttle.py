"""Console sign-in throttle: per client address and per key prefix, refused before any lookup."""

from __future__ import annotations

import io
import json
import secrets

import httpx
import pytest
from sqlalchemy.engine import make_url

from gateway.web.console.sign_in_throttle import (
    ADDRESS_BURST,
    KEY_BURST,
    SignInThrottle,
    Throttled,
    address_key,
)
from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, Stack, build_stack
from tests.trust.test_database_faults import _allow_connections
from tests.web.test_console_http import _auditor, _token

postgres_only = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _wrong_key() -> str:
    """A well-formed auditor key that was never issued, with a prefix of its own."""
    return "lga_" + secrets.token_urlsafe(32)


def test_an_address_gets_its_burst_then_waits_and_time_refills_it() -> None:
    """Two attempts, the third is told to wait one interval; after it, one more is admitted."""
    clock = Clock()
    throttle = SignInThrottle(address_burst=2, address_interval=6.0, clock=clock)

    admitted = [throttle.attempt("198.51.100.1", _wrong_key()) for _ in range(2)]
    refused = throttle.attempt("198.51.100.1", _wrong_key())
    neighbour = throttle.attempt("198.51.100.2", _wrong_key())
    clock.now += 6.0
    later = throttle.attempt("198.51.100.1", _wrong_key())

    assert admitted == [None, None]
    assert refused == Throttled("address", 6)
    assert neighbour is None
    assert later is None


def test_one_key_prefix_is_counted_across_addresses() -> None:
    """Attempts at one prefix from many addresses share a bucket; another prefix has its own."""
    throttle = SignInThrottle(key_burst=2, key_interval=30.0, clock=Clock())
    prefix = "lga_AbCdEfGh"

    admitted = [throttle.attempt(f"198.51.100.{n}", prefix + f"guess{n}") for n in range(2)]
    refused = throttle.attempt("198.51.100.9", prefix + "guess9")
    other = throttle.attempt("198.51.100.9", _wrong_key())

    assert admitted == [None, None]
    assert refused == Throttled("key", 30)
    assert other is None


def test_an_attempt_the_address_refuses_takes_nothing_from_the_key() -> None:
    """A flood from one address cannot use up a key's attempts."""
    throttle = SignInThrottle(address_burst=1, key_burst=1, clock=Clock())
    key = _wrong_key()

    throttle.attempt("198.51.100.1", _wrong_key())
    refused = [throttle.attempt("198.51.100.1", key) for _ in range(3)]
    elsewhere = throttle.attempt("198.51.100.2", key)

    assert [r.limit if r else None for r in refused] == ["address"] * 3
    assert elsewhere is None


def test_an_ipv6_address_counts_by_its_64_and_a_mapped_ipv4_as_ipv4() -> None:
    """One host's many IPv6 addresses are one bucket; ::ffff:a.b.c.d is a.b.c.d."""
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:198.51.100.7") == address_key("198.51.100.7")
    assert address_key(None) == ""


async def _attempt(
    client: httpx.AsyncClient, key: str, *, address: str | None = None
) -> httpx.Response:
    """One sign-in through a fresh form, as from ``address`` if the gateway trusts the header."""
    headers = {"X-Forwarded-For": address} if address else {}
    form = await client.get("/console/sign-in", headers=headers)
    return await client.post(
        "/console/sign-in",
        data={"csrf_token": _token(form), "credential": key},
        headers=headers,
    )


def _assert_throttled(answer: httpx.Response, *secrets_: str) -> int:
    """The sign-in page again: 429, Retry-After, a plain message, the form; returns the seconds."""
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    seconds = int(answer.headers["retry-after"])
    assert seconds >= 1
    assert "Too many sign-in attempts." in answer.text
    assert 'name="credential"' in answer.text
    for secret in secrets_:
        assert secret not in answer.text
    return seconds


@postgres_only
async def test_past_the_limit_an_address_is_refused_without_a_lookup(
    database_url: str, servers: Servers
) -> None:
    """Bad keys up to the burst are 401; then 429 even with the database gone; others sign in.

    The refusal while PostgreSQL refuses connections is a 429, not a 503: the
    credential was never looked up.
    """
    stack = await build_stack(database_url, servers, auto_approve=True)
    good = await _auditor(stack, CUSTOMER)
    database = str(make_url(stack.settings.database_url).database)
    # uvicorn takes X-Forwarded-For from loopback peers (FORWARDED_ALLOW_IPS' default).
    attacker, auditor = "198.51.100.1", "203.0.113.7"
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as client:
        wrong = [(await _attempt(client, _wrong_key(), address=attacker)).status_code
                 for _ in range(ADDRESS_BURST)]  # fmt: skip
        await _allow_connections(database, False)
        try:
            refused = await _attempt(client, good, address=attacker)
        finally:
            await _allow_connections(database, True)
        still = await _attempt(client, good, address=attacker)
        other = await _attempt(client, good, address=auditor)

    assert wrong == [401] * ADDRESS_BURST
    _assert_throttled(refused, good)
    _assert_throttled(still, good)  # a good key too: the address is what is paused
    assert other.status_code == 303
    assert other.headers["location"] == "/console/events"


@sqlite_only
async def test_attempts_at_one_key_prefix_from_many_addresses_are_paused(
    database_url: str, servers: Servers, json_logs: io.StringIO
) -> None:
    """Guesses sharing a prefix from fresh addresses pause at the key's burst; others go on.

    Each refusal and each pause is a log event; neither carries the key or its prefix.
    """
    stack = await build_stack(database_url, servers, auto_approve=True)
    good = await _auditor(stack, CUSTOMER)
    prefix = good[:12]
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as client:
        guesses = [
            (await _attempt(client, prefix + f"guess{n}", address=f"198.51.100.{n}")).status_code
            for n in range(KEY_BURST)
        ]
        refused = await _attempt(client, good, address="198.51.100.200")
        other = await _auditor(stack, CUSTOMER)
        signed_in = await _attempt(client, other, address="198.51.100.200")

    assert guesses == [401] * KEY_BURST
    _assert_throttled(refused, good)
    assert signed_in.status_code == 303
    events = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert [e["event"] for e in events if e["event"].startswith("console.sign_in_")] == [
        *["console.sign_in_refused"] * KEY_BURST,
        "console.sign_in_throttled",
    ]
    assert [e["limit"] for e in events if e["event"] == "console.sign_in_throttled"] == ["key"]
    assert prefix not in json_logs.getvalue()


async def _from(stack: Stack, local_address: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=local_address)
    return httpx.AsyncClient(base_url=stack.gateway.url, timeout=15, transport=transport)


@sqlite_only
async def test_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit(
    database_url: str, servers: Servers
) -> None:
    """From 127.0.0.2 (not in FORWARDED_ALLOW_IPS) a new X-Forwarded-For each time gains nothing."""
    stack = await build_stack(database_url, servers, auto_approve=True)
    good = await _auditor(stack, CUSTOMER)
    async with await _from(stack, "127.0.0.2") as client:
        wrong = [
            (await _attempt(client, _wrong_key(), address=f"192.0.2.{n}")).status_code
            for n in range(ADDRESS_BURST)
        ]
        refused = await _attempt(client, good, address="192.0.2.250")
    async with await _from(stack, "127.0.0.3") as neighbour:
        signed_in = await _attempt(neighbour, good)

    assert wrong == [401] * ADDRESS_BURST
    _assert_throttled(refused, good)
    assert signed_in.status_code == 303
