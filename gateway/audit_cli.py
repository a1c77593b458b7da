"""``linkgate auditors …`` and ``linkgate audit …``: auditor credentials and the log's operations.

Registered into the main parser by :func:`register`. Verification exits 1 and
names the first bad sequence number when a chain is broken; long exports show
progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.audit import AuditStore, ChainBroken, CheckpointSigner, generate_key_file
from gateway.audit import AuditUnavailable as StoreUnavailable
from gateway.audit_export import FORMATS, export_log, verify_export
from gateway.audit_jobs import checkpoint_keys, load_signer, run_once
from gateway.callers import CallerKind, create_caller, list_callers, revoke_caller
from gateway.config import MIN_AUDIT_RETENTION_DAYS, Settings, load_settings
from gateway.errors import ConfigError, LinkgateError
from gateway.storage import audit_tables, create_engine, writer

__all__ = ["register"]

EXIT_BROKEN = 1


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coroutine)


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[AuditStore]:
    engine = create_engine(settings.database_url)
    try:
        yield AuditStore(
            writer(engine),
            audit_tables,
            read_engine=engine,
            keys=checkpoint_keys(settings, load_signer(settings)),
        )
    except StoreUnavailable as exc:
        raise LinkgateError(
            f"the audit log cannot be read ({exc}). Check that the database is running and "
            "reachable at LINKGATE_DATABASE_URL, and at the current schema (linkgate migrate)"
        ) from None
    finally:
        await engine.dispose()


# -- auditors ------------------------------------------------------------------------------


async def _auditors_create(args: argparse.Namespace) -> int:
    engine = create_engine(load_settings().database_url)
    try:
        caller, key = await create_caller(
            engine, kind=CallerKind.AUDITOR, name=args.name, customers=args.customer
        )
    finally:
        await engine.dispose()
    if args.json:
        print(json.dumps({"id": caller.id, "key": key}))
    else:
        print(f"created auditor {caller.id} ({caller.name})")
        print(f"key (shown once, store it now): {key}")
    return 0


async def _auditors_list(args: argparse.Namespace) -> int:
    engine = create_engine(load_settings().database_url)
    try:
        found = await list_callers(engine, CallerKind.AUDITOR)
    finally:
        await engine.dispose()
    if args.json:
        print(json.dumps([caller.public() for caller in found], indent=2))
        return 0
    for caller in found:
        state = f"revoked {caller.revoked_at:%Y-%m-%d}" if caller.revoked_at else "active"
        print(
            f"{caller.id}  {caller.name}  customers={','.join(sorted(caller.customers))}  {state}"
        )
    if not found:
        print("no auditor credentials yet")
    return 0


async def _auditors_revoke(args: argparse.Namespace) -> int:
    engine = create_engine(load_settings().database_url)
    try:
        await revoke_caller(engine, args.id)
    finally:
        await engine.dispose()
    print(f"revoked {args.id}; requests with its key now get 401")
    return 0


# -- audit ---------------------------------------------------------------------------------


async def _verify(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.export:
        out = Path(args.export)
        try:
            check = verify_export(out, checkpoint_keys(settings, load_signer(settings)))
        except (OSError, ValueError, KeyError) as exc:
            raise LinkgateError(f"cannot read the export or its manifest: {exc}") from None
        if check.ok:
            print(f"{out}: ok, {check.events_checked} events, matches its manifest")
            return 0
        print(f"{out}: BROKEN at seq {check.first_bad_seq}: {check.problem}")
        return EXIT_BROKEN
    broken = False
    async with _store(settings) as store:
        customers = [args.customer] if args.customer else await store.customers()
        for customer_id in customers:
            result = await store.verify(customer_id)
            if result.ok:
                print(
                    f"{customer_id}: ok, {result.events_checked} events, "
                    f"head {result.head_seq} {result.head_hash}"
                )
            else:
                broken = True
                print(f"{customer_id}: BROKEN at seq {result.first_bad_seq}: {result.problem}")
    if not customers:
        print("no audit events yet")
    return EXIT_BROKEN if broken else 0


async def _export(args: argparse.Namespace) -> int:
    settings = load_settings()
    since = _moment(args.since, "--since")
    until = _moment(args.until, "--until")
    out = Path(args.out)

    def progress(done: int) -> None:
        print(f"\r  {done} events", end="", file=sys.stderr, flush=True)

    async with _store(settings) as store:
        try:
            manifest = await export_log(
                store,
                args.customer,
                fmt=args.format,
                out=out,
                since=since,
                until=until,
                progress=progress,
            )
        except ChainBroken as exc:
            raise LinkgateError(f"the stored log does not decode: {exc}") from None
    print(file=sys.stderr)
    print(
        f"exported {manifest['events']} events of {args.customer} to {out} "
        f"(seq {manifest['first_seq']}..{manifest['last_seq']})"
    )
    print(f"manifest: {out}.manifest.json; verify with: {manifest['verify']}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    try:
        generate_key_file(args.path)
    except FileExistsError:
        raise LinkgateError(f"{args.path} exists; refusing to overwrite a signing key") from None
    except OSError as exc:
        raise LinkgateError(f"cannot write {args.path}: {exc.strerror}") from None
    signer = CheckpointSigner.from_key_file(args.path)
    print(f"wrote {args.path} (mode 0600); set LINKGATE_AUDIT_KEY_FILE to it")
    print("verifier key (publish it; LINKGATE_AUDIT_VERIFIER_KEYS on verifying replicas):")
    print(signer.verifier_key)
    return 0


async def _checkpoint(args: argparse.Namespace) -> int:
    settings = load_settings()
    signer = load_signer(settings)
    if signer is None:
        raise ConfigError(["LINKGATE_AUDIT_KEY_FILE: set it to sign checkpoints"])
    async with _store(settings) as store:
        report = await run_once(
            store,
            signer,
            retention_days=None,
            customers=[args.customer] if args.customer else None,
        )
    for customer_id, seq in sorted(report.signed.items()):
        print(f"{customer_id}: checkpoint at seq {seq}")
    for customer_id, problem in sorted(report.refused.items()):
        print(f"{customer_id}: NOT signed: {problem}")
    return EXIT_BROKEN if report.refused else 0


async def _partitions(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with _store(settings) as store:
        partitions = store.partitions
        if not partitions.enabled:
            print("the audit log is partitioned on PostgreSQL only; this database is not")
            return 0
        busy: list[str] = []
        if args.create_ahead is not None:
            print("creating month partitions (waiting briefly for locks)…", file=sys.stderr)
            report = await partitions.upkeep(args.create_ahead)
            for name in report.created:
                print(f"created {name}")
            for name, rows in sorted(report.moved.items()):
                print(f"moved {rows} rows out of DEFAULT into {name}")
            busy = report.busy
        listed = await partitions.partitions()
    for partition in listed:
        count = "not analyzed yet" if partition.rows is None else f"~{partition.rows} rows"
        if partition.start is None or partition.end is None:
            span = "DEFAULT (rows beyond the months)"
        else:
            span = f"{partition.start:%Y-%m-%d} .. {partition.end:%Y-%m-%d}"
        print(f"{partition.name}  {span}  {count}")
    stranded = [p for p in listed if p.is_default and p.rows]
    if stranded:
        print(
            "DEFAULT holds rows: appends outran upkeep. Run `linkgate audit partitions "
            "--create-ahead 3` to move them into their months."
        )
    if busy:
        print(
            f"NOT created: {', '.join(busy)}: the tables' lock was not granted in time "
            "(a long query or transaction holds them); run this again, or let the next "
            "upkeep round do it."
        )
        return EXIT_BROKEN
    return 0


async def _prune(args: argparse.Namespace) -> int:
    settings = load_settings()
    before = _moment(args.before, "--before")
    assert before is not None
    floor = datetime.now(UTC) - timedelta(days=MIN_AUDIT_RETENTION_DAYS)
    if before > floor:
        # The notice's California section: disclosures "in the preceding 12 months".
        raise ConfigError(
            [f"--before: must be at least {MIN_AUDIT_RETENTION_DAYS} days ago ({floor:%Y-%m-%d})"]
        )
    total = 0
    async with _store(settings) as store:
        if not args.customer:
            # Whole months first (PostgreSQL): rows deleted from a month first would
            # keep it from being dropped whole.
            for partition in await store.prune_partitions(before):
                print(f"dropped partition {partition.name} ({partition.start:%Y-%m})")
        customers = [args.customer] if args.customer else await store.customers()
        for customer_id in customers:
            try:
                deleted = await store.prune(customer_id, before)
            except ChainBroken as exc:
                print(f"{customer_id}: NOT pruned: {exc}")
                return EXIT_BROKEN
            total += deleted
            print(
                f"{customer_id}: pruned {deleted} events (to a checkpoint before {before:%Y-%m-%d})"
            )
    print(f"pruned {total} events")
    return 0


def _moment(value: str | None, flag: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError([f"{flag}: an ISO 8601 date or date-time, e.g. 2025-01-31"]) from None
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # well-formed, but before year 1 or after 9999 once in UTC
        raise ConfigError([f"{flag}: must fall within the years 1 to 9999 in UTC"]) from None


# -- parser --------------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add ``auditors`` and ``audit`` to the ``linkgate`` sub-commands."""
    auditors = commands.add_parser("auditors", help="auditor credentials").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = auditors.add_parser("create", help="create an auditor credential (printed once)")
    create.add_argument("name")
    create.add_argument("--customer", action="append", required=True)
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=lambda a: _run(_auditors_create(a)))
    listing = auditors.add_parser("list", help="list auditor credentials (never the keys)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=lambda a: _run(_auditors_list(a)))
    revoke = auditors.add_parser("revoke", help="revoke an auditor credential")
    revoke.add_argument("id")
    revoke.set_defaults(handler=lambda a: _run(_auditors_revoke(a)))

    audit = commands.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    verify = audit.add_parser("verify", help="recompute the hash chains; exit 1 when broken")
    verify.add_argument("--customer")
    verify.add_argument("--export", metavar="PATH", help="verify an export against its manifest")
    verify.set_defaults(handler=lambda a: _run(_verify(a)))
    export = audit.add_parser("export", help="export a customer's log with a manifest")
    export.add_argument("--customer", required=True)
    export.add_argument("--format", choices=FORMATS, default="ndjson")
    export.add_argument("--out", required=True)
    export.add_argument("--since")
    export.add_argument("--until")
    export.set_defaults(handler=lambda a: _run(_export(a)))
    keygen = audit.add_parser("keygen", help="write a new Ed25519 checkpoint key (mode 0600)")
    keygen.add_argument("path")
    keygen.set_defaults(handler=_keygen)
    checkpoint = audit.add_parser("checkpoint", help="sign each customer's chain head now")
    checkpoint.add_argument("--customer")
    checkpoint.set_defaults(handler=lambda a: _run(_checkpoint(a)))
    prune = audit.add_parser(
        "prune", help="delete events before a date, at checkpoints only (whole months if it can)"
    )
    prune.add_argument("--before", required=True)
    prune.add_argument("--customer")
    prune.set_defaults(handler=lambda a: _run(_prune(a)))
    partitions = audit.add_parser(
        "partitions", help="list the log's month partitions (PostgreSQL); create months ahead"
    )
    partitions.add_argument(
        "--create-ahead",
        type=int,
        metavar="MONTHS",
        help="first create the missing partitions up to MONTHS months ahead",
    )
    partitions.set_defaults(handler=lambda a: _run(_partitions(a)))
