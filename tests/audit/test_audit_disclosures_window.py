"""The disclosure window: "the preceding 12 months" counted in calendar months."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.audit import months_before


def test_the_same_instant_a_year_earlier() -> None:
    moment = datetime(2026, 11, 28, 17, 4, 5, tzinfo=UTC)
    assert months_before(moment, 12) == datetime(2025, 11, 28, 17, 4, 5, tzinfo=UTC)


def test_a_day_the_earlier_month_lacks_is_clamped_to_its_last_day() -> None:
    assert months_before(datetime(2026, 3, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert months_before(datetime(2025, 3, 31, tzinfo=UTC), 13) == datetime(2024, 2, 29, tzinfo=UTC)


def test_months_cross_year_boundaries() -> None:
    assert months_before(datetime(2026, 1, 15, tzinfo=UTC), 3) == datetime(2025, 10, 15, tzinfo=UTC)
