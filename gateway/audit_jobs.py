"""The audit log's periodic jobs: partition upkeep; sign each customer's head, then prune
past retention.

Run by ``linkgate serve`` in the app's lifespan (and by ``linkgate audit
partitions`` / ``checkpoint`` / ``prune`` on demand):

* partition upkeep (PostgreSQL) in every serve process, key or no key: at
  start-up, then every :data:`PARTITION_UPKEEP_INTERVAL`. Appends need the
  months ahead whether or not this replica signs anything, and a round that
  did not get its lock in time is simply the next round's work
  (:mod:`gateway.audit.partitions`).
* checkpoints and retention only when ``audit_key_file`` is set. Every replica
  may run them: :meth:`AuditStore.checkpoint` locks the customer's head row and
  returns the existing checkpoint when the head has not moved, so two replicas
  never sign one head twice.

Retention (privacy notice, "data retention"): events older than
``audit_retention_days`` are deleted, but only up to a checkpoint signed before
the cut-off (:func:`gateway.audit.prunable_up_to`), so what remains still
verifies from a signed anchor. On PostgreSQL whole months past the cut-off are
dropped first where every customer's checkpoint covers them
(:meth:`AuditStore.prune_partitions`); the rest is deleted per customer. The
floor of 365 days keeps the notice's California accounting ("in the
preceding 12 months") answerable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from gateway.audit import AuditStore, ChainBroken, CheckpointKeys, CheckpointSigner
from gateway.audit import AuditUnavailable as StoreUnavailable
from gateway.config import Settings

__all__ = [
    "PARTITION_UPKEEP_INTERVAL",
    "JobReport",
    "audit_jobs",
    "checkpoint_keys",
    "load_signer",
    "run_once",
    "upkeep_partitions",
]

log = structlog.get_logger("gateway.audit_jobs")

# Hourly: upkeep keeps three months ahead, so many missed rounds cost nothing;
# a round is a catalog read when there is nothing to create.
PARTITION_UPKEEP_INTERVAL = 3600.0


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
    dropped: list[str] = field(default_factory=list)  # month partitions dropped (PostgreSQL)


async def run_once(
    store: AuditStore,
    signer: CheckpointSigner,
    *,
    retention_days: int | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    customers: list[str] | None = None,
) -> JobReport:
    """Checkpoint every customer's head, then prune what is past retention.

    Pruning drops the expired months first (fleet-wide, so only when every
    customer is in the round), then deletes each customer's remaining expired
    events: a month whose events were deleted row by row first could no
    longer be dropped whole.
    """
    report = JobReport(signed={}, pruned={}, refused={})
    everyone = customers is None
    in_round = customers if customers is not None else await store.customers()
    for customer_id in in_round:
        try:
            checkpoint = await store.checkpoint(signer, customer_id)
        except ChainBroken as exc:
            _refuse(report, customer_id, exc)
            continue
        if checkpoint is not None:
            report.signed[customer_id] = checkpoint.seq
    if retention_days is None:
        return report
    cut_off = now() - timedelta(days=retention_days)
    if everyone:
        report.dropped.extend(p.name for p in await store.prune_partitions(cut_off))
    for customer_id in in_round:
        if customer_id in report.refused:
            continue
        try:
            deleted = await store.prune(customer_id, cut_off)
        except ChainBroken as exc:
            _refuse(report, customer_id, exc)
            continue
        if deleted:
            report.pruned[customer_id] = deleted
    return report


def _refuse(report: JobReport, customer_id: str, exc: ChainBroken) -> None:
    # Never sign or prune over a chain that does not verify: that would hide it.
    report.refused[customer_id] = str(exc)
    log.error("audit.checkpoint_refused", customer_id=customer_id, problem=str(exc))


async def upkeep_partitions(store: AuditStore) -> None:
    """One round of partition upkeep, logged; a failure is logged and left to the next round."""
    try:
        report = await store.partitions.upkeep()
    except StoreUnavailable as exc:
        log.warning("audit.partitions_failed", error=str(exc))
        return
    if report.created or report.moved:
        log.info("audit.partitions_created", created=report.created, moved=report.moved)
    if report.moved:
        # Appends outran upkeep: rows sat in DEFAULT until now. Say so loudly.
        log.warning("audit.partitions_fell_behind", moved=report.moved)
    if report.busy:
        log.warning("audit.partitions_busy", months=report.busy)


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
        if report.signed or report.pruned or report.dropped:
            log.info(
                "audit.checkpointed",
                customers=len(report.signed),
                pruned=sum(report.pruned.values()),
                dropped=report.dropped,
            )


async def _upkeep_loop(store: AuditStore, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await upkeep_partitions(store)


@asynccontextmanager
async def audit_jobs(store: AuditStore, settings: Settings) -> AsyncIterator[None]:
    """Run the audit log's jobs for as long as the app runs: partition upkeep always (once
    before the app serves), checkpoints and retention when a signing key is configured."""
    await upkeep_partitions(store)
    tasks = [
        asyncio.create_task(_upkeep_loop(store, PARTITION_UPKEEP_INTERVAL), name="audit-partitions")
    ]
    signer = load_signer(settings)
    if signer is not None:
        tasks.append(
            asyncio.create_task(
                _loop(
                    store,
                    signer,
                    settings.audit_checkpoint_interval,
                    settings.audit_retention_days,
                ),
                name="audit-checkpoints",
            )
        )
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
