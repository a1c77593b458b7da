"""Shutting the runtime down closes every database connection it opened.

The engine is disposed last: work that still reaches the database while the
runtime stops (the audit writer draining its queue, the webhook dispatcher's
last round) would otherwise check a connection in to a pool nobody disposes,
and it would be left to the garbage collector unclosed.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

from gateway.audit import Action, EventDraft, Outcome
from gateway.runtime import open_runtime
from tests.conftest import make_settings


async def test_an_audit_event_queued_at_shutdown_leaves_no_connection_unclosed(
    database_url: str,
) -> None:
    async with open_runtime(make_settings(database_url)) as runtime:
        draft = EventDraft(
            customer_id="acme", action=Action.CONNECTION_CREATED, outcome=Outcome.ALLOWED
        )
        # Queued, not yet written: the writer writes it while the runtime stops.
        recording = asyncio.create_task(runtime.audit.record(draft))
        await asyncio.sleep(0)
    event = await recording
    assert event.customer_id == "acme"

    del runtime
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
