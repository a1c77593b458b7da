"""Gateway benchmark: what one replica costs, as ratios to the floor and to the fastest proxy.

Four targets serve the same page of sandbox-shaped posts, measured in one run
by one load generator (aiohttp, its own process) at concurrency 1 and 32:

* ``direct``: the load generator straight to the upstream (the floor);
* ``passthrough``: a bare Starlette proxy under uvicorn with aiohttp as the
  outbound client, no auth, no policy, no audit (the fastest a Python gateway
  can be here);
* ``linkgate-sqlite`` and ``linkgate-postgres``: ``python -m gateway serve``
  with the real records endpoint: service-key auth, policies, the audit log
  (group commit), JSON logs to a file and tracing exported over OTLP/HTTP.

The target under test runs alone on core 0; the load generator and the
upstream share core 1 (``os.sched_setaffinity``), so the figures compare what
the target itself spends. A script, not a test (pytest does not collect it)::

    .venv/bin/python tests/benchmarks/bench_gateway.py [--seconds S] [--only T ...]
        [--rss-requests N] [--cpu-requests N] [--py-spy DIR]

Beside the table, on the linkgate targets: the **refresh storm** (32
concurrent records requests on a connection whose access token has expired;
the provider's token endpoint counts the refresh requests it gets: single-flight
refresh makes it 1), and on ``linkgate-postgres`` the **RSS after 10,000
requests** (``--rss-requests``) against its RSS right after start, and the
**PostgreSQL sessions it opened** over its life (``pg_stat_database.sessions``
read before it starts and after it stopped): a pool that overflows under
load closes and reopens connections, and each new one forks a backend.

``--only`` runs a subset of targets while iterating (the ratio columns need
``passthrough`` and ``direct``; missing ones print as ``-``). ``--py-spy DIR``
records a flame graph of each linkgate target during its concurrency-32 cell.

Prints a table and writes ``var/bench/bench_gateway.json`` (the shared contract,
tests/benchmarks/contract.py). A full run takes about 2 minutes here
(most of it the 10,000 requests); ``--seconds 1 --rss-requests 1000
--cpu-requests 300`` about one. PostgreSQL comes from
``LINKGATE_TEST_POSTGRES_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``);
a throwaway database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402 - after the path tweak, like the other benchmarks

_CORES = sorted(os.sched_getaffinity(0))
SUT_CORE = _CORES[0]  # the target under test, alone
LOAD_CORE = _CORES[-1]  # load generator and upstream (the same core on a 1-core machine)
CONCURRENCIES = (1, 32)
WARMUP_SECONDS = 1.0
CUSTOMER = "acme"
PURPOSE = "essential.service"
RESOURCE_PATH = "/api/posts"
PAGE_LIMIT = 25  # one upstream call per gateway request: the whole page fits
TOKEN_COUNT_PATH = "/bench/token-requests"
STORM_REQUESTS = 32  # concurrent records requests on one expired token
RSS_REQUESTS = 10_000
# The traces exported, as deploy/compose.yaml and deploy/k8s/configmap.yaml set it
# (tests/deploy pins the three together): the benchmark measures the gateway as deployed.
DEPLOYED_TRACE_EXPORT_RATIO = "0.1"
POSTGRES_URL = os.environ.get(
    "LINKGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


# -- roles run in child processes ------------------------------------------------------------


def _page_body() -> bytes:
    from providers.sandbox.demo_data import NORTHWIND_POSTS
    from providers.sandbox.paging import PageRequest, page

    return json.dumps(page(NORTHWIND_POSTS, PageRequest(offset=0, limit=PAGE_LIMIT))).encode()


def role_upstream(port: int) -> None:
    """The provider's API on loopback: one page of posts; also swallows OTLP exports."""
    from aiohttp import web

    body = _page_body()

    async def posts(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def otlp(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    token_requests = 0

    async def token(request: web.Request) -> web.Response:
        """The provider's token endpoint (RFC 6749 §6 refresh), counting what it is asked."""
        nonlocal token_requests
        token_requests += 1
        await request.read()
        await asyncio.sleep(0.05)  # a provider's token endpoint is not instant
        return web.json_response(
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": secrets.token_urlsafe(24),
            }
        )

    async def token_count(_request: web.Request) -> web.Response:
        return web.json_response({"token_requests": token_requests})

    app = web.Application()
    app.router.add_get(RESOURCE_PATH, posts)
    app.router.add_post("/v1/traces", otlp)
    app.router.add_post("/v1/metrics", otlp)
    app.router.add_post("/token", token)
    app.router.add_get(TOKEN_COUNT_PATH, token_count)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def role_passthrough(port: int, upstream: str) -> None:
    """A bare Starlette proxy: forward the path, return the upstream's bytes."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield {"session": session}

    async def records(request: Request) -> Response:
        session: aiohttp.ClientSession = request.state.session
        url = f"{upstream}/api/{request.path_params['resource']}"
        async with session.get(url, params={"limit": str(PAGE_LIMIT)}) as answer:
            body = await answer.read()
            return Response(body, status_code=answer.status, media_type="application/json")

    app = Starlette(
        routes=[Route("/v1/connections/{connection_id}/records/{resource}", records)],
        lifespan=lifespan,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


@dataclass
class Measurement:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


async def _load(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> Measurement:
    connector = aiohttp.TCPConnector(limit=concurrency)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            while (start := time.perf_counter()) < until:
                async with session.get(url) as response:
                    await response.read()
                    ok = response.status == 200
                if record:
                    latencies.append((time.perf_counter() - start) * 1000)
                    errors += not ok

        warm_until = time.perf_counter() + WARMUP_SECONDS
        await asyncio.gather(*(worker(warm_until, False) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Measurement(len(latencies), errors, elapsed, latencies)


async def _count(url: str, headers: dict[str, str], concurrency: int, total: int) -> dict[str, int]:
    """Exactly ``total`` requests, ``concurrency`` at a time; how many answered what."""
    statuses: dict[str, int] = {}
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.get(url) as response:
                    await response.read()
                    key = str(response.status)
                    statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def role_count(url: str, concurrency: int, total: int) -> None:
    key = os.environ.get("BENCH_SERVICE_KEY", "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    print(json.dumps(asyncio.run(_count(url, headers, concurrency, total))))


def role_load(url: str, concurrency: int, seconds: float) -> None:
    key = os.environ.get("BENCH_SERVICE_KEY", "")  # not on the command line, where ps shows it
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    print(json.dumps(asdict(asyncio.run(_load(url, headers, concurrency, seconds)))))


# -- the conductor -------------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(
    args: list[str], core: int, *, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    sink = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, *args], env=env, cwd=REPO, stdout=sink, stderr=sink)
    os.sched_setaffinity(process.pid, {core})
    return process


def _script(role: str, *args: object) -> list[str]:
    return [__file__, "--role", role, *(str(arg) for arg in args)]


def _wait_http(url: str, timeout: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback http only
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (proc(5), /proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(target: Target, total: int) -> float:
    """The target's CPU milliseconds per request over ``total`` requests at c=32.

    CPU time, unlike latency, barely moves when other processes share the
    machine: the steadiest figure of what a request costs the target.
    """
    before = _cpu_seconds(target.pid)
    send(target.url, target.key, CONCURRENCIES[-1], total)
    return (_cpu_seconds(target.pid) - before) * 1000 / total


def _memory_kib(pid: int) -> dict[str, int]:
    """Peak (VmHWM) and current (VmRSS) resident set of a process, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            found[name] = int(value.split()[0])
    return found


def send(url: str, key: str, concurrency: int, total: int) -> dict[str, int]:
    """Send exactly ``total`` requests from the load core; the count per status."""
    load = subprocess.run(
        [sys.executable, *_script("count", url, concurrency, total)],
        cwd=REPO,
        env={**os.environ, "BENCH_SERVICE_KEY": key},
        capture_output=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {LOAD_CORE}),
    )
    statuses: dict[str, int] = json.loads(load.stdout)
    return statuses


