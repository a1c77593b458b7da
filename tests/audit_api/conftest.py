"""Audit API tests run against the live gateway + sandbox stack of tests/gateway."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.callers import CallerKind, create_caller
from gateway.storage import create_engine
from policies.vocabulary import CallerClass
from tests.gateway.conftest import (
    CUSTOMER,
    OTHER_CUSTOMER,
    Stack,
    stack,  # noqa: F401 - re-exported fixture
)


@dataclass(frozen=True)
class Keys:
    """Auditor keys for each customer, and a way to make more service keys."""

    acme: str
    globex: str


async def make_key(
    on: Stack,
    kind: CallerKind,
    customers: list[str],
    *,
    purposes: tuple[str, ...] = (),
    caller_class: CallerClass = CallerClass.INTERNAL,
    name: str = "t",
) -> str:
    engine = create_engine(on.settings.database_url)
    try:
        _, key = await create_caller(
            engine,
            kind=kind,
            name=name,
            customers=customers,
            purposes=purposes,
            caller_class=caller_class,
        )
    finally:
        await engine.dispose()
    return key


@pytest.fixture
async def auditors(stack: Stack) -> Keys:  # noqa: F811 - the re-exported fixture
    return Keys(
        acme=await make_key(stack, CallerKind.AUDITOR, [CUSTOMER], name="privacy-acme"),
        globex=await make_key(stack, CallerKind.AUDITOR, [OTHER_CUSTOMER], name="privacy-globex"),
    )
