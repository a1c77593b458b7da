"""The audit log's periodic jobs: sign each customer's head, then prune past retention.

Run by ``linkgate serve`` in the app's lifespan when ``audit_key_file`` is set
(and by ``linkgate audit checkpoint`` / ``prune`` on demand). Every replica may
run the job: :meth:`AuditStore.checkpoint` locks the customer's head row and
returns the existing checkpoint when the head has not moved, so two replicas
never sign one head twice.

Retention (privacy notice, "data retention"): events older than
``audit_retention_days`` are deleted, but only up to a checkpoint signed before
the cut-off (:func:`gateway.audit.prunable_up_to`), so what remains still
verifies from a signed anchor. The floor of 365 days keeps the notice's
California accounting ("in the preceding 12 months") answerable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from gateway.audit import AuditStore, ChainBroken, CheckpointKeys, CheckpointSigner
from gateway.audit import AuditUnavailable as StoreUnavailable
from gateway.config import Settings

__all__ = ["JobReport", "audit_jobs", "checkpoint_keys", "load_signer", "run_once"]

log = structlog.get_logger("gateway.audit_jobs")


def load_signer(settings: Settings) -> CheckpointSigner | None:
    """The checkpoint signer from ``audit_key_file``, or ``None`` when none is configured."""
    if not settings.audit_key_file:
        return None
    return CheckpointSigner.from_key_file(settings.audit_key_file)


def checkpoint_keys(settings: Settings, signer: CheckpointSigner | None = None) -> CheckpointKeys:
    """The keys checkpoints verify with: the configured verifier keys and our own signer's."""
    keys = CheckpointKeys.parse(settings.audit_verifier_keys)
    if signer is not None:
        keys = keys | CheckpointKeys({signer.key_id: signer.public_key})
    return keys


@dataclass(frozen=True, slots=True)
class JobReport:
    """What one round did, per customer."""

    signed: dict[str, int]  # customer -> checkpointed seq
    pruned: dict[str, int]  # customer -> events deleted
    refused: dict[str, str]  # customer -> why its chain was not signed or pruned


async def run_once(
    store: AuditStore,
    signer: CheckpointSigner,
    *,
    retention_days: int | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    customers: list[str] | None = None,
) -> JobReport:
    """Checkpoint every customer's head, then prune what is past retention."""
    report = JobReport(signed={}, pruned={}, refused={})
    for customer_id in customers if customers is not None else await store.customers():
        try:
            checkpoint = await store.checkpoint(signer, customer_id)
            if checkpoint is not None:
                report.signed[customer_id] = checkpoint.seq
            if retention_days is not None:
                cut_off = now() - timedelta(days=retention_days)
                deleted = await store.prune(customer_id, cut_off)
                if deleted:
                    report.pruned[customer_id] = deleted
        except ChainBroken as exc:
            # Never sign or prune over a chain that does not verify: that would hide it.
            report.refused[customer_id] = str(exc)
            log.error("audit.checkpoint_refused", customer_id=customer_id, problem=str(exc))
    return report


async def _loop(
    store: AuditStore, signer: CheckpointSigner, interval: float, retention_days: int
) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            report = await run_once(store, signer, retention_days=retention_days)
        except StoreUnavailable as exc:
            log.warning("audit.checkpoint_failed", error=str(exc))
            continue
        if report.signed or report.pruned:
            log.info(
                "audit.checkpointed",
                customers=len(report.signed),
                pruned=sum(report.pruned.values()),
            )


@asynccontextmanager
async def audit_jobs(store: AuditStore, settings: Settings) -> AsyncIterator[None]:
    """Run the checkpoint-and-prune job for as long as the app runs (no-op without a key)."""
    signer = load_signer(settings)
    if signer is None:
        yield
        return
    task = asyncio.create_task(
        _loop(store, signer, settings.audit_checkpoint_interval, settings.audit_retention_days),
        name="audit-checkpoints",
    )
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
