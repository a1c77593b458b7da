"""Benchmark (not a test): audited records fetches per second vs unaudited, SQLite and PostgreSQL.

The same records request (one page of sandbox-shaped posts) goes through the
real gateway over real HTTP against the same local provider-shaped upstream,
in two variants of one build:

* ``audited``: the product — every response waits until its event is durable
  (group commit through ``AuditWriter`` into ``AuditStore.append``);
* ``unaudited``: the same process with ``AuditStore.append`` replaced by a
  no-op that writes nothing. The swap happens only in this script's own
  ``serve`` role, in the gateway's child process, so the product has no
  switch that turns the audit log off. Everything else (service-key auth,
  policies, the writer's queue, JSON logs, OTLP export) is identical.

Both run on SQLite (a temporary file) and PostgreSQL (a throwaway database on
``LINKGATE_TEST_POSTGRES_URL``), at concurrency 1 and 32. The processes, core
pinning (target alone on core 0, load generator and upstream on core 1), seed
data and load generator are ``tests/benchmarks/bench_gateway.py``'s, imported.
Each cell alternates audited and unaudited ``--rounds`` times and pools the
samples, so that a noisy neighbour on the shared machine hits both variants.

Run::

    .venv/bin/python tests/benchmarks/bench_audit_overhead.py [--seconds S] [--rounds R]
        [--only sqlite|postgres]

Prints a table and writes ``var/bench/bench_audit_overhead.json`` (the shared
benchmark contract: each audited figure has its unaudited twin as baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gateway
from bench_gateway import (
    CONCURRENCIES,
    LOAD_CORE,
    REPO,
    RESOURCE_PATH,
    SUT_CORE,
    Measurement,
    Target,
    _drop_postgres_database,
    _port,
    _postgres_database,
    _script,
    _spawn,
    _stop,
    _wait_http,
    linkgate,
    measure,
)
from contract import row, write

VARIANTS = ("audited", "unaudited")
DATABASES = ("sqlite", "postgres")
LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


# -- the gateway process -------------------------------------------------------------------


# What the no-op append answers for each draft. Not None: the writer reads None as
# "the store skipped this draft" (an outbox entry a drain appended first) and
# fails a plain record() with it, which made every unaudited request a 503.
_NOT_WRITTEN = object()


async def _no_append(_store: object, drafts: Sequence[object]) -> list[object]:
    """Stands in for ``AuditStore.append``: nothing is hashed, linked or written."""
    return [_NOT_WRITTEN for _ in drafts]


def role_serve(variant: str, argv: list[str]) -> int:
    """``python -m gateway serve`` itself, with the audit append swapped out if asked."""
    from gateway.audit import AuditStore
    from gateway.cli import main

    if variant == "unaudited":
        assert callable(AuditStore.append), "AuditStore.append is what the writer calls"
        AuditStore.append = _no_append  # type: ignore[method-assign, assignment]
    return main(["serve", *argv])


@contextmanager
def gateway(variant: str, database_url: str, upstream: str, workdir: Path) -> Iterator[Target]:
    """bench_gateway's ``linkgate`` target (same seed, settings, logs, OTLP), started
    through this script's ``serve`` role so that one variant can skip the append."""

    def spawn(args: list[str], core: int, **kwargs: Any) -> Any:
        if args[:3] == ["-m", "gateway", "serve"]:
            args = [__file__, "--role", "serve", variant, *args[3:]]
        return _spawn(args, core, **kwargs)

    with mock.patch.object(bench_gateway, "_spawn", spawn):
        context = linkgate(f"{variant}", database_url, upstream, workdir)
        target = context.__enter__()
    try:
        yield target
    finally:
        context.__exit__(None, None, None)


# -- the conductor -------------------------------------------------------------------------


def _pooled(parts: list[Measurement]) -> Measurement:
    return Measurement(
        requests=sum(part.requests for part in parts),
        errors=sum(part.errors for part in parts),
        seconds=sum(part.seconds for part in parts),
        latencies_ms=[ms for part in parts for ms in part.latencies_ms],
    )


