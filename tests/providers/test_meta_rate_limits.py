"""Meta's Business Use Case usage header read as the wait to announce (providers.meta)."""

from __future__ import annotations

import httpx
import pytest

from providers.meta import ERRORS, RATE_LIMIT_WAIT, usage_wait

THROTTLED = {"error": {"message": "(#80001) limit", "type": "OAuthException", "code": 80001}}


def _usage(*minutes: object) -> dict[str, str]:
    entries = ", ".join(
        f'"{n}": [{{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": {m}}}]'
        for n, m in enumerate(minutes)
    )
    return {"X-Business-Use-Case-Usage": "{" + entries + "}"}


def test_the_longest_estimate_of_every_business_is_waited_in_seconds() -> None:
    """Two businesses throttled for 2 and 7 minutes: 420 seconds."""
    assert usage_wait(_usage(2, 7)) == 420.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _usage(0),
        _usage('"7"'),
        _usage("true"),
        {"X-Business-Use-Case-Usage": "not json"},
        {"X-Business-Use-Case-Usage": "[1, 2]"},
        {"X-Business-Use-Case-Usage": '{"1": {"estimated_time_to_regain_access": 3}}'},
        {"X-Business-Use-Case-Usage": "{" + " " * 9000 + "}"},
    ],
    ids=["absent", "zero", "string", "boolean", "garbage", "list", "not-a-list", "too-long"],
)
def test_no_usable_estimate_is_none(headers: dict[str, str]) -> None:
    """Absent, zero, mistyped or malformed estimates give no wait of their own."""
    assert usage_wait(headers) is None


def test_the_rate_limit_rule_prefers_the_estimate_then_falls_back() -> None:
    """The business-use-case code announces Meta's estimate, else the fixed 60 seconds."""
    verdict = ERRORS.classify_api(400, THROTTLED)

    assert verdict is not None
    assert verdict.wait(httpx.Headers(_usage(3))) == 180.0
    assert verdict.wait(httpx.Headers({})) == RATE_LIMIT_WAIT
