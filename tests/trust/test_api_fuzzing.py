"""Schemathesis against /openapi.json over real HTTP, with valid credentials.

Every documented operation is exercised with generated input: no 5xx, every
response matches its documented schema, every error is problem+json. Input
that breaks the schema on purpose (schemathesis' negative mode: wrong JSON
types, missing members, out-of-range values) gets the same promise.

Generated strings leave out NUL (U+0000): the gateway refuses it in any URL or
JSON body whatever the schema says (PostgreSQL's text cannot hold one), which
tests/trust/test_nul_characters.py holds it to.
"""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import Servers
from tests.gateway.conftest import CUSTOMER, Stack, build_stack

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def live_stack(database_url: str, servers: Servers) -> Stack:
    stack = asyncio.run(build_stack(database_url, servers, auto_approve=True))
    asyncio.run(stack.link())
    return stack


def test_no_operation_answers_5xx_or_off_schema(live_stack: Stack) -> None:
    """Generated requests to every documented operation get documented, non-5xx answers."""
    headers = {"Authorization": f"Bearer {live_stack.service_key}"}
    operations = _operations(live_stack)
    assert operations, "the OpenAPI document lists operations"
    failures: list[str] = []

    for operation in operations:
        failures.extend(_exercise(operation, live_stack, headers))

    assert sorted(set(failures)) == [], "\n".join(sorted(set(failures)))


def test_input_off_the_schema_is_a_problem_never_a_5xx(live_stack: Stack) -> None:
    """Generated requests that break each operation's schema get problem+json 4xx answers."""
    headers = {"Authorization": f"Bearer {live_stack.service_key}"}
    operations = _operations(live_stack)
    failures: list[str] = []

    for operation in operations:
        failures.extend(_exercise(operation, live_stack, headers, mode=GenerationMode.NEGATIVE))

    assert sorted(set(failures)) == [], "\n".join(sorted(set(failures)))


def _operations(stack: Stack) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{stack.gateway.url}/openapi.json")
    schema.config.generation.update(allow_x00=False)
    return [result.ok() for result in schema.get_all_operations()]


def _exercise(
    operation: schemathesis.APIOperation,
    stack: Stack,
    headers: dict[str, str],
    *,
    mode: GenerationMode = GenerationMode.POSITIVE,
) -> list[str]:
    """Run one operation's generated cases; return what went wrong, in words.

    Negative cases are held to the error promise only: no 5xx, errors as
    problem+json (a lenient 2xx to input the schema forbids is not a failure).
    """
    failures: list[str] = []
    label = operation.label

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: CI is repeatable, not flaky
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode), customer=st.sampled_from([CUSTOMER, "globex"]))
    def exercise(case: schemathesis.Case, customer: str) -> None:
        # The customer wherever the operation names one, so that generated
        # input reaches past the entitlement check (a random one is a 403).
        for where in (case.query, case.path_parameters, case.body):
            if isinstance(where, dict) and "customer_id" in where:
                where["customer_id"] = customer
        response = case.call(base_url=stack.gateway.url, headers=headers, timeout=15)
        if response.status_code >= 500:
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
        if response.status_code >= 400:
            declared = response.headers.get("content-type") or [""]
            content_type = declared[0] if isinstance(declared, list) else str(declared)
            if "problem+json" not in content_type:
                failures.append(f"{label}: {response.status_code} as {content_type}")
        if mode is GenerationMode.NEGATIVE:
            return
        try:
            # Not ST202 (schema-valid input refused): the document does not spell
            # out every rule a 400 names (a subject needs an identifier, say).
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        except Exception as exc:
            failures.append(f"{label}: {_summary(exc)}")

    try:
        exercise()
    except Unsatisfiable:  # no input breaks this operation's schema (GET /healthz, say)
        assert mode is GenerationMode.NEGATIVE, label
    return failures


def _summary(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip().startswith("- ")]
    return "; ".join(lines) or str(exc)[:300]
