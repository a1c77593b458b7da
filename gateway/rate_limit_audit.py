"""Requests refused for their key's rate, in the audit log: one event per caller and window.

The privacy notice ("accountable") has every access, allowed or denied,
recorded. A 429 from :class:`~gateway.request_limits.CredentialRateLimit` is a
denied access, but one audit event per 429 would let a flood write the audit
log at the flood's rate, which is what the limit is there to stop. So refusals
are counted in memory and written as aggregates:

* the first 429 of a key opens a *window*; every later 429 of that key until
  the window closes (``window`` seconds later) only counts: how many, when the
  first and the last were, and which routes and purposes they asked for;
* when the window closes, or the gateway stops, the key's caller is looked up
  by the key's SHA-256 (off the request path) and one ``access.rate_limited``
  event is appended, through the audit writer, to the log of each customer
  that caller is entitled to: caller id and class, never the key;
* memory is bounded: at most ``max_windows`` keys have a window open, at most
  :data:`MAX_KINDS` routes and purposes are kept per window (the rest count
  as ``other``). A key that matches no caller (a guessed or garbage key), and
  any key refused while the bound is full, is counted in one anonymous bucket;
  it reaches no customer's data, so it has no customer's log to go to (as a
  401 has not): it is logged as ``access.rate_limited`` with its counts only.

Nothing about a key is kept beyond the SHA-256 digest the limiter already
holds, and the digest is never logged or written. A request that is not
limited never reaches this module.

The event's ``trace_summary`` holds the window (there is no single trace to
summarise), under ``rate_limited``::

    {"rate_limited": {"requests": 412, "first_at": "…Z", "last_at": "…Z",
                      "window_seconds": 60, "replica": "host:pid",
                      "routes": {"GET /v1/connections/{connection_id}/records/{resource}": 412},
                      "purposes": {"essential.service": 412}}}
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import structlog
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from gateway import audit
from gateway.audit import Action, EventDraft, Outcome, format_time
from gateway.callers import Caller, callers_by_key_hash
from gateway.errors import PROBLEM_BASE, RateLimited
from gateway.runtime import Runtime

__all__ = [
    "DEFAULT_MAX_WINDOWS",
    "DEFAULT_WINDOW",
    "MAX_KINDS",
    "ClosedWindow",
    "RateLimitAudit",
    "RefusalWindows",
]

log = structlog.get_logger("gateway.rate_limit_audit")

DEFAULT_WINDOW = 60.0  # seconds from a key's first 429 to its event
DEFAULT_MAX_WINDOWS = 1_000  # keys with a window open; beyond, refusals count as anonymous
MAX_KINDS = 8  # routes, and purposes, named per window; the rest count as "other"
MAX_PATH = 512  # bytes of a refused path kept until the window closes (a route is matched then)
OTHER = "other"
ANONYMOUS = "anonymous"
_RATE_LIMITED = PROBLEM_BASE + RateLimited.problem


@dataclass(slots=True)
class _Window:
    opened: float  # monotonic
    first_at: float  # wall clock, seconds
    last_at: float
    requests: int = 0
    paths: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, path) -> count
    purposes: dict[str, int] = field(default_factory=dict)

    def add(self, method: str, path: str, purpose: str | None, wall: float) -> None:
        self.requests += 1
        self.last_at = wall
        _count(self.paths, (method, path[:MAX_PATH]), (OTHER, OTHER))
        if purpose is not None:
            _count(self.purposes, purpose[:64], OTHER)

    def merge(self, other: _Window) -> None:
        self.requests += other.requests
        self.first_at = min(self.first_at, other.first_at)
        self.last_at = max(self.last_at, other.last_at)
        for path, n in other.paths.items():
            _count(self.paths, path, (OTHER, OTHER), n)
        for purpose, n in other.purposes.items():
            _count(self.purposes, purpose, OTHER, n)


K = TypeVar("K", str, tuple[str, str])


def _count(counts: dict[K, int], key: K, other: K, n: int = 1) -> None:
    if key in counts or len(counts) < MAX_KINDS:
        counts[key] = counts.get(key, 0) + n
    else:
        counts[other] = counts.get(other, 0) + n


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """One key's refusals (``digest`` ``None`` for the anonymous bucket), ready to record."""

    digest: bytes | None
    requests: int
    first_at: datetime
    last_at: datetime
    paths: Mapping[tuple[str, str], int]
    purposes: Mapping[str, int]


