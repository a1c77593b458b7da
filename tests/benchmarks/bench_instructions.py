"""Instructions per records request, counted by callgrind: a figure the noisy machine cannot move.

CPU time per request on this shared 2-core VM varies by ±15% between runs of
the same commit, more than most single changes to the hot path save. Counted
instructions repeat to within about 0.5%, so this script is the one to compare
two versions of the code with (it ignores cache misses and the kernel's share,
which ``bench_gateway.py`` still shows)::

    .venv/bin/python tests/benchmarks/bench_instructions.py [--requests N] [--target T]
        [--passthrough] [--subject-controls] [REPO ...]

Without REPO (as ``make bench`` runs it) it counts the passthrough proxy and
``linkgate-postgres`` of this checkout, the latter twice: for a customer with
no consent or suppression on record (the benchmark's customer, and the common
case) and for one with a suppression on record (``--subject-controls``: every
subject of the page is then hashed and looked up), and writes
``var/bench/bench_instructions.json`` with their ratios. Given checkouts (say a
``git worktree`` of the base commit and your change) it compares them and
writes nothing. For each it starts that checkout's upstream and target exactly
as ``bench_gateway.py`` does, the target under ``valgrind --tool=callgrind``
with instrumentation off, warms it with 200 requests, turns instrumentation
on for N requests at concurrency 8, and prints user-space instructions per
request. Needs valgrind (Debian package ``valgrind``); about a minute per
checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import contract

HERE = Path(__file__).resolve().parent
WARMUP_REQUESTS = 200
# Under valgrind the target runs about 50 times slower: at bench_gateway's 32 in
# flight its own upstream and database timeouts start to fire on a loaded machine.
CONCURRENCY = 8
PASSTHROUGH_PATH = "/v1/connections/c/records/posts"  # what bench_gateway sends it
# The suppression of someone the page never names: the customer then has subject
# controls on record, so every read hashes its page's subjects and looks them up
# (a consent would not do: the benchmark's purpose needs none, so no lookup),
# and no record is dropped or kept differently because of it.
SUPPRESSED_HASH = "0" * 64


def _harness(repo: Path) -> ModuleType:
    """That checkout's bench_gateway module (its seeding, config and roles)."""
    spec = importlib.util.spec_from_file_location(
        f"bench_gateway_{abs(hash(repo))}", repo / "tests/benchmarks/bench_gateway.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


async def _suppress_someone_else(database_url: str, customer: str) -> None:
    """A suppression row for ``customer``, written straight into the benchmark's database."""
    from gateway.storage import create_engine
    from gateway.storage.schema import subject_control_tables as t

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                t.suppressions.insert().values(
                    id="sup_bench",
                    customer_id=customer,
                    kind="objection",
                    purposes=[],
                    reason="benchmark",
                    created_at=datetime.now(UTC),
                    created_by="bench",
                )
            )
            await conn.execute(
                t.suppression_subjects.insert().values(
                    customer_id=customer,
                    subject_hash=SUPPRESSED_HASH,
                    suppression_id="sup_bench",
                    scope="*",
                )
            )
    finally:
        await engine.dispose()


