"""The pure token-expiry decisions of gateway.refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.refresh import MAX_COOLDOWN, cooldown_for, needs_refresh

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_token_expiring_within_the_margin_needs_refresh() -> None:
    """Inside the margin (or already expired) → refresh."""
    assert needs_refresh(NOW + timedelta(seconds=299), NOW, 300)
    assert needs_refresh(NOW - timedelta(seconds=1), NOW, 300)


def test_a_token_beyond_the_margin_does_not() -> None:
    """Outside the margin → use it."""
    assert not needs_refresh(NOW + timedelta(seconds=301), NOW, 300)


def test_a_token_without_expiry_is_used_until_a_401() -> None:
    """RFC 6749 §5.1 makes expires_in optional: no expiry, no proactive refresh."""
    assert not needs_refresh(None, NOW, 300)


def test_cooldown_doubles_and_is_capped() -> None:
    """Consecutive transient failures back off exponentially up to a ceiling."""
    assert [cooldown_for(n) for n in (1, 2, 3)] == [30.0, 60.0, 120.0]
    assert cooldown_for(50) == MAX_COOLDOWN
