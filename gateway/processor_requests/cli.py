"""``linkgate requests …`` and ``linkgate purge``: the operator's side of processor requests.

The operator acts as ``linkgate-cli`` in the audit log. Identifiers given on
the command line are hashed (and sealed while the request runs) exactly as
through the API; nothing printed here repeats one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from gateway.config import load_settings
from gateway.errors import InvalidParameter
from gateway.observability import configure_logging
from gateway.processor_requests.jobs import request_store, services
from gateway.processor_requests.machine import Jurisdiction, Kind, Status
from gateway.processor_requests.purge import purge
from gateway.processor_requests.runner import Runner
from gateway.processor_requests.store import Filing, ProcessorRequest
from gateway.runtime import Runtime, open_runtime
from gateway.subject_controls import check_note, parse_subject

__all__ = ["CLI_ACTOR", "register"]

CLI_ACTOR = "linkgate-cli"


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coroutine)


def _runtime() -> AbstractAsyncContextManager[Runtime]:
    """The gateway's runtime; its logs go to stderr so stdout stays the command's answer."""
    settings = load_settings()
    configure_logging(level=settings.log_level, json=settings.log_json, stream=sys.stderr)
    return open_runtime(settings)


def _scoped(values: list[str], key: str, option: str) -> list[dict[str, str]]:
    found = []
    for value in values:
        provider, sep, rest = value.partition(":")
        if not sep or not rest:
            raise InvalidParameter(f"{option} takes provider:value", parameter=option)
        found.append({"provider": provider, key: rest})
    return found


def _line(request: ProcessorRequest, now: datetime) -> str:
    body = request.public(now, with_result=False)
    flag = "  OVERDUE" if body["overdue"] else ""
    return (
        f"{request.id}  {request.customer_id}  {request.kind.value:<18} "
        f"{request.status.value:<9}  due {request.due_at:%Y-%m-%d}{flag}"
    )


async def _create(args: argparse.Namespace) -> int:
    subject = {
        "emails": args.email,
        "phones": args.phone,
        "provider_user_ids": _scoped(args.provider_user_id, "id", "--provider-user-id"),
        "handles": _scoped(args.handle, "handle", "--handle"),
    }
    identifiers = parse_subject(subject)
    filing = Filing(
        customer_id=args.customer,
        kind=Kind(args.kind),
        identifiers=identifiers,
        purposes=tuple(sorted(set(args.purpose))),
        lift=args.lift,
        verified_by=args.verified_by,
        note=check_note(args.note, identifiers, name="--note"),
        jurisdiction=Jurisdiction(args.jurisdiction) if args.jurisdiction else None,
    )
    async with _runtime() as runtime:
        store = request_store(runtime)
        created = await store.file(filing, actor_id=CLI_ACTOR, actor_class="internal")
        _print(created, store.clock(), as_json=args.json)
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with _runtime() as runtime:
        store = request_store(runtime)
        found = await store.search(
            [args.customer],
            status=Status(args.status) if args.status else None,
            overdue=True if args.overdue else None,
            limit=args.limit,
        )
        now = store.clock()
    if args.json:
        print(json.dumps([r.public(now, with_result=False) for r in found], indent=2))
    else:
        for request in found:
            print(_line(request, now))
        if not found:
            print("no processor requests")
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with _runtime() as runtime:
        store = request_store(runtime)
        found = await store.get(args.id, customers=None)
        print(json.dumps(found.public(store.clock()), indent=2))
    return 0


async def _verify(args: argparse.Namespace) -> int:
    async with _runtime() as runtime:
        store = request_store(runtime)
        found = await store.get(args.id, customers=None)
        verified = await store.verify(found, args.by, actor_id=CLI_ACTOR, actor_class="internal")
        print(_line(verified, store.clock()))
    return 0


def _progress(request: ProcessorRequest, step: str, index: int, total: int) -> None:
    print(f"  {request.id}  step {index}/{total}: {step}", file=sys.stderr, flush=True)


async def _run_requests(args: argparse.Namespace) -> int:
    async with _runtime() as runtime:
        runner = Runner(services(runtime), progress=_progress)
        if args.id:
            one = await runner.run_next(request_id=args.id)
            finished = [one] if one is not None else []
        else:
            finished = await runner.run_all()
        now = request_store(runtime).clock()
    for request in finished:
        print(_line(request, now))
    if not finished:
        print("nothing to run (no verified request, or its lease is still held)")
    return 0 if all(r.status is not Status.FAILED for r in finished) else 1


async def _purge(_args: argparse.Namespace) -> int:
    async with _runtime() as runtime:
        print("purging what is past retention …", file=sys.stderr, flush=True)
        report = await purge(runtime.engine, runtime.audit_outbox, runtime.policy.policy)
    totals = report.totals()
    for kind, count in totals.items():
        print(f"  deleted {count} {kind.replace('_', ' ')}")
    if not totals:
        print("nothing is past retention")
    if report.events_outboxed:
        # Committed with their deletions, so not lost: the outbox's drain appends them.
        print(
            f"linkgate: {report.events_outboxed} retention.purged event(s) were not appended "
            "by this run (see audit.outboxed in the log); committed with their deletions in "
            "the audit outbox, they are appended by the next gateway start or outbox drain",
            file=sys.stderr,
        )
    return 0


def _print(request: ProcessorRequest, now: datetime, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(request.public(now), indent=2))
    else:
        print(_line(request, now))


def register(commands: Any) -> None:
    """Add ``requests`` and ``purge`` to the ``linkgate`` sub-commands."""
    requests = commands.add_parser("requests", help="processor requests").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = requests.add_parser("create", help="file a request for an End User")
    create.add_argument("--customer", required=True)
    create.add_argument("--kind", required=True, choices=[k.value for k in Kind])
    create.add_argument("--email", action="append", default=[])
    create.add_argument("--phone", action="append", default=[])
    create.add_argument("--provider-user-id", action="append", default=[], metavar="PROVIDER:ID")
    create.add_argument("--handle", action="append", default=[], metavar="PROVIDER:HANDLE")
    create.add_argument("--purpose", action="append", default=[])
    create.add_argument("--lift", action="store_true", help="lift an earlier restriction/objection")
    create.add_argument("--verified-by", help="who at the customer verified the requester")
    create.add_argument("--note")
    create.add_argument("--jurisdiction", choices=[j.value for j in Jurisdiction])
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=lambda a: _run(_create(a)))
    listing = requests.add_parser("list", help="a customer's requests, newest first")
    listing.add_argument("--customer", required=True)
    listing.add_argument("--status", choices=[s.value for s in Status])
    listing.add_argument("--overdue", action="store_true")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=lambda a: _run(_list(a)))
    show = requests.add_parser("show", help="one request, with its result")
    show.add_argument("id")
    show.set_defaults(handler=lambda a: _run(_show(a)))
    verify = requests.add_parser("verify", help="record who verified the requester's identity")
    verify.add_argument("id")
    verify.add_argument("--by", required=True)
    verify.set_defaults(handler=lambda a: _run(_verify(a)))
    run = requests.add_parser("run", help="run verified requests now (shows each step)")
    run.add_argument("id", nargs="?")
    run.set_defaults(handler=lambda a: _run(_run_requests(a)))
    commands.add_parser(
        "purge", help="delete what is past retention (tokens, sessions, request files)"
    ).set_defaults(handler=lambda a: _run(_purge(a)))