def measure(url: str, key: str, concurrency: int, seconds: float) -> Measurement:
    load = subprocess.run(
        [sys.executable, *_script("load", url, concurrency, seconds)],
        cwd=REPO,
        env={**os.environ, "BENCH_SERVICE_KEY": key},
        capture_output=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {LOAD_CORE}),
    )
    return Measurement(**json.loads(load.stdout))


@dataclass
class Target:
    name: str
    url: str
    key: str
    pid: int
    expired_url: str | None = None  # a connection whose access token has expired
    # PostgreSQL sessions the target opened over its life, known once it stopped
    database_sessions: int | None = None


async def _postgres_database() -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"linkgate_bench_{secrets.token_hex(4)}"
    admin = make_url(POSTGRES_URL).set(drivername="postgresql")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


async def _drop_postgres_database(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = make_url(POSTGRES_URL).set(drivername="postgresql")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        await conn.close()


async def _database_sessions(url: str) -> int:
    """Sessions ever opened to ``url``'s database (pg_stat_database.sessions, PostgreSQL 14+).

    A backend adds its count to the shared statistics when it exits at the
    latest, so read it after the sessions to be counted have ended.
    """
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_URL).set(drivername="postgresql")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
    try:
        found = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", make_url(url).database
        )
    finally:
        await conn.close()
    return int(found or 0)