class RefusalWindows:
    """The pure core: refusals counted per key digest in bounded windows, over a given clock."""

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.window = window
        self._max_windows = max_windows
        self._clock = clock
        self._wall = wall
        self._open: dict[bytes, _Window] = {}
        self._anonymous: _Window | None = None

    def __len__(self) -> int:
        return len(self._open) + (self._anonymous is not None)

    def note(self, digest: bytes, method: str, path: str, purpose: str | None) -> None:
        """Count one refusal of the key whose SHA-256 is ``digest``."""
        now, wall = self._clock(), self._wall()
        found = self._open.get(digest)
        if found is None:
            if len(self._open) < self._max_windows:
                found = self._open[digest] = _Window(now, wall, wall)
            else:
                found = self._anonymous_window(now, wall)
        found.add(method, path, purpose, wall)

    def closed(self, *, everything: bool = False) -> list[ClosedWindow]:
        """Take the windows open for ``window`` seconds or more (all with ``everything``)."""
        cutoff = self._clock() - self.window
        taken = [
            (digest, w) for digest, w in self._open.items() if everything or w.opened <= cutoff
        ]
        for digest, _ in taken:
            del self._open[digest]
        out = [_closed(digest, w) for digest, w in taken]
        anonymous = self._anonymous
        if anonymous is not None and (everything or anonymous.opened <= cutoff):
            self._anonymous = None
            out.append(_closed(None, anonymous))
        return out

    def _anonymous_window(self, now: float, wall: float) -> _Window:
        if self._anonymous is None:
            self._anonymous = _Window(now, wall, wall)
        return self._anonymous


def _closed(digest: bytes | None, window: _Window) -> ClosedWindow:
    return ClosedWindow(
        digest=digest,
        requests=window.requests,
        first_at=datetime.fromtimestamp(window.first_at, UTC),
        last_at=datetime.fromtimestamp(window.last_at, UTC),
        paths=dict(window.paths),
        purposes=dict(window.purposes),
    )


def _purpose(scope: Scope) -> str | None:
    query: bytes = scope.get("query_string", b"")
    if b"purpose=" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1")):
        if name == "purpose":
            return value
    return None


