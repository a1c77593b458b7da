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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import SubjectHasher
from gateway.errors import SubjectControlsUnavailable
from gateway.subject_controls.tables import ALL_PURPOSES, SubjectControlTables
from policies import Identifier, Record, is_within

__all__ = ["PageControls", "SubjectControls"]

# Bound parameters per IN list: far below SQLite's 32766 and PostgreSQL's 65535.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class PageControls:
    """Consent and suppression facts about one page's identifiers, for one purpose."""

    purpose: str
    hashes: Mapping[Identifier, str]  # identifier -> keyed hash under the customer's key
    consented_hashes: frozenset[str]  # active consent covering ``purpose``
    suppressed_scopes: Mapping[str, frozenset[str]]  # hash -> purposes ("*" = all)

    def consented(self, identifier: Identifier) -> bool:
        """Recorded, not withdrawn consent covering the request's purpose."""
        digest = self.hashes.get(identifier)
        return digest is not None and digest in self.consented_hashes

    def suppressed(self, identifier: Identifier, purpose: str) -> bool:
        """Suppressed for every purpose, or for ``purpose`` or a purpose it falls under."""
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
        self, engine: AsyncEngine, tables: SubjectControlTables, *, hasher: SubjectHasher
    ) -> None:
        self._engine = engine
        self._tables = tables
        self._hasher = hasher

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
        hasher = self._hasher
        hashes = {i: hasher.hash(customer_id, str(i)) for i in set(identifiers)}
        digests = sorted(set(hashes.values()))
        scopes: dict[str, set[str]] = {}
        consented: set[str] = set()
        if not digests:
            return PageControls(purpose, hashes, frozenset(), {})
        try:
            async with self._engine.connect() as conn:
                for start in range(0, len(digests), _CHUNK):
                    chunk = digests[start : start + _CHUNK]
                    found = await conn.execute(self._suppressed(customer_id, chunk))
                    for digest, scope in found:
                        scopes.setdefault(digest, set()).add(scope)
                    if not consent_required:
                        continue
                    given = await conn.execute(self._consented(customer_id, chunk))
                    for digest, consent_purpose in given:
                        # Consent to a purpose covers its more specific purposes.
                        if is_within(purpose, consent_purpose):
                            consented.add(digest)
        except SQLAlchemyError as exc:
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
