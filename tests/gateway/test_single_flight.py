"""Single-flight loads, and how a runtime's loads settle when it stops."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from gateway.errors import DatabaseUnavailable
from gateway.single_flight import LoadsInFlight, SingleFlight


async def test_a_load_whose_caller_went_away_is_awaited_by_settle() -> None:
    """The caller is cancelled; the load runs on, and settle returns once it has ended."""
    loads = LoadsInFlight()
    flight: SingleFlight[str, str] = SingleFlight(loads)
    release = asyncio.Event()
    ended: list[str] = []

    async def load() -> str:
        await release.wait()
        ended.append("k")
        return "value"

    caller = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    asyncio.get_running_loop().call_later(0.05, release.set)
    await loads.settle(5.0)
    assert ended == ["k"]


async def test_a_load_past_the_grace_is_cancelled_and_logged() -> None:
    """settle does not wait forever: the load is cancelled, its clean-up awaited."""
    loads = LoadsInFlight()
    flight: SingleFlight[str, str] = SingleFlight(loads)
    cleaned: list[str] = []

    async def load() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("k")
        return "never"

    caller = asyncio.create_task(flight.run("k", load, name="load-k"))
    await asyncio.sleep(0)
    with structlog.testing.capture_logs() as logs:
        await loads.settle(0.05)
    assert cleaned == ["k"]
    assert [
        {key: entry[key] for key in ("event", "count", "loads", "grace")} for entry in logs
    ] == [{"event": "loads.abandoned", "count": 1, "loads": ["load-k"], "grace": 0.05}]
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_no_load_starts_once_settling_began() -> None:
    """A new load is refused with 503 (and its coroutine closed, never left unawaited)."""
    loads = LoadsInFlight()
    await loads.settle(1.0)

    async def load() -> str:
        return "value"

    with pytest.raises(DatabaseUnavailable):
        await SingleFlight[str, str](loads).run("k", load)
