"""The audit outbox's periodic drain follows the settings, not constants in the code."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from gateway.audit import Action, EventDraft, Outcome
from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.runtime import open_runtime
from gateway.storage import audit_tables
from gateway.vault import generate_key_entry
from tests.conftest import make_settings

REQUIRED = {"LINKGATE_VAULT_KEYS": generate_key_entry("k1"), "LINKGATE_SECRET_KEY": "x" * 48}


def test_the_drain_interval_and_grace_are_read_from_the_environment() -> None:
    """LINKGATE_AUDIT_OUTBOX_DRAIN_INTERVAL and _GRACE set the two settings, in seconds."""
    settings = load_settings(
        {
            **REQUIRED,
            "LINKGATE_AUDIT_OUTBOX_DRAIN_INTERVAL": "5",
            "LINKGATE_AUDIT_OUTBOX_DRAIN_GRACE": "2.5",
        }
    )
    assert (settings.audit_outbox_drain_interval, settings.audit_outbox_drain_grace) == (5.0, 2.5)


def test_a_drain_interval_that_never_comes_is_refused_with_its_fix() -> None:
    """Zero, negative or infinite values are configuration problems naming the variable."""
    with pytest.raises(ConfigError) as raised:
        load_settings(
            {
                **REQUIRED,
                "LINKGATE_AUDIT_OUTBOX_DRAIN_INTERVAL": "0",
                "LINKGATE_AUDIT_OUTBOX_DRAIN_GRACE": "-1",
            }
        )
    assert [p.split(":")[0] for p in raised.value.problems] == [
        "LINKGATE_AUDIT_OUTBOX_DRAIN_INTERVAL",
        "LINKGATE_AUDIT_OUTBOX_DRAIN_GRACE",
    ]
    with pytest.raises(ConfigError):
        load_settings({**REQUIRED, "LINKGATE_AUDIT_OUTBOX_DRAIN_INTERVAL": "inf"})


async def test_a_running_gateway_drains_a_left_entry_at_the_interval_it_is_given(
    database_url: str,
) -> None:
    """An entry whose append never came is appended by the periodic drain, without a restart,
    once it is older than the grace; exactly once."""
    settings = make_settings(
        database_url, audit_outbox_drain_interval=0.05, audit_outbox_drain_grace=0.0
    )
    draft = EventDraft(
        customer_id="acme",
        action=Action.CONNECTION_REFRESHED,
        outcome=Outcome.ALLOWED,
        connection_id="con_left",
        provider="sandbox",
    )
    outbox = audit_tables.outbox
    async with open_runtime(settings) as runtime:
        async with runtime.engine.begin() as conn:
            await runtime.audit_outbox.add(conn, draft)  # committed, never delivered
        left = 1
        for _ in range(400):  # the drain runs every 50 ms; allow a noisy machine plenty
            async with runtime.engine.connect() as conn:
                left = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
            if left == 0:
                break
            await asyncio.sleep(0.05)
        assert left == 0
        events = [e async for e in runtime.audit_store.events("acme")]
        assert [(str(e.action), e.connection_id) for e in events] == [
            ("connection.refreshed", "con_left")
        ]
        assert (await runtime.audit_store.verify("acme")).ok