def bench_database(
    database: str, upstream: str, workdir: Path, seconds: float, rounds: int
) -> dict[tuple[str, int], Measurement]:
    """Both variants on one kind of database, rounds interleaved, a fresh database each time."""
    samples: dict[tuple[str, int], list[Measurement]] = {}
    for round_ in range(rounds):
        for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
            if database == "sqlite":
                url = f"sqlite+aiosqlite:///{workdir}/{variant}-{round_}.db"
            else:
                url = asyncio.run(_postgres_database())
            try:
                with gateway(variant, url, upstream, workdir) as target:
                    for concurrency in CONCURRENCIES:
                        result = measure(target.url, target.key, concurrency, seconds)
                        samples.setdefault((variant, concurrency), []).append(result)
                        print(
                            f"  {LABELS[database]:<10} {variant:<9} c={concurrency:<3} "
                            f"{result.rate:>8,.0f} req/s  errors {result.errors}",
                            flush=True,
                        )
                _check_written(variant, asyncio.run(_events_written(url)))
            finally:
                if database == "postgres":
                    asyncio.run(_drop_postgres_database(url))
    return {cell: _pooled(parts) for cell, parts in samples.items()}


async def _events_written(database_url: str) -> int:
    from sqlalchemy import func, select

    from gateway.storage import audit_tables, create_engine

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            count = await conn.execute(select(func.count()).select_from(audit_tables.events))
            return int(count.scalar_one())
    finally:
        await engine.dispose()


def _check_written(variant: str, events: int) -> None:
    """The variants really differ: the product wrote an event per fetch, the other none."""
    if (variant == "audited") != (events > 0):
        raise RuntimeError(f"the {variant} gateway left {events} audit events")


def run(seconds: float, rounds: int, databases: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="linkgate-bench-") as tmp:
        workdir = Path(tmp)
        port = _port()
        upstream_process = _spawn(_script("upstream", port), LOAD_CORE)
        try:
            upstream = f"http://127.0.0.1:{port}"
            _wait_http(f"{upstream}{RESOURCE_PATH}")
            for database in databases:
                cells = bench_database(database, upstream, workdir, seconds, rounds)
                rows += _rows(LABELS[database], cells)
        finally:
            _stop(upstream_process)
    return rows


def _rows(label: str, cells: dict[tuple[str, int], Measurement]) -> list[dict[str, Any]]:
    """Contract rows: each figure for both variants; the audited one against its twin."""
    rows: list[dict[str, Any]] = []
    for concurrency in CONCURRENCIES:
        figures = {
            "req/s": lambda m: m.rate,
            "p50": lambda m: m.percentile(50),
            "p99": lambda m: m.percentile(99),
        }
        for what, value_of in figures.items():
            unit = "req/s" if what == "req/s" else "ms"
            suffix = "fetches/s" if what == "req/s" else f"{what} latency"
            names = {v: f"{label} c={concurrency} {v} {suffix}" for v in VARIANTS}
            unaudited = value_of(cells[("unaudited", concurrency)])
            audited = value_of(cells[("audited", concurrency)])
            rows.append(row(names["unaudited"], unaudited, unit))
            rows.append(row(names["audited"], audited, unit, (names["unaudited"], unaudited)))
        errors = sum(cells[(v, concurrency)].errors for v in VARIANTS)
        if errors:
            # A failed request is a fast one: the figures would flatter that variant.
            raise SystemExit(
                f"{label} c={concurrency}: {errors} answers were not 200;"
                " see the gateway's log lines above (a variant that errors measures nothing)"
            )
        rows.append(row(f"{label} c={concurrency} non-200 answers", errors, "count"))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| figure | value | unit | ÷ unaudited |", "|---|---:|---|---:|"]
    for figure in rows:
        ratio = "-" if figure["ratio"] is None else f"{figure['ratio']:.2f}"
        lines.append(
            f"| {figure['figure']} | {figure['value']:,.2f} | {figure['unit']} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:3] == ["--role", "serve"]:
        # The gateway's own command line follows the variant: ``--host H --port P``.
        return role_serve(sys.argv[3], sys.argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell")
    parser.add_argument(
        "--rounds", type=int, default=2, help="audited/unaudited alternations per database"
    )
    parser.add_argument("--only", choices=DATABASES, help="one database while iterating")
    options = parser.parse_args()
    if SUT_CORE == LOAD_CORE:
        print("note: one core available; every process shares it", file=sys.stderr)
    databases = [options.only] if options.only else list(DATABASES)
    rows = run(options.seconds, options.rounds, databases)
    print(table(rows))
    if options.only:
        return 0  # a partial run does not overwrite the published figures
    path = write("audit_overhead", rows)
    print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