class RateLimitAudit:
    """Counts 429s (:meth:`note`, called by the limiter) and records them while :meth:`running`."""

    def __init__(
        self,
        routes: Iterable[BaseRoute],
        *,
        window: float = DEFAULT_WINDOW,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        clock: Callable[[], float] = time.monotonic,
        replica: str | None = None,
    ) -> None:
        self.windows = RefusalWindows(window=window, max_windows=max_windows, clock=clock)
        self._routes = [route for route in routes if isinstance(route, Route)]
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"

    def note(self, digest: bytes, scope: Scope) -> None:
        """One request refused for the rate of the key whose SHA-256 is ``digest``."""
        self.windows.note(
            digest, scope.get("method", "GET"), scope.get("path", ""), _purpose(scope)
        )

    @contextlib.asynccontextmanager
    async def running(self, runtime: Runtime, *, tick: float | None = None) -> AsyncIterator[None]:
        """Record closed windows every ``tick`` seconds; on the way out, every window."""
        every = tick if tick is not None else max(0.05, min(5.0, self.windows.window / 4))

        stopping = asyncio.Event()

        async def loop() -> None:
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), every)
                    return
                await self.record(runtime)

        # Stopped, not cancelled: windows taken by a record in progress are written.
        task = asyncio.create_task(loop(), name="rate-limit-audit")
        try:
            yield
        finally:
            stopping.set()
            await task
            await self.record(runtime, everything=True)

    async def record(self, runtime: Runtime, *, everything: bool = False) -> None:
        """Append an event for each window that closed; never raises (it runs unattended)."""
        closed = self.windows.closed(everything=everything)
        if not closed:
            return
        try:
            await self._record(runtime, closed)
        except Exception as exc:  # the recorder task must outlive any one failure
            log.warning(
                "access.rate_limited_unrecorded",
                windows=len(closed),
                requests=sum(w.requests for w in closed),
                error=type(exc).__name__,
            )

    async def _record(self, runtime: Runtime, closed: list[ClosedWindow]) -> None:
        digests = [w.digest for w in closed if w.digest is not None]
        known = await callers_by_key_hash(runtime.engine, (d.hex() for d in digests))
        anonymous: list[ClosedWindow] = []
        drafts: list[EventDraft] = []
        for window in closed:
            caller = known.get(window.digest.hex()) if window.digest is not None else None
            if caller is None:
                anonymous.append(window)
            else:
                drafts.extend(self._drafts(caller, window))
        if anonymous:
            self._log_anonymous(anonymous)
        if not drafts:
            return
        results = await asyncio.gather(
            *(runtime.audit.record(d) for d in drafts), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            if not all(isinstance(r, audit.AuditUnavailable) for r in failed):
                raise failed[0]
            log.warning(
                "access.rate_limited_unrecorded",
                events=len(failed),
                error="AuditUnavailable",
            )

    def _drafts(self, caller: Caller, window: ClosedWindow) -> list[EventDraft]:
        # Only purposes the caller was granted are named: the rest is whatever
        # text the requests carried, counted but not written.
        purposes: dict[str, int] = {}
        for purpose, n in window.purposes.items():
            name = purpose if purpose in caller.purposes else OTHER
            purposes[name] = purposes.get(name, 0) + n
        named = [p for p in purposes if p != OTHER]
        summary = self._summary(window, purposes)
        return [
            EventDraft(
                customer_id=customer_id,
                action=Action.ACCESS_RATE_LIMITED,
                outcome=Outcome.DENIED,
                problem_type=_RATE_LIMITED,
                caller_id=caller.id,
                caller_class=caller.caller_class.value,
                # The event's purpose when every refused request asked for that one.
                purpose=named[0] if named and purposes[named[0]] == window.requests else None,
                trace_summary=summary,
            )
            for customer_id in sorted(caller.customers)
        ]

    def _summary(self, window: ClosedWindow, purposes: Mapping[str, int]) -> dict[str, Any]:
        routes: dict[str, int] = {}
        for (method, path), n in window.paths.items():
            route = self._route(method, path)
            routes[route] = routes.get(route, 0) + n
        return {
            "rate_limited": {
                "requests": window.requests,
                "first_at": format_time(window.first_at),
                "last_at": format_time(window.last_at),
                "window_seconds": round(self.windows.window),
                "replica": self.replica,
                "routes": dict(sorted(routes.items())),
                "purposes": dict(sorted(purposes.items())),
            }
        }

    def _route(self, method: str, path: str) -> str:
        """``"{method} {route template}"``, or ``other``: the path itself is never written."""
        if method == OTHER:
            return OTHER
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return f"{method} {route.path_format}"
        return OTHER

    def _log_anonymous(self, windows: list[ClosedWindow]) -> None:
        log.warning(
            "access.rate_limited",
            caller=ANONYMOUS,
            requests=sum(w.requests for w in windows),
            first_at=format_time(min(w.first_at for w in windows)),
            last_at=format_time(max(w.last_at for w in windows)),
            replica=self.replica,
        )