async def _seed(database_url: str, vault_keys: str, upstream: str) -> tuple[str, str, str]:
    """A service key; a connection whose sealed tokens last a day (no OAuth round trip),
    and one whose access token expired a minute ago (the refresh storm's)."""
    from gateway.callers import CallerKind, create_caller
    from gateway.connections import ConnectionStore
    from gateway.oauth import TokenSet
    from gateway.storage import create_engine
    from gateway.storage.migrate import upgrade
    from gateway.vault import KeyRing
    from policies.vocabulary import CallerClass
    from providers.base import Account
    from providers.sandbox.provider import SCOPES

    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    try:
        _, key = await create_caller(
            engine,
            kind=CallerKind.SERVICE,
            name="bench",
            customers=[CUSTOMER],
            purposes=[PURPOSE],
            caller_class=CallerClass.INTERNAL,
        )
        store = ConnectionStore(engine, KeyRing.parse(vault_keys))
        ids = []
        for subject, expires in (
            ("usr_ada", timedelta(days=1)),
            ("usr_bob", -timedelta(minutes=1)),
        ):
            connection, _ = await store.link(
                customer_id=CUSTOMER,
                provider="sandbox",
                account=Account(subject=subject, name=subject, issuer=upstream),
                tokens=TokenSet(
                    access_token=secrets.token_urlsafe(24),
                    token_type="Bearer",
                    expires_at=int((now + expires).timestamp()),
                    refresh_token=secrets.token_urlsafe(24),
                ),
                scopes=SCOPES,
            )
            ids.append(connection.id)
    finally:
        await engine.dispose()
    return key, ids[0], ids[1]


