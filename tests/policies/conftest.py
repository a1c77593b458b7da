"""Factories for policy tests: a real policy, an engine, contexts and records."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from policies import (
    AccessContext,
    CallerClass,
    Field,
    Identifier,
    Policy,
    PolicyEngine,
    Record,
    Subject,
    Visibility,
    email_identifier,
    load_policy,
    provider_user_identifier,
)

CUSTOMER = "cust-1"
NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
ANN = Subject(identifiers=(email_identifier("ann@example.com"), provider_user_identifier("x", "1")))


def pseudonym(identifier: Identifier) -> str:
    return hashlib.sha256(f"test-key|{identifier}".encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


@pytest.fixture
def engine(policy: Policy) -> PolicyEngine:
    return PolicyEngine(policy)


ContextFactory = Callable[..., AccessContext]
RecordFactory = Callable[..., Record]


@pytest.fixture
def make_context() -> ContextFactory:
    def make(
        *,
        consented: Iterable[Identifier] = (),
        suppressed: Iterable[Identifier] = (),
        suppressed_for: str | None = None,
        **overrides: Any,
    ) -> AccessContext:
        consents = frozenset(consented)
        suppressions = frozenset(suppressed)

        def is_suppressed(identifier: Identifier, purpose: str) -> bool:
            if suppressed_for is not None and purpose != suppressed_for:
                return False
            return identifier in suppressions

        fields: dict[str, Any] = {
            "service_id": "svc-1",
            "caller_class": CallerClass.INTERNAL,
            "granted_purposes": frozenset({"essential", "marketing", "analytics"}),
            "entitled_customers": frozenset({CUSTOMER}),
            "connection_customer_id": CUSTOMER,
            "purpose": "essential.service",
            "now": NOW,
            "consented": consents.__contains__,
            "suppressed": is_suppressed,
            "pseudonymize": pseudonym,
        }
        fields.update(overrides)
        return AccessContext(**fields)

    return make


@pytest.fixture
def make_record() -> RecordFactory:
    def make(**overrides: Any) -> Record:
        fields: dict[str, Any] = {
            "id": "rec-1",
            "customer_id": CUSTOMER,
            "connection_id": "conn-1",
            "provider": "x",
            "resource": "mentions",
            "visibility": Visibility.PUBLIC,
            "subjects": (ANN,),
            "data": {
                "author": Field("Ann", "user.name"),
                "text": Field("hello", "user.content.public"),
            },
        }
        fields.update(overrides)
        return Record(**fields)

    return make
