"""Outbound client benchmark: 32 concurrent GETs against a local upstream.

Compares httpx's default transport (httpcore), httpx with the httpx-aiohttp
transport, and aiohttp directly; prints requests/s, p99 and ratios. This is
the measurement that chose gateway.upstream's transport. A script, not a test:

    .venv/bin/python tests/benchmarks/bench_upstream.py [requests]

Writes ``var/bench/bench_upstream.json`` (tests/benchmarks/contract.py): each
client's requests/s and p99 against httpx's default transport; takes about 10
seconds with the default 4,000 requests per client.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract

CONCURRENCY = 32
BODY = b'{"data":[{"id":"post_1","message":"hello"}],"paging":{}}'


def _serve(sock: socket.socket) -> None:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/posts", handler)
    web.run_app(app, sock=sock, print=None, handle_signals=False)


async def _run(label: str, get: Callable[[], Awaitable[None]], total: int) -> tuple[float, float]:
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await get()
            latencies.append(time.perf_counter() - start)

    for _ in range(CONCURRENCY * 4):  # warm the pool
        await get()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    rate = total / elapsed
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    print(f"{label:<28} {rate:>9,.0f} req/s   p99 {p99:6.1f} ms")
    return rate, p99


async def main(url: str, total: int) -> None:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    results: dict[str, float] = {}
    tails: dict[str, float] = {}

    async with httpx.AsyncClient(limits=limits) as client:

        async def httpx_get() -> None:
            (await client.get(url)).json()

        results["httpx (httpcore)"], tails["httpx (httpcore)"] = await _run(
            "httpx default transport", httpx_get, total
        )

    transport = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(transport=transport) as client:

        async def bridged_get() -> None:
            (await client.get(url)).json()

        results["httpx + httpx-aiohttp"], tails["httpx + httpx-aiohttp"] = await _run(
            "httpx + httpx-aiohttp", bridged_get, total
        )

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def aiohttp_get() -> None:
            async with session.get(url) as response:
                await response.json()

        results["aiohttp"], tails["aiohttp"] = await _run("aiohttp directly", aiohttp_get, total)

    base = results["httpx (httpcore)"]
    print(
        "ratios to httpx default: " + ", ".join(f"{k} {v / base:.1f}x" for k, v in results.items())
    )
    rows = []
    first = "httpx (httpcore)"
    for name in results:
        ref_rate = (f"{first} c={CONCURRENCY} req/s", results[first]) if name != first else None
        ref_p99 = (f"{first} c={CONCURRENCY} p99", tails[first]) if name != first else None
        rows.append(contract.row(f"{name} c={CONCURRENCY} req/s", results[name], "req/s", ref_rate))
        rows.append(contract.row(f"{name} c={CONCURRENCY} p99", tails[name], "ms", ref_p99))
    path = contract.write("upstream", rows)
    print(f"wrote {path.relative_to(contract.REPO)}")


if __name__ == "__main__":
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    server = multiprocessing.Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    time.sleep(0.5)
    try:
        port = sock.getsockname()[1]
        total = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
        asyncio.run(main(f"http://127.0.0.1:{port}/api/posts", total))
    finally:
        server.terminate()
