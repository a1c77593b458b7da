"""``linkgate``: run, migrate and administer the gateway.

Every command reads the same settings (``LINKGATE_*`` and ``linkgate.toml``);
a problem in them is printed one line each, with what to do, and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from gateway import audit_cli
from gateway.audit.errors import DATABASE_ERRORS
from gateway.callers import CallerKind, create_caller, list_callers, revoke_caller
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError, LinkgateError
from gateway.storage import create_engine
from gateway.vault import generate_key_entry
from policies.vocabulary import CallerClass

EXIT_USAGE = 2


def _settings() -> Settings:
    return load_settings()


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coroutine)


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server import run

    settings = _settings()
    return run(settings, host=args.host or settings.host, port=args.port or settings.port)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return _run(run_demo(port=args.port, sandbox_port=args.sandbox_port, home=args.home))


def cmd_migrate(_args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    from gateway.storage.migrate import upgrade

    settings = _settings()
    where = _safe_url(settings.database_url)
    try:
        upgrade(settings.database_url)
    except DATABASE_ERRORS as exc:
        reason = (str(exc).splitlines() or [""])[0][:300]
        raise LinkgateError(
            f"cannot migrate {where}: {type(exc).__name__}: {reason}. Check that the database "
            "is running and reachable at LINKGATE_DATABASE_URL, then run linkgate migrate again"
        ) from None
    except CommandError as exc:  # a migration refusing the data it found (its text says
        # what to do), or a revision Alembic cannot find
        raise LinkgateError(f"cannot migrate {where}: {exc}") from None
    print(f"database is at the current schema ({where})")
    return 0


def cmd_config_check(_args: argparse.Namespace) -> int:
    settings = _settings()  # raises ConfigError with every problem
    print("configuration is valid")
    print(f"  database: {_safe_url(settings.database_url)}")
    print(f"  public URL: {settings.public_url} (redirect URI {settings.redirect_uri})")
    print(f"  providers: {', '.join(sorted(settings.providers)) or 'none'}")
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    import secrets

    if args.secret:
        print(secrets.token_urlsafe(48))
    else:
        print(generate_key_entry(args.kid))
    return 0


def cmd_keys_rotate(_args: argparse.Namespace) -> int:
    from gateway.key_rotation import rotate_vault

    return _run(rotate_vault(_settings(), progress=_progress))


def cmd_services_create(args: argparse.Namespace) -> int:
    return _run(_create_credential(args, CallerKind.SERVICE))


def cmd_services_list(args: argparse.Namespace) -> int:
    return _run(_list_credentials(args, CallerKind.SERVICE))


def cmd_services_revoke(args: argparse.Namespace) -> int:
    return _run(_revoke_credential(args.id))


async def _create_credential(args: argparse.Namespace, kind: CallerKind) -> int:
    settings = _settings()
    purposes = list(getattr(args, "purpose", None) or [])
    if kind is CallerKind.SERVICE:
        problems = _purpose_problems(purposes)
        if problems:
            raise ConfigError(problems)
    engine = create_engine(settings.database_url)
    try:
        caller, key = await create_caller(
            engine,
            kind=kind,
            name=args.name,
            customers=args.customer,
            purposes=purposes,
            caller_class=CallerClass(getattr(args, "caller_class", "internal")),
        )
    finally:
        await engine.dispose()
    if args.json:
        print(json.dumps({"id": caller.id, "key": key}))
    else:
        print(f"created {kind.value} {caller.id} ({caller.name})")
        print(f"key (shown once, store it now): {key}")
    return 0


def _purpose_problems(purposes: Sequence[str]) -> list[str]:
    if not purposes:
        return [
            "--purpose: give at least one purpose (a Fides data-use key, e.g. essential.service)"
        ]
    from policies import PolicyEngine, load_policy

    decision = PolicyEngine(load_policy()).check_grant(purposes)
    return [] if decision.allowed else [f"--purpose: {decision.reason}"]


async def _list_credentials(args: argparse.Namespace, kind: CallerKind) -> int:
    engine = create_engine(_settings().database_url)
    try:
        found = await list_callers(engine, kind)
    finally:
        await engine.dispose()
    if args.json:
        print(json.dumps([caller.public() for caller in found], indent=2))
        return 0
    for caller in found:
        state = f"revoked {caller.revoked_at:%Y-%m-%d}" if caller.revoked_at else "active"
        print(
            f"{caller.id}  {caller.name}  class={caller.caller_class.value}  "
            f"customers={','.join(sorted(caller.customers))}  "
            f"purposes={','.join(sorted(caller.purposes))}  {state}"
        )
    if not found:
        print(f"no {kind.value} credentials yet")
    return 0


async def _revoke_credential(caller_id: str) -> int:
    engine = create_engine(_settings().database_url)
    try:
        await revoke_caller(engine, caller_id)
    finally:
        await engine.dispose()
    print(f"revoked {caller_id}; requests with its key now get 401")
    return 0


def _progress(done: int, total: int) -> None:
    print(f"\r  {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linkgate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=cmd_serve)

    demo = commands.add_parser(
        "demo", help="run the gateway with the sandbox provider and demo data"
    )
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--sandbox-port", type=int, default=8081)
    demo.add_argument(
        "--home", default="var/demo", help="where the demo keeps its database and keys"
    )
    demo.set_defaults(handler=cmd_demo)

    migrate = commands.add_parser("migrate", help="upgrade the database schema")
    migrate.set_defaults(handler=cmd_migrate)

    config = commands.add_parser("config", help="configuration").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    config.add_parser("check", help="validate the settings").set_defaults(handler=cmd_config_check)

    keys = commands.add_parser("keys", help="vault keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    generate = keys.add_parser("generate", help="print a new LINKGATE_VAULT_KEYS entry")
    generate.add_argument("--kid", default="k1", help="key id for the entry")
    generate.add_argument(
        "--secret", action="store_true", help="print a LINKGATE_SECRET_KEY instead"
    )
    generate.set_defaults(handler=cmd_keys_generate)
    keys.add_parser(
        "rotate", help="re-seal every token under the first (current) key of LINKGATE_VAULT_KEYS"
    ).set_defaults(handler=cmd_keys_rotate)

    services = commands.add_parser("services", help="service keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = services.add_parser("create", help="create a service key (printed once)")
    create.add_argument("name")
    create.add_argument("--customer", action="append", required=True)
    create.add_argument("--purpose", action="append", default=[])
    create.add_argument(
        "--class", dest="caller_class", choices=[c.value for c in CallerClass], default="internal"
    )
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=cmd_services_create)
    listing = services.add_parser("list", help="list service keys (never the keys)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_services_list)
    revoke = services.add_parser("revoke", help="revoke a service key")
    revoke.add_argument("id")
    revoke.set_defaults(handler=cmd_services_revoke)
    audit_cli.register(commands)  # auditors … and audit …
    from gateway.processor_requests import cli as requests_cli

    requests_cli.register(commands)  # requests … and purge
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print("linkgate: configuration problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_USAGE
    except LinkgateError as exc:
        print(f"linkgate: {exc.detail}", file=sys.stderr)
        return 1
    except DATABASE_ERRORS as exc:
        # Whatever command met it: one line naming the fix, never a traceback.
        print(f"linkgate: {_failure(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _failure(exc: BaseException) -> str:
    """What went wrong, in one line that names the fix (no SQL, no parameters)."""
    if isinstance(exc, OSError) and exc.filename:  # a file the command reads or writes
        return f"{exc.filename}: {exc.strerror}"
    reason = (str(exc).splitlines() or [""])[0][:300]
    return (
        f"the database did not answer as expected ({type(exc).__name__}: {reason}). Check that "
        "it is running and reachable at LINKGATE_DATABASE_URL, and at the current schema "
        "(linkgate migrate)"
    )


if __name__ == "__main__":
    sys.exit(main())