def count(repo: Path, requests: int, target: str, subject_controls: bool = False) -> float:
    """Instructions per request of ``target`` (linkgate on a database, or the passthrough).

    With ``subject_controls`` the benchmark's customer first gets a suppression on record.
    """
    bench = _harness(repo)
    out = Path(tempfile.mkdtemp(prefix="linkgate-callgrind-"))
    spawn = bench._spawn
    measured_role = "passthrough" if target == "passthrough" else "serve"

    def under_callgrind(args: list[str], core: int, **kwargs: Any) -> subprocess.Popen[bytes]:
        if measured_role not in args:
            return spawn(args, core, **kwargs)
        log = kwargs.get("log")
        sink = log.open("ab") if isinstance(log, Path) else subprocess.DEVNULL
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        command = [*valgrind, f"--callgrind-out-file={out}/callgrind.%p", sys.executable, *args]
        env = kwargs.get("env")
        process = subprocess.Popen(command, env=env, cwd=bench.REPO, stdout=sink, stderr=sink)
        os.sched_setaffinity(process.pid, {core})
        return process

    wait_http = bench._wait_http
    bench._spawn = under_callgrind
    bench._wait_http = lambda url, timeout=30.0: wait_http(url, 900)  # start-up under valgrind

    def measure(pid: int, url: str, key: str) -> None:
        def control(flag: str) -> None:
            subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)

        warm = bench.send(url, key, CONCURRENCY, WARMUP_REQUESTS)
        control("--instr=on")
        measured = bench.send(url, key, CONCURRENCY, requests)
        control("--dump")
        control("--instr=off")
        if warm != {"200": WARMUP_REQUESTS} or measured != {"200": requests}:
            raise SystemExit(f"{repo}: answers {warm} then {measured}, not all 200")

    with tempfile.TemporaryDirectory(prefix="linkgate-instructions-") as tmp:
        port = bench._port()
        upstream_process = spawn(bench._script("upstream", port), bench.LOAD_CORE)
        upstream = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{upstream}{bench.RESOURCE_PATH}")
            if target == "passthrough":
                proxy_port = bench._port()
                proxy = under_callgrind(
                    bench._script("passthrough", proxy_port, upstream), bench.SUT_CORE
                )
                try:
                    wait_http(f"http://127.0.0.1:{proxy_port}/", 900)
                    measure(proxy.pid, f"http://127.0.0.1:{proxy_port}{PASSTHROUGH_PATH}", "")
                finally:
                    bench._stop(proxy)
            else:
                url = (
                    asyncio.run(bench._postgres_database())
                    if target == "postgres"
                    else f"sqlite+aiosqlite:///{tmp}/linkgate.db"
                )
                try:
                    with bench.linkgate(f"linkgate-{target}", url, upstream, Path(tmp)) as served:
                        if subject_controls:
                            asyncio.run(_suppress_someone_else(url, bench.CUSTOMER))
                        measure(served.pid, served.url, served.key)
                finally:
                    if target == "postgres":
                        asyncio.run(bench._drop_postgres_database(url))
        finally:
            bench._stop(upstream_process)
    dumps = sorted(out.glob("callgrind.*.1"))
    if len(dumps) != 1:
        raise SystemExit(f"expected one callgrind dump in {out}, found {dumps}")
    for line in dumps[0].read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1]) / requests
    raise SystemExit(f"{dumps[0]} has no summary line")


def _count_in_child(
    repo: Path, requests: int, target: str, subject_controls: bool = False
) -> float:
    """`count` in a process of its own, so that it imports only that checkout's code."""
    args = ["--one", str(repo), "--requests", str(requests), "--target", target]
    if subject_controls:
        args.append("--subject-controls")
    child = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return float(child.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="*", type=Path)
    parser.add_argument("--requests", type=int, default=300, help="measured requests (8 in flight)")
    parser.add_argument(
        "--target", choices=("postgres", "sqlite", "passthrough"), default="postgres"
    )
    parser.add_argument(
        "--passthrough",
        action="store_true",
        help="also count the bare passthrough proxy (the baseline of bench_gateway's ratios)",
    )
    parser.add_argument(
        "--subject-controls",
        action="store_true",
        help="give the benchmark's customer a suppression first (subject hashing and lookup)",
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:  # in a child process of its own, so it imports only that checkout's code
        repo = options.repos[0].resolve()
        print(count(repo, options.requests, options.target, options.subject_controls))
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed here: apt-get install valgrind")
    report = not options.repos
    options.repos = options.repos or [HERE.parents[1]]
    baseline = None
    if options.passthrough or report:
        baseline = _count_in_child(options.repos[0].resolve(), options.requests, "passthrough")
        print(f"passthrough: {baseline / 1e6:.3f} M instructions per request", flush=True)
    first = None
    for repo in options.repos:
        per_request = _count_in_child(
            repo, options.requests, options.target, options.subject_controls
        )
        first = first or per_request
        ratios = [f"{per_request / first:.3f}x the first"] if len(options.repos) > 1 else []
        if baseline:
            ratios.append(f"{per_request / baseline:.2f}x passthrough")
        print(
            f"{repo}: {per_request / 1e6:.3f} M instructions per request  ({', '.join(ratios)})",
            flush=True,
        )
    if report and baseline:
        figure = f"linkgate-{options.target} instructions per request"
        rows = [
            contract.row("passthrough instructions per request", baseline / 1e6, "M"),
            contract.row(
                figure,
                per_request / 1e6,
                "M",
                ("passthrough instructions per request", baseline / 1e6),
            ),
        ]
        if not options.subject_controls:
            controlled = _count_in_child(options.repos[0], options.requests, options.target, True)
            print(
                f"customer with subject controls: {controlled / 1e6:.3f} M instructions per"
                f" request ({controlled / per_request:.3f}x without)",
                flush=True,
            )
            rows.append(
                contract.row(
                    f"{figure}, customer with subject controls",
                    controlled / 1e6,
                    "M",
                    (figure, per_request / 1e6),
                )
            )
        contract.write(
            "instructions",
            rows,
            requests=options.requests,
            concurrency=CONCURRENCY,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
