"""The per-request view of consents and suppressions that the policy engine reads.

The engine asks ``consented(identifier)`` and ``suppressed(identifier,
purpose)`` synchronously, per identifier of every record (``AccessContext``).
So the records service hashes the page's identifiers once and loads, in one
read, the suppression scopes and (for purposes that need consent) the active
consents of exactly those hashes; the engine's questions are then dictionary
and set lookups. One query per table per page, however many identifiers.

Fail closed: an identifier the view was not loaded for counts as not
consented and as suppressed (it cannot happen through the records service,
which loads every identifier of the page it judges).

Most customers have no suppression and no consent at all; for them the
lookup is skipped (:class:`ControlsPresence`), and so is hashing the page's
identifiers up front (:class:`PageHashes`): then only the identifiers the
audit event or a pseudonym needs are hashed. Whether a customer has any is
remembered for :data:`PRESENCE_TTL` seconds, forgotten at once when this
process records one, so a suppression filed through *another* replica is in
force here within that bound. Concurrent misses on one customer share one
read of it (:meth:`ControlsPresence.load`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy import Select, Table, exists, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit import SubjectHasher
from gateway.errors import SubjectControlsUnavailable
from gateway.single_flight import LoadsInFlight, SingleFlight
from gateway.subject_controls.tables import ALL_PURPOSES, SubjectControlTables
from policies import Identifier, Record, is_within, value_type

__all__ = ["PRESENCE_TTL", "ControlsPresence", "PageControls", "PageHashes", "SubjectControls"]

# Bound parameters per IN list: far below SQLite's 32766 and PostgreSQL's 65535.
_CHUNK = 500

# How long "this customer has no suppression / no consent" is believed without
# asking the database again: the longest a suppression recorded through another
# replica can go unapplied here. Recording one through this process applies at once.
PRESENCE_TTL = 2.0
PRESENCE_SIZE = 4096

# What a failed read can raise: SQLAlchemy's wrapping (SQLite, the pool, the
# checkout ping) or, on PostgreSQL's driver connection, asyncpg and the socket.
_UNAVAILABLE = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class _PostgresLookups:
    """The lookup's statements as PostgreSQL text, built once per engine.

    Run on asyncpg's own connection (as the audit append does): the page's
    hashes travel as one ``text[]`` parameter, so the text never changes with
    the page and asyncpg's prepared statement is reused, and the read is one
    round trip without SQLAlchemy's statement compilation, expanding IN,
    BEGIN and ROLLBACK. ``= ANY($2)`` uses the primary key's (customer_id,
    subject_hash) prefix like ``IN`` does
    (https://www.postgresql.org/docs/current/functions-comparisons.html).
    """

    suppressed: str
    consented: str


def _postgres_lookups(
    tables: SubjectControlTables, quote: Callable[[Table], str]
) -> _PostgresLookups:
    # Only table names (quoted by the dialect) and constant column names are
    # interpolated; every value travels as a bind parameter.
    subjects = quote(tables.suppression_subjects)
    consent_subjects, consents = quote(tables.consent_subjects), quote(tables.consents)
    return _PostgresLookups(
        suppressed=(
            f"SELECT subject_hash, scope FROM {subjects} "  # noqa: S608
            "WHERE customer_id = $1 AND subject_hash = ANY($2::text[])"
        ),
        consented=(
            f"SELECT s.subject_hash, c.purpose FROM {consent_subjects} AS s "  # noqa: S608
            f"JOIN {consents} AS c ON c.id = s.consent_id "
            "WHERE s.customer_id = $1 AND s.subject_hash = ANY($2::text[]) "
            "AND c.withdrawn_at IS NULL"
        ),
    )


@dataclass(frozen=True, slots=True)
class Presence:
    """Whether a customer has any suppression row, and any consent row, at all."""

    suppressions: bool
    consents: bool


class ControlsPresence:
    """Per-customer :class:`Presence`, bounded and short-lived; shared with the writing stores."""

    def __init__(
        self,
        ttl: float = PRESENCE_TTL,
        size: int = PRESENCE_SIZE,
        *,
        clock: Callable[[], float] = time.monotonic,
        loads: LoadsInFlight | None = None,
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Presence]] = OrderedDict()
        # Bumped by changed(): a read that began before a write committed must
        # not store its older answer after the write dropped it.
        self.generation = 0
        self._loads: SingleFlight[str, Presence] = SingleFlight(loads)

    def get(self, customer_id: str) -> Presence | None:
        entry = self._entries.get(customer_id)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[customer_id]
            return None
        return entry[1]

    def put(self, customer_id: str, presence: Presence, *, read_at: int) -> None:
        if read_at != self.generation or self._ttl <= 0:
            return
        self._entries[customer_id] = (self._clock() + self._ttl, presence)
        self._entries.move_to_end(customer_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def changed(self, customer_id: str) -> None:
        """A suppression or consent of ``customer_id`` was committed by this process."""
        self.generation += 1
        self._entries.pop(customer_id, None)
        self._loads.forget(customer_id)  # a read in flight began before the write

    async def load(
        self, customer_id: str, read: Callable[[], Coroutine[Any, Any, Presence]]
    ) -> Presence:
        """``read()`` the presence and keep it; concurrent misses share one read."""

        read_at = self.generation  # now, not when the task starts: never after the read began

        async def read_and_keep() -> Presence:
            presence = await read()
            self.put(customer_id, presence, read_at=read_at)
            return presence

        return await self._loads.run(customer_id, read_and_keep)


class PageHashes(Mapping[Identifier, str]):
    """The keyed hashes of one page's identifiers, each worked out when first asked for.

    For a customer with no consent or suppression to look up, nothing on the
    page needs every hash: the audit event names only the subjects of kept
    records and pseudonyms only the identifiers released. On the benchmark's
    page of posts that is 3 hashes of 13, each about 14,000 instructions under
    callgrind. The hashes live as long as the page (one request), never longer:
    a cache across requests would keep End User identifiers in memory.
    Identifiers not on the page are not in the mapping (``get`` answers None).
    """

    __slots__ = ("_customer_id", "_hasher", "_hashes", "_identifiers")

    def __init__(
        self, hasher: SubjectHasher, customer_id: str, identifiers: Iterable[Identifier]
    ) -> None:
        self._hasher = hasher
        self._customer_id = customer_id
        self._identifiers = frozenset(identifiers)
        self._hashes: dict[Identifier, str] = {}

    def get(self, identifier: Identifier, default: str | None = None) -> str | None:  # type: ignore[override]
        digest = self._hashes.get(identifier)
        if digest is None:
            if identifier not in self._identifiers:
                return default
            digest = self._hasher.hash(self._customer_id, str(identifier))
            self._hashes[identifier] = digest
        return digest

    def __getitem__(self, identifier: Identifier) -> str:
        digest = self.get(identifier)
        if digest is None:
            raise KeyError(identifier)
        return digest

    def __contains__(self, identifier: object) -> bool:
        return identifier in self._identifiers

    def __iter__(self) -> Iterator[Identifier]:
        return iter(self._identifiers)

    def __len__(self) -> int:
        return len(self._identifiers)


@value_type  # one per records request: see policies.value_type
class PageControls:
    """Consent and suppression facts about one page's identifiers, for one purpose."""

    purpose: str
    hashes: Mapping[Identifier, str]  # identifier -> keyed hash under the customer's key
    consented_hashes: frozenset[str]  # active consent covering ``purpose``
    suppressed_scopes: Mapping[str, frozenset[str]]  # hash -> purposes ("*" = all)

    def consented(self, identifier: Identifier) -> bool:
        """Recorded, not withdrawn consent covering the request's purpose."""
        if not self.consented_hashes:
            return False  # nobody on the page consented: no hash needed to say so
        digest = self.hashes.get(identifier)
        return digest is not None and digest in self.consented_hashes

    def suppressed(self, identifier: Identifier, purpose: str) -> bool:
        """Suppressed for every purpose, or for ``purpose`` or a purpose it falls under."""
        if not self.suppressed_scopes:
            # Nobody on the page is suppressed; one not on it counts as suppressed.
            return identifier not in self.hashes
        digest = self.hashes.get(identifier)
        if digest is None:
            return True
        scopes = self.suppressed_scopes.get(digest)
        if not scopes:
            return False
        return ALL_PURPOSES in scopes or any(is_within(purpose, scope) for scope in scopes)


class SubjectControls:
    """Loads :class:`PageControls` for a page of records; reads only."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: SubjectControlTables,
        *,
        hasher: SubjectHasher,
        presence: ControlsPresence | None = None,
    ) -> None:
        self._engine = engine
        self._tables = tables
        self._hasher = hasher
        self._presence = presence  # None: always look (no staleness at all)
        self._postgres = (
            _postgres_lookups(tables, engine.dialect.identifier_preparer.format_table)
            if engine.dialect.name == "postgresql"
            else None
        )

    async def for_records(
        self,
        customer_id: str,
        purpose: str,
        records: Iterable[Record],
        *,
        consent_required: bool,
    ) -> PageControls:
        """The view for every identifier of every subject of ``records``."""
        identifiers = {
            identifier
            for record in records
            for subject in record.subjects
            for identifier in subject.identifiers
        }
        return await self.for_identifiers(
            customer_id, purpose, identifiers, consent_required=consent_required
        )

    async def for_identifiers(
        self,
        customer_id: str,
        purpose: str,
        identifiers: Iterable[Identifier],
        *,
        consent_required: bool,
    ) -> PageControls:
        hashes = PageHashes(self._hasher, customer_id, identifiers)
        if not hashes:
            return PageControls(purpose, hashes, frozenset(), {})
        known = self._presence.get(customer_id) if self._presence is not None else None
        if known is not None and not _worth_asking(known, consent_required):
            return PageControls(purpose, hashes, frozenset(), {})
        scopes: dict[str, set[str]] = {}
        consented: set[str] = set()
        try:
            if known is None and self._presence is not None:
                known = await self._presence.load(
                    customer_id, partial(self._read_presence, customer_id)
                )
                if not _worth_asking(known, consent_required):
                    return PageControls(purpose, hashes, frozenset(), {})
            # The lookup needs every hash of the page.
            digests = sorted({hashes[identifier] for identifier in hashes})
            want_scopes = known is None or known.suppressions
            want_consents = consent_required and (known is None or known.consents)
            async with self._engine.connect() as conn:
                if self._postgres is not None:
                    rows = await self._read_postgres(
                        self._postgres, conn, customer_id, digests, want_scopes, want_consents
                    )
                else:
                    rows = await self._read_chunked(
                        conn, customer_id, digests, want_scopes, want_consents
                    )
            found, given = rows
            for digest, scope in found:
                scopes.setdefault(digest, set()).add(scope)
            for digest, consent_purpose in given:
                # Consent to a purpose covers its more specific purposes.
                if is_within(purpose, consent_purpose):
                    consented.add(digest)
        except _UNAVAILABLE as exc:
            # Not knowing who is suppressed means releasing nothing (fail closed).
            raise SubjectControlsUnavailable(
                f"consents and suppressions cannot be read ({type(exc).__name__})"
            ) from None
        return PageControls(
            purpose=purpose,
            hashes=hashes,
            consented_hashes=frozenset(consented),
            suppressed_scopes={d: frozenset(s) for d, s in scopes.items()},
        )

    @staticmethod
    async def _read_postgres(
        statements: _PostgresLookups,
        conn: AsyncConnection,
        customer_id: str,
        digests: list[str],
        want_scopes: bool,
        want_consents: bool,
    ) -> tuple[list[Any], list[Any]]:
        """Both reads on asyncpg's connection under ``conn`` (:class:`_PostgresLookups`)."""
        driver: Any = (await conn.get_raw_connection()).driver_connection
        try:
            found = (
                await driver.fetch(statements.suppressed, customer_id, digests)
                if want_scopes
                else []
            )
            given = (
                await driver.fetch(statements.consented, customer_id, digests)
                if want_consents
                else []
            )
        except BaseException:
            # Whatever failed (the server, the network, a timeout, a cancel), the
            # pool gets a fresh connection rather than this one back.
            await conn.invalidate()
            raise
        return found, given

    async def _read_chunked(
        self,
        conn: AsyncConnection,
        customer_id: str,
        digests: list[str],
        want_scopes: bool,
        want_consents: bool,
    ) -> tuple[list[Any], list[Any]]:
        """Both reads through SQLAlchemy Core, ``IN`` lists of at most :data:`_CHUNK`."""
        found: list[Any] = []
        given: list[Any] = []
        for start in range(0, len(digests), _CHUNK):
            chunk = digests[start : start + _CHUNK]
            if want_scopes:
                found.extend(await conn.execute(self._suppressed(customer_id, chunk)))
            if want_consents:
                given.extend(await conn.execute(self._consented(customer_id, chunk)))
        return found, given

    async def _read_presence(self, customer_id: str) -> Presence:
        # Both answers in one round trip; each EXISTS stops at the first row of the
        # primary key's (customer_id, ...) prefix.
        t = self._tables
        query = select(
            exists().where(t.suppression_subjects.c.customer_id == customer_id),
            exists().where(t.consent_subjects.c.customer_id == customer_id),
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return Presence(suppressions=bool(row[0]), consents=bool(row[1]))

    def _suppressed(self, customer_id: str, digests: list[str]) -> Select[str, str]:
        t = self._tables.suppression_subjects
        return select(t.c.subject_hash, t.c.scope).where(
            t.c.customer_id == customer_id, t.c.subject_hash.in_(digests)
        )

    def _consented(self, customer_id: str, digests: list[str]) -> Select[str, str]:
        t = self._tables
        return (
            select(t.consent_subjects.c.subject_hash, t.consents.c.purpose)
            .join(t.consents, t.consents.c.id == t.consent_subjects.c.consent_id)
            .where(
                t.consent_subjects.c.customer_id == customer_id,
                t.consent_subjects.c.subject_hash.in_(digests),
                t.consents.c.withdrawn_at.is_(None),
            )
        )


def _worth_asking(presence: Presence, consent_required: bool) -> bool:
    return presence.suppressions or (consent_required and presence.consents)