@contextmanager
def linkgate(name: str, database_url: str, upstream: str, workdir: Path) -> Iterator[Target]:
    from gateway.vault import generate_key_entry

    vault_keys = generate_key_entry("b1")
    key, connection_id, expired_id = asyncio.run(_seed(database_url, vault_keys, upstream))
    config = workdir / f"{name}.toml"
    endpoints = ("authorize", "token", "revoke", "userinfo", "jwks")
    config.write_text(
        "[providers.sandbox]\n"
        'client_id = "bench"\nclient_secret = "bench-secret"\n'
        f'issuer = "{upstream}"\napi_base_url = "{upstream}/api"\n'
        + "".join(f'{e}_url = "{upstream}/{e}"\n' for e in endpoints)
    )
    port = _port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")},
        "PYTHONPATH": str(REPO),
        "LINKGATE_CONFIG": str(config),
        "LINKGATE_DATABASE_URL": database_url,
        "LINKGATE_VAULT_KEYS": vault_keys,
        "LINKGATE_SECRET_KEY": secrets.token_urlsafe(48),
        "LINKGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LINKGATE_LOG_LEVEL": "info",
        "LINKGATE_LOG_JSON": "true",
        # Traces and metrics exported, as deployed; BENCH_OTLP=off counts the gateway
        # with no endpoint (nothing exported, metrics not recorded).
        **({} if os.environ.get("BENCH_OTLP") == "off" else {"LINKGATE_OTLP_ENDPOINT": upstream}),
        # As deployed (every request still traced and summarised in its audit event;
        # one success in ten exported, every denial and failure);
        # BENCH_TRACE_EXPORT_RATIO=1.0 counts exporting every trace.
        "LINKGATE_TRACE_EXPORT_RATIO": os.environ.get(
            "BENCH_TRACE_EXPORT_RATIO", DEPLOYED_TRACE_EXPORT_RATIO
        ),
    }
    args = ["-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    postgres = database_url.startswith("postgresql")
    sessions_before = asyncio.run(_database_sessions(database_url)) if postgres else 0
    process = _spawn(args, SUT_CORE, env=env, log=workdir / f"{name}.log")
    base = f"http://127.0.0.1:{port}"
    query = f"purpose={PURPOSE}&limit={PAGE_LIMIT}"
    url = f"{base}/v1/connections/{{}}/records/posts?{query}"
    target = Target(name, url.format(connection_id), key, process.pid, url.format(expired_id))
    try:
        _wait_http(f"{base}/readyz")
        yield target
    finally:
        _stop(process)
    if postgres:
        time.sleep(1.0)  # the backends' own exit, after the client closed them
        sessions = asyncio.run(_database_sessions(database_url)) - sessions_before
        target.database_sessions = sessions


@dataclass
class Row:
    target: str
    concurrency: int
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    peak_rss_mib: float | None
    rss_mib: float | None
    cpu_ms_per_request: float | None = None


TARGETS = ("direct", "passthrough", "linkgate-sqlite", "linkgate-postgres")


def _py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample ``pid`` for the cell's length (warm-up included) into a flame graph."""
    py_spy = Path(sys.executable).with_name("py-spy")
    args = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds) + 1)]
    return subprocess.Popen(
        [*args, "--rate", "200", "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


CPU_REQUESTS = 2000


def bench_target(
    target: Target,
    seconds: float,
    profile_dir: Path | None = None,
    cpu_requests: int = CPU_REQUESTS,
) -> list[Row]:
    rows: list[Row] = []
    for concurrency in CONCURRENCIES:
        spy = None
        if profile_dir is not None and concurrency == CONCURRENCIES[-1]:
            out = profile_dir / f"{target.name}-c{concurrency}.svg"
            spy = _py_spy(target.pid, seconds + WARMUP_SECONDS, out)
        result = measure(target.url, target.key, concurrency, seconds)
        if spy is not None:
            spy.wait()
        memory = _memory_kib(target.pid)
        rows.append(
            Row(
                target=target.name,
                concurrency=concurrency,
                rate=result.rate,
                p50_ms=result.percentile(50),
                p99_ms=result.percentile(99),
                requests=result.requests,
                errors=result.errors,
                peak_rss_mib=memory["VmHWM"] / 1024,
                rss_mib=memory["VmRSS"] / 1024,
            )
        )
        print(f"  {target.name:<18} c={concurrency:<3} {result.rate:>8,.0f} req/s", flush=True)
    if cpu_requests:
        cpu = cpu_per_request(target, cpu_requests)
        for row in rows:
            row.cpu_ms_per_request = cpu
        print(f"  {target.name:<18} CPU {cpu:.2f} ms per request", flush=True)
    return rows


def memory_after(target: Target, total: int) -> tuple[float, float]:
    """VmRSS (MiB) of a freshly started target, and again after ``total`` requests."""
    at_start = _memory_kib(target.pid)["VmRSS"] / 1024
    statuses = send(target.url, target.key, CONCURRENCIES[-1], total)
    if statuses != {"200": total}:
        print(f"  {target.name}: answers while filling memory: {statuses}", file=sys.stderr)
    return at_start, _memory_kib(target.pid)["VmRSS"] / 1024


def refresh_storm(target: Target, upstream: str) -> int:
    """Token requests the provider saw for STORM_REQUESTS concurrent reads on one expired token."""
    import urllib.request

    def count() -> int:
        with urllib.request.urlopen(f"{upstream}{TOKEN_COUNT_PATH}", timeout=5) as answer:  # noqa: S310 - loopback
            return int(json.load(answer)["token_requests"])

    before = count()
    assert target.expired_url is not None
    statuses = send(target.expired_url, target.key, STORM_REQUESTS, STORM_REQUESTS)
    if statuses != {"200": STORM_REQUESTS}:
        print(f"  {target.name}: refresh storm answers: {statuses}", file=sys.stderr)
    return count() - before


@dataclass
class Extra:
    """A figure beside the latency table (refresh storm, memory), in contract form."""

    figure: str
    value: float
    unit: str
    baseline: tuple[str, float] | None = None


def run(
    seconds: float,
    only: set[str],
    profile_dir: Path | None = None,
    rss_requests: int = RSS_REQUESTS,
    cpu_requests: int = CPU_REQUESTS,
) -> tuple[list[Row], list[Extra]]:
    rows: list[Row] = []
    extras: list[Extra] = []

    def linkgate_extras(target: Target, upstream: str) -> None:
        storm = refresh_storm(target, upstream)
        extras.append(
            Extra(
                f"refresh-storm token requests, {target.name} "
                f"({STORM_REQUESTS} concurrent reads, one expired token)",
                storm,
                "count",
            )
        )
        print(f"  {target.name:<18} refresh storm: {storm} token request(s)", flush=True)

    with tempfile.TemporaryDirectory(prefix="linkgate-bench-") as tmp:
        workdir = Path(tmp)
        near, far = _port(), _port()
        # One upstream beside the load generator for the proxies, one on the target core
        # for ``direct``: in each case the process under test has core 0 to itself.
        upstreams = [
            _spawn(_script("upstream", far), LOAD_CORE),
            _spawn(_script("upstream", near), SUT_CORE),
        ]
        try:
            upstream = f"http://127.0.0.1:{far}"
            _wait_http(f"{upstream}{RESOURCE_PATH}")
            _wait_http(f"http://127.0.0.1:{near}{RESOURCE_PATH}")
            direct = Target(
                "direct", f"http://127.0.0.1:{near}{RESOURCE_PATH}", "", upstreams[1].pid
            )
            if "direct" in only:
                rows += bench_target(direct, seconds, cpu_requests=cpu_requests)

            if "passthrough" in only:
                port = _port()
                proxy = _spawn(_script("passthrough", port, upstream), SUT_CORE)
                try:
                    _wait_http(f"http://127.0.0.1:{port}/")
                    url = f"http://127.0.0.1:{port}/v1/connections/c/records/posts"
                    proxied = Target("passthrough", url, "", proxy.pid)
                    rows += bench_target(proxied, seconds, cpu_requests=cpu_requests)
                finally:
                    _stop(proxy)

            if "linkgate-sqlite" in only:
                sqlite_url = f"sqlite+aiosqlite:///{workdir}/linkgate.db"
                with linkgate("linkgate-sqlite", sqlite_url, upstream, workdir) as target:
                    rows += bench_target(target, seconds, profile_dir, cpu_requests)
                    linkgate_extras(target, upstream)

            if "linkgate-postgres" in only:
                postgres_url = asyncio.run(_postgres_database())
                try:
                    with linkgate("linkgate-postgres", postgres_url, upstream, workdir) as target:
                        if rss_requests:
                            # First, while the process is fresh: its RSS at start is the baseline.
                            start, after = memory_after(target, rss_requests)
                            name = f"RSS at start, {target.name}"
                            extras.append(Extra(name, start, "MiB"))
                            extras.append(
                                Extra(
                                    f"RSS after {rss_requests:,} requests, {target.name}",
                                    after,
                                    "MiB",
                                    (name, start),
                                )
                            )
                            print(
                                f"  {target.name:<18} RSS {start:.0f} MiB at start, {after:.0f} "
                                f"MiB after {rss_requests:,} requests",
                                flush=True,
                            )
                        cells = bench_target(target, seconds, profile_dir, cpu_requests)
                        rows += cells
                        linkgate_extras(target, upstream)
                    served = (
                        rss_requests
                        + sum(r.requests for r in cells)
                        + cpu_requests
                        + STORM_REQUESTS
                    )
                    if target.database_sessions is not None:
                        figure = (
                            f"PostgreSQL sessions opened by {target.name} over its life "
                            f"({served:,} measured requests and its warm-ups)"
                        )
                        extras.append(Extra(figure, target.database_sessions, "count"))
                        print(
                            f"  {target.name:<18} {target.database_sessions} PostgreSQL sessions "
                            f"opened over {served:,} measured requests",
                            flush=True,
                        )
                finally:
                    asyncio.run(_drop_postgres_database(postgres_url))
        finally:
            for process in upstreams:
                _stop(process)
    return rows, extras


def contract_rows(rows: list[Row], extras: list[Extra]) -> list[dict[str, Any]]:
    """The table and the extras in the shared JSON contract (tests/benchmarks/contract.py)."""
    import contract

    cells = {(r.target, r.concurrency): r for r in rows}
    out: list[dict[str, Any]] = []
    for r in rows:
        against = "direct" if r.target == "passthrough" else "passthrough"
        base = cells.get((against, r.concurrency)) if r.target != "direct" else None
        for label, unit, field in (
            ("req/s", "req/s", "rate"),
            ("p50", "ms", "p50_ms"),
            ("p99", "ms", "p99_ms"),
        ):
            name = f"{r.target} c={r.concurrency} {label}"
            ref = (
                (f"{base.target} c={r.concurrency} {label}", getattr(base, field)) if base else None
            )
            out.append(contract.row(name, getattr(r, field), unit, ref))
        if r.concurrency == CONCURRENCIES[-1] and r.cpu_ms_per_request is not None:
            proxy_row = (
                cells.get(("passthrough", r.concurrency)) if r.target != "passthrough" else None
            )
            ref_cpu = (
                ("passthrough CPU per request", proxy_row.cpu_ms_per_request)
                if proxy_row is not None and proxy_row.cpu_ms_per_request and r.target != "direct"
                else None
            )
            out.append(
                contract.row(f"{r.target} CPU per request", r.cpu_ms_per_request, "ms", ref_cpu)
            )
        if r.target.startswith("linkgate"):
            proxy = cells.get(("passthrough", r.concurrency))
            if proxy is not None:
                out.append(
                    contract.row(
                        f"{r.target} c={r.concurrency} p50 added over passthrough",
                        r.p50_ms - proxy.p50_ms,
                        "ms",
                    )
                )
            out.append(
                contract.row(f"{r.target} c={r.concurrency} non-200 answers", r.errors, "count")
            )
    out += [contract.row(e.figure, e.value, e.unit, e.baseline) for e in extras]
    return out


def table(rows: list[Row]) -> str:
    base = {(r.target, r.concurrency): r for r in rows}
    lines = [
        "| target | conc | req/s | p50 ms | p99 ms | peak RSS MiB | req/s ÷ direct "
        "| req/s ÷ passthrough | p50 ÷ passthrough | p99 ÷ passthrough | CPU ms/req | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        direct = base.get(("direct", row.concurrency))
        proxy = base.get(("passthrough", row.concurrency))

        def ratio(value: float, against: Row | None, field: str) -> str:
            return f"{value / getattr(against, field):.2f}" if against else "-"

        lines.append(
            f"| {row.target} | {row.concurrency} | {row.rate:,.0f} | {row.p50_ms:.2f} "
            f"| {row.p99_ms:.2f} | {row.peak_rss_mib or 0:.0f} "
            f"| {ratio(row.rate, direct, 'rate')} | {ratio(row.rate, proxy, 'rate')} "
            f"| {ratio(row.p50_ms, proxy, 'p50_ms')} | {ratio(row.p99_ms, proxy, 'p99_ms')} "
            f"| {row.cpu_ms_per_request or 0:.2f} | {row.errors} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=TARGETS,
        default=list(TARGETS),
        help="run only these targets (the full table needs all four)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record a py-spy flame graph of each linkgate target at concurrency 32 into DIR",
    )
    parser.add_argument(
        "--rss-requests",
        type=int,
        default=RSS_REQUESTS,
        metavar="N",
        help="requests sent to a fresh linkgate-postgres before its RSS is read again (0: skip)",
    )
    parser.add_argument(
        "--cpu-requests",
        type=int,
        default=CPU_REQUESTS,
        metavar="N",
        help="requests at c=32 over which each target's CPU time per request is taken (0: skip)",
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.role == "upstream":
        role_upstream(int(options.args[0]))
        return 0
    if options.role == "passthrough":
        role_passthrough(int(options.args[0]), options.args[1])
        return 0
    if options.role == "count":
        url, concurrency, total = options.args
        role_count(url, int(concurrency), int(total))
        return 0
    if options.role == "load":
        url, concurrency, seconds = options.args
        role_load(url, int(concurrency), float(seconds))
        return 0
    if SUT_CORE == LOAD_CORE:
        print("note: one core available; every process shares it", file=sys.stderr)
    if options.py_spy is not None:
        options.py_spy.mkdir(parents=True, exist_ok=True)
    rows, extras = run(
        options.seconds,
        set(options.only),
        options.py_spy,
        options.rss_requests,
        options.cpu_requests,
    )
    print(table(rows))
    if set(options.only) != set(TARGETS):
        return 0  # a partial run does not overwrite the published figures
    import contract

    path = contract.write(
        "gateway",
        contract_rows(rows, extras),
        seconds_per_cell=options.seconds,
        cells=[asdict(row) for row in rows],
    )
    print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
