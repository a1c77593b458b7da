"""The audit log in the database: one store that appends, searches, verifies,
checkpoints and prunes each customer's hash chain.

Written against SQLAlchemy 2 Core for SQLite (one process, WAL) and
PostgreSQL (many replicas). Appending lives in :mod:`gateway.audit.append`
(the head row per customer that serializes a customer's appends), searching
and export in :mod:`gateway.audit.search`; this module holds them together
with the checks that read a chain back. Checkpoints and pruning verify the
chain on the read engine first (what they verify is immutable) and take the
customer's head row lock through the write engine, whose upsert is their
first statement and a write, only for a final check and their write.

Database and driver errors are translated into
:class:`~gateway.audit.errors.AuditUnavailable`.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.append import ChainAppender, utcnow
from gateway.audit.chain import ChainVerifier, VerifyResult, decode_canonical, genesis_hash
from gateway.audit.checkpoint import Checkpoint, CheckpointKeys, CheckpointSigner, prunable_up_to
from gateway.audit.errors import DATABASE_ERRORS, AuditUnavailable, ChainBroken
from gateway.audit.event import AuditEvent, EventDraft, OutboxEntry
from gateway.audit.partitions import AuditPartitions, Partition
from gateway.audit.search import (
    DEFAULT_SEARCH_LIMIT,
    MAX_SEARCH_LIMIT,
    AuditCursor,
    AuditPage,
    AuditSearch,
)
from gateway.audit.subject_rows import SubjectRows, SubjectTally
from gateway.audit.tables import AuditTables, aware_utc

__all__ = ["DEFAULT_SEARCH_LIMIT", "MAX_SEARCH_LIMIT", "AuditCursor", "AuditPage", "AuditStore"]

DEFAULT_VERIFY_BATCH = 2000
# How often a checkpoint verifies again after another signer signed first.
_SIGNING_ATTEMPTS = 3
# How often a verification starts over after a prune deleted events it was reading.
_OVERTAKEN_ATTEMPTS = 3


class _Overtaken(Exception):
    """A prune deleted events while a verification read them: it starts over."""


class AuditStore(AuditSearch):
    """One customer-partitioned, hash-chained audit log in one database: searched as an
    :class:`~gateway.audit.search.AuditSearch`, appended to through a
    :class:`~gateway.audit.append.ChainAppender`, verified here."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: AuditTables,
        *,
        keys: CheckpointKeys | None = None,
        clock: Callable[[], datetime] = utcnow,
        read_engine: AsyncEngine | None = None,
        verify_batch: int = DEFAULT_VERIFY_BATCH,
    ) -> None:
        """``engine`` takes the writes; ``read_engine`` (default: ``engine``) serves search,
        export and verification, so that on SQLite an engine that begins every
        transaction IMMEDIATE does not hold the write lock through a long verify.

        Verification reads ``verify_batch`` events per read transaction (see :meth:`_feed`).
        """
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(
                f"the audit store supports SQLite and PostgreSQL, not {engine.dialect.name}"
            )
        if verify_batch < 1:
            raise ValueError(f"verify_batch must be at least 1, not {verify_batch}")
        self._verify_batch = verify_batch
        self._engine = engine
        self._reader = read_engine or engine
        self._t = tables
        self._keys = keys or CheckpointKeys()
        self._clock = clock
        super().__init__(self._reader, tables)
        self._appender = ChainAppender(engine, tables, read_engine=self._reader, clock=clock)
        self._subject_rows = SubjectRows(tables, engine.dialect)
        self._partitions = AuditPartitions(engine, tables, clock=clock)

    # -- append (gateway.audit.append) -----------------------------------------------------

    async def append(self, drafts: Sequence[EventDraft]) -> list[AuditEvent]:
        """Link and write ``drafts`` in one transaction; events come back in draft order.

        Returns only after the commit: each returned event is durable.
        """
        return await self._appender.append(drafts)

    async def append_outboxed(
        self, items: Sequence[EventDraft | OutboxEntry], *, skip_locked: bool = False
    ) -> list[AuditEvent | None]:
        """:meth:`append`, where each :class:`OutboxEntry`'s outbox row is deleted by the
        transaction that appends its event (:meth:`.ChainAppender.append_outboxed`)."""
        return await self._appender.append_outboxed(items, skip_locked=skip_locked)

    def holding_connection(self) -> AbstractAsyncContextManager[None]:
        """The calling task's appends inside this block share one connection kept out
        of the pool (:meth:`.ChainAppender.holding_connection`)."""
        return self._appender.holding_connection()

    # -- checks that read a chain back ------------------------------------------------------

    async def _lock_heads(
        self, conn: AsyncConnection, customer_ids: list[str]
    ) -> dict[str, tuple[int, str, datetime | None]]:
        heads = self._t.heads
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        await conn.execute(
            dialect.insert(heads)
            .values(
                [
                    {"customer_id": c, "seq": 0, "hash": genesis_hash(c), "occurred_at": None}
                    for c in customer_ids
                ]
            )
            .on_conflict_do_nothing(index_elements=["customer_id"])
        )
        rows = await conn.execute(
            select(heads.c.customer_id, heads.c.seq, heads.c.hash, heads.c.occurred_at)
            .where(heads.c.customer_id.in_(customer_ids))
            .order_by(heads.c.customer_id)
            .with_for_update()
        )
        return {r.customer_id: (r.seq, r.hash, aware_utc(r.occurred_at)) for r in rows}

    # -- verification ----------------------------------------------------------------------

    async def checkpoints(self, customer_id: str) -> list[Checkpoint]:
        """A customer's checkpoints, oldest first (unverified: see :meth:`verify`)."""
        try:
            async with self._reader.connect() as conn:
                checkpoints, bad = await self._load_checkpoints(conn, customer_id)
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit read failed: {type(exc).__name__}") from exc
        if bad:
            raise ChainBroken(bad[0][1])
        return checkpoints

    async def _load_checkpoints(
        self, conn: AsyncConnection, customer_id: str
    ) -> tuple[list[Checkpoint], list[tuple[int, str]]]:
        c = self._t.checkpoints
        rows = await conn.execute(
            select(c.c.seq, c.c.note).where(c.c.customer_id == customer_id).order_by(c.c.seq)
        )
        checkpoints: list[Checkpoint] = []
        bad: list[tuple[int, str]] = []
        for row in rows:
            try:
                checkpoint = Checkpoint.parse(row.note)
            except ValueError as exc:
                bad.append((row.seq, f"checkpoint at seq {row.seq} is unreadable: {exc}"))
                continue
            if (checkpoint.customer_id, checkpoint.seq) != (customer_id, row.seq):
                bad.append((row.seq, f"checkpoint row {row.seq} holds another checkpoint"))
                continue
            checkpoints.append(checkpoint)
        return checkpoints, bad

    async def verify(self, customer_id: str) -> VerifyResult:
        """Recompute the customer's chain and check it against its head and checkpoints.

        The events are read in batches, each in a short read transaction of its
        own (see :meth:`_feed`), up to the head read at the start: what an
        append adds later is past it, and the chain up to it never changes, so
        the verdict is the one a single snapshot would give. Only a prune
        deletes events; one that deletes events this verification has yet to
        read would look like a gap. It is told apart from tampering by the
        log's first kept seq having moved since the start; the verification
        then starts over from the checkpoint the prune left, and after
        :data:`_OVERTAKEN_ATTEMPTS` such prunes raises
        :class:`~gateway.audit.errors.AuditUnavailable` rather than report a
        break it cannot tell from pruning.
        """
        try:
            for _ in range(_OVERTAKEN_ATTEMPTS):
                with contextlib.suppress(_Overtaken):
                    return await self._verify_once(customer_id)
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit verify failed: {type(exc).__name__}") from exc
        raise AuditUnavailable("audit verify failed: prunes kept deleting the events it read")

    async def _verify_once(self, customer_id: str) -> VerifyResult:
        """One verification; raises :class:`_Overtaken` when a prune explains its failure."""
        h, e = self._t.heads, self._t.events
        async with self._reader.connect() as conn:
            # The first kept seq before the checkpoints, those before the head
            # (and, below, the head and the highest event in one statement):
            # each read sees at least what the one before it committed, so a
            # concurrent append is never mistaken for tampering, and a prune
            # either shows whole (the checkpoint it pruned to is among those
            # read) or moves the first kept seq after it was read.
            first = await self._first_seq(conn, customer_id)
            checkpoints, bad = await self._load_checkpoints(conn, customer_id)
            head = (
                await conn.execute(select(h.c.seq, h.c.hash).where(h.c.customer_id == customer_id))
            ).first()
        verifier = ChainVerifier(
            customer_id, checkpoints, self._keys, head=(head.seq, head.hash) if head else None
        )
        for seq, problem in bad:
            verifier.flag(seq, problem)
        await self._feed(verifier, customer_id, after_seq=0, upto=head.seq if head else None)
        async with self._reader.connect() as conn:
            last_event, head_now, first_now = (
                await conn.execute(
                    select(
                        select(func.max(e.c.seq))
                        .where(e.c.customer_id == customer_id)
                        .scalar_subquery(),
                        select(h.c.seq).where(h.c.customer_id == customer_id).scalar_subquery(),
                        select(func.min(e.c.seq))
                        .where(e.c.customer_id == customer_id)
                        .scalar_subquery(),
                    )
                )
            ).one()
        if last_event is not None and last_event > (head_now or 0):
            verifier.flag(
                (head_now or 0) + 1, f"events follow the recorded head at seq {head_now or 0}"
            )
        result = verifier.finish()
        if not result.ok and first_now != first:
            raise _Overtaken
        return result

    async def _feed(
        self,
        verifier: ChainVerifier,
        customer_id: str,
        *,
        after_seq: int,
        upto: int | None,
    ) -> None:
        """Feed ``verifier`` the events after ``after_seq`` up to ``upto`` (``None``: to the
        last), ``verify_batch`` at a time, each batch read in a transaction of its own.

        A read transaction keeps what its snapshot sees: on SQLite no
        checkpoint can copy the WAL back past the oldest open reader's
        snapshot, so the WAL cannot start over or be truncated while it lasts
        (https://sqlite.org/wal.html#avoiding_excessively_large_wal_files);
        on PostgreSQL a long transaction can hold back what vacuum may remove
        (https://www.postgresql.org/docs/current/routine-vacuuming.html#VACUUM-FOR-SPACE-RECOVERY).
        One transaction over a million events did so for the whole
        verification while the gateway kept writing. Between batches nothing
        is held: the verifier carries the running hash, and the next batch
        continues after the last seq read.
        """
        tally = SubjectTally(self._verify_batch)
        async with self._reader.connect() as conn:
            while not verifier.failed:
                last = await self._feed_batch(
                    conn, verifier, customer_id, after_seq=after_seq, upto=upto, tally=tally
                )
                if last is None:
                    break
                after_seq = last
            await self._check_subject_count(conn, verifier, customer_id, tally)

    async def _feed_batch(
        self,
        conn: AsyncConnection,
        verifier: ChainVerifier,
        customer_id: str,
        *,
        after_seq: int,
        upto: int | None,
        tally: SubjectTally,
    ) -> int | None:
        """One batch: read in one transaction, ended before the rows are hashed; then
        its subject rows probed in another (see :mod:`gateway.audit.subject_rows`).

        Returns the last seq read, ``None`` when there was none.
        """
        e = self._t.events
        query = (
            self._checked_columns()
            .where(e.c.customer_id == customer_id, e.c.seq > after_seq)
            .order_by(e.c.seq)
            .limit(self._verify_batch)
        )
        if upto is not None:
            query = query.where(e.c.seq <= upto)
        async with conn.begin():
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        expected: list[tuple[int, str, datetime]] = []
        for row in rows:
            problem, event, content = self._check_row(row)
            if event is None:
                tally.stop()
                verifier.add_unreadable(row[1], problem)
                continue
            tally.expect(event.seq, len(event.subjects), event.occurred_at)
            expected += [(event.seq, subject, event.occurred_at) for subject in event.subjects]
            verifier.add(event, content)
            if problem:
                verifier.flag(event.seq, f"event {event.seq}: {problem}")
        async with conn.begin():
            missing = await self._subject_rows.missing(conn, customer_id, expected)
        if missing:
            verifier.flag(missing[0], _subjects_differ(missing[0]))
        return int(rows[-1][1])

    async def _check_subject_count(
        self, conn: AsyncConnection, verifier: ChainVerifier, customer_id: str, tally: SubjectTally
    ) -> None:
        """Flag the first event with a subject row its content does not name: one count
        when there is none, a second pass naming the event when there is."""
        if not tally.first:
            return
        rows = self._subject_rows
        async with conn.begin():
            stored = await rows.count(conn, customer_id, tally)
        if stored == tally.total:
            return
        async with conn.begin():
            counts = await rows.count_by_stretch(conn, customer_id, tally)
        differing = [n for n in counts | tally.by_stretch if counts[n] != tally.by_stretch[n]]
        if differing:
            first, last = tally.stretch(min(differing))
            seq = await self._first_differing_seq(conn, customer_id, tally, first, last)
            if seq is not None:
                verifier.flag(seq, _subjects_differ(seq))
                return
        # Nothing differs any more: the rows changed after the count (a prune,
        # which verification tells apart from tampering by the first kept event).
        verifier.flag(
            tally.first,
            f"subject rows of events {tally.first}..{tally.last} changed while verified",
        )

    async def _first_differing_seq(
        self, conn: AsyncConnection, customer_id: str, tally: SubjectTally, first: int, last: int
    ) -> int | None:
        """The first seq in ``first..last`` whose subject rows are not those its event names."""
        e = self._t.events
        async with conn.begin():
            events = await conn.execute(
                self._checked_columns().where(
                    e.c.customer_id == customer_id, e.c.seq >= first, e.c.seq <= last
                )
            )
            named = {row[1]: self._check_row(row)[1] for row in events}
            by_seq = await self._subject_rows.by_seq(conn, customer_id, tally, first, last)
        for seq in sorted(by_seq.keys() | named.keys()):
            event = named.get(seq)
            if sorted(by_seq.get(seq, ())) != sorted(event.subjects if event else ()):
                return seq
        return None

    def _checked_columns(self) -> Select[Any]:
        """The event columns :meth:`_check_row` takes, in its order."""
        e = self._t.events
        return select(
            e.c.customer_id,
            e.c.seq,
            e.c.occurred_at,
            e.c.action,
            e.c.outcome,
            e.c.caller_id,
            e.c.connection_id,
            e.c.trace_id,
            e.c.content,
            e.c.prev_hash,
            e.c.hash,
        )

    @staticmethod
    def _check_row(row: Sequence[Any]) -> tuple[str, AuditEvent | None, bytes]:
        """A row's event and canonical content (``None``: unreadable), and the first of its
        search columns that is not a copy of the hashed content (``""``: none).

        ``row`` holds :meth:`_checked_columns`, unpacked by position: each read of a
        result row's attribute by name costs about as much as decoding a field.
        """
        (
            customer_id,
            seq,
            occurred_at,
            action,
            outcome,
            caller_id,
            connection_id,
            trace_id,
            content,
            prev_hash,
            hash_,
        ) = row
        try:
            event, canonical = decode_canonical(content, prev_hash=prev_hash, hash=hash_)
        except ValueError as exc:
            return f"content does not decode ({type(exc).__name__})", None, b""
        if event.seq != seq or event.customer_id != customer_id:
            return f"row holds event {event.seq} (rows moved or swapped)", None, b""
        # The search columns are copies of hashed content; an edit to them
        # would misdirect a search without touching the chain. Compared in
        # order, the first that differs named (action and outcome are StrEnum
        # members, equal to their text).
        if aware_utc(occurred_at) != event.occurred_at:
            return _column_differs("occurred_at"), event, canonical
        for name, stored, hashed in (
            ("action", action, event.action),
            ("outcome", outcome, event.outcome),
            ("caller_id", caller_id, event.caller_id),
            ("connection_id", connection_id, event.connection_id),
            ("trace_id", trace_id, event.trace_id),
        ):
            if stored != hashed:
                return _column_differs(name), event, canonical
        return "", event, canonical

    # -- checkpoints and retention ---------------------------------------------------------

    async def checkpoint(self, signer: CheckpointSigner, customer_id: str) -> Checkpoint | None:
        """Sign the customer's head, after verifying the events since the last checkpoint.

        Returns the newest checkpoint (a new one unless the head has not
        moved), or ``None`` for a customer with no events. Raises
        :class:`ChainBroken` rather than sign over a chain that does not verify.

        The verification runs outside the write lock (on SQLite, the one every
        audited request's append waits for; on PostgreSQL, the customer's head
        row): the chain up to the head read first never changes again (the log
        is append-only), so it is verified on the read engine while appends go
        on, and the checkpoint signs that head, never one read later. Under the
        lock only the short final check runs: the checkpoints are still the
        ones the verification started from (else, another signer was first:
        its checkpoint is returned if it covers as much, or the verification
        runs again from it) and the event at the head still has the verified
        hash; then the checkpoint is written.
        """
        keys = self._keys | CheckpointKeys({signer.key_id: signer.public_key})
        try:
            for _ in range(_SIGNING_ATTEMPTS):
                try:
                    verified = await self._verify_up_to_head(customer_id, keys)
                except _Overtaken:
                    continue  # a prune deleted what it read: verify again, from its checkpoint
                if verified is None or isinstance(verified, Checkpoint):
                    return verified
                checkpoints, head_seq, head_hash = verified
                last = checkpoints[-1] if checkpoints else None
                async with self._engine.begin() as conn:
                    await self._lock_heads(conn, [customer_id])
                    now, bad = await self._load_checkpoints(conn, customer_id)
                    if bad:
                        raise ChainBroken(bad[0][1])
                    if [c.note for c in now] != [c.note for c in checkpoints]:
                        if now and now[-1].seq >= head_seq:
                            return now[-1]
                        continue  # verify again, from the newer checkpoint
                    if await self._event_hash(conn, customer_id, head_seq) != head_hash:
                        raise ChainBroken(f"refusing to sign: event {head_seq} changed")
                    checkpoint = signer.sign(
                        customer_id,
                        head_seq,
                        head_hash,
                        max(self._clock(), last.signed_at) if last else self._clock(),
                        last.hash if last else Checkpoint.GENESIS,
                    )
                    await conn.execute(
                        self._t.checkpoints.insert().values(
                            customer_id=customer_id,
                            seq=checkpoint.seq,
                            signed_at=checkpoint.signed_at,
                            key_id=checkpoint.key_id,
                            note=checkpoint.note,
                        )
                    )
                    return checkpoint
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit checkpoint failed: {type(exc).__name__}") from exc
        raise AuditUnavailable(
            "audit checkpoint failed: other signers or prunes kept overtaking it"
        )

    async def _verify_up_to_head(
        self, customer_id: str, keys: CheckpointKeys
    ) -> tuple[list[Checkpoint], int, str] | Checkpoint | None:
        """Outside any lock: the checkpoints and the head as they are now, and the events
        between the newest checkpoint and that head verified.

        ``None`` for a customer with no events; the newest checkpoint when it is
        already at the head. Raises :class:`ChainBroken` when the chain does not verify,
        :class:`_Overtaken` when a prune deleted events it was reading (as in :meth:`verify`).
        """
        h = self._t.heads
        async with self._reader.connect() as conn:
            # The first kept seq before the checkpoints (see _verify_once), those
            # before the head: a checkpoint signed meanwhile is at or below the
            # head read next, never beyond it.
            first = await self._first_seq(conn, customer_id)
            checkpoints, bad = await self._load_checkpoints(conn, customer_id)
            if bad:
                raise ChainBroken(bad[0][1])
            head = (
                await conn.execute(select(h.c.seq, h.c.hash).where(h.c.customer_id == customer_id))
            ).first()
            if head is None or head.seq == 0:
                return None
            last = checkpoints[-1] if checkpoints else None
            if last is not None and last.seq == head.seq:
                return last
        verifier = ChainVerifier(customer_id, checkpoints, keys, head=(head.seq, head.hash))
        start = last.seq if last else 0
        await self._feed(verifier, customer_id, after_seq=start, upto=head.seq)
        result = verifier.finish()
        if not result.ok:
            await self._raise_if_pruned_since(customer_id, first)
            raise ChainBroken(f"refusing to sign: {result.problem}")
        return checkpoints, head.seq, head.hash

    async def _event_hash(self, conn: AsyncConnection, customer_id: str, seq: int) -> str | None:
        e = self._t.events
        return (
            await conn.execute(
                select(e.c.hash).where(e.c.customer_id == customer_id, e.c.seq == seq)
            )
        ).scalar()

    async def _first_seq(self, conn: AsyncConnection, customer_id: str) -> int | None:
        """The seq of the customer's oldest event still kept (``None``: none is)."""
        e = self._t.events
        first = (
            await conn.execute(select(func.min(e.c.seq)).where(e.c.customer_id == customer_id))
        ).scalar()
        return None if first is None else int(first)

    async def _raise_if_pruned_since(self, customer_id: str, first: int | None) -> None:
        """Raise :class:`_Overtaken` if the oldest kept event is no longer ``first``: a prune
        deleted events since (nothing else removes or adds an event below the head)."""
        async with self._reader.connect() as conn:
            if await self._first_seq(conn, customer_id) != first:
                raise _Overtaken

    async def prune(self, customer_id: str, before: datetime) -> int:
        """Delete events for retention, only up to a checkpoint signed before ``before``.

        The events to be deleted are verified first (once gone, nothing could
        show they had been altered). Returns how many events were deleted.

        As in :meth:`checkpoint`, the verification runs outside the write lock:
        the events up to a signed checkpoint never change again. Under the lock
        the checkpoint pruned to is checked to be still there and still match
        its event, then the events up to it are deleted (whatever another
        prune deleted meanwhile was among those verified). Another prune that
        deletes events while they are being verified starts the verification
        over, as in :meth:`verify`.
        """
        try:
            for _ in range(_OVERTAKEN_ATTEMPTS):
                with contextlib.suppress(_Overtaken):
                    return await self._prune_once(customer_id, before)
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit prune failed: {type(exc).__name__}") from exc
        raise AuditUnavailable("audit prune failed: other prunes kept deleting the events it read")

    async def _verified_anchor(
        self, customer_id: str, before: datetime, *, at_least: int | None = None
    ) -> tuple[int, Checkpoint] | None:
        """The checkpoint a prune may delete up to, with the events up to it verified.

        The newest checkpoint signed before ``before`` (:func:`prunable_up_to`);
        with ``at_least``, the oldest such checkpoint at or after that seq, so
        that the events deleted beyond it are as few as possible. Returns the
        first kept seq (read before the checkpoints, as in :meth:`_verify_once`)
        and the checkpoint, or ``None`` when no checkpoint qualifies or nothing
        is left to delete. Raises :class:`ChainBroken` when the events do not
        verify, :class:`_Overtaken` when another prune explains why.
        """
        async with self._reader.connect() as conn:
            first = await self._first_seq(conn, customer_id)
            checkpoints, bad = await self._load_checkpoints(conn, customer_id)
        if bad:
            raise ChainBroken(bad[0][1])
        upto = prunable_up_to(checkpoints, before)
        if upto is None or first is None or first > upto:
            return None
        if at_least is not None:
            if upto < at_least:
                return None
            upto = min(c.seq for c in checkpoints if at_least <= c.seq <= upto)
        verifier = ChainVerifier(customer_id, checkpoints, self._keys)
        await self._feed(verifier, customer_id, after_seq=first - 1, upto=upto)
        result = verifier.finish(complete=False)
        if not result.ok or result.head_seq != upto:
            await self._raise_if_pruned_since(customer_id, first)
            raise ChainBroken(f"refusing to prune: {result.problem or 'chain ends early'}")
        return first, next(c for c in checkpoints if c.seq == upto)

    async def _recheck_anchor(
        self, conn: AsyncConnection, customer_id: str, anchor: Checkpoint
    ) -> bool:
        """Under the customer's head lock: whether the events up to ``anchor`` are still
        there to delete (``False``: another prune deleted them first). Raises
        :class:`ChainBroken` when the checkpoint or the event at it changed."""
        now, bad = await self._load_checkpoints(conn, customer_id)
        if bad:
            raise ChainBroken(bad[0][1])
        if anchor.note not in {c.note for c in now}:
            raise ChainBroken(f"refusing to prune: the checkpoint at seq {anchor.seq} changed")
        at_anchor = await self._event_hash(conn, customer_id, anchor.seq)
        if at_anchor is None:
            still = await self._first_seq(conn, customer_id)
            if still is None or still > anchor.seq:
                return False
        if at_anchor != anchor.head_hash:
            raise ChainBroken(f"refusing to prune: event {anchor.seq} changed")
        return True

    async def _prune_once(self, customer_id: str, before: datetime) -> int:
        e, s = self._t.events, self._t.subjects
        found = await self._verified_anchor(customer_id, before)
        if found is None:
            return 0
        _first, anchor = found
        upto = anchor.seq
        async with self._engine.begin() as conn:
            await self._lock_heads(conn, [customer_id])
            if not await self._recheck_anchor(conn, customer_id, anchor):
                return 0
            await conn.execute(delete(s).where(s.c.customer_id == customer_id, s.c.seq <= upto))
            deleted = await conn.execute(
                delete(e).where(e.c.customer_id == customer_id, e.c.seq <= upto)
            )
            return int(deleted.rowcount)

    # -- retention by month (PostgreSQL) ---------------------------------------------------

    @property
    def partitions(self) -> AuditPartitions:
        """The tables' month partitions (:mod:`gateway.audit.partitions`)."""
        return self._partitions

    async def prune_partitions(self, before: datetime) -> list[Partition]:
        """Drop the month partitions wholly before ``before`` that every customer in them
        may prune past; returns the partitions dropped (events' and subjects').

        PostgreSQL only (nothing on SQLite). A month is dropped when, for every
        customer with events in it, a checkpoint signed before ``before`` lies
        at or after the customer's newest event there, and the events up to
        that checkpoint verify, as :meth:`prune` requires. Otherwise it is left
        whole, to :meth:`prune`'s row deletes.

        In one transaction, holding both tables (ACCESS EXCLUSIVE, waited for
        no longer than the partitions' ``lock_timeout``: a month not granted
        its lock is tried again next round) and the customers' head rows, each
        checkpoint is checked again as :meth:`prune` does, each customer's
        events after the month up to its checkpoint (at most one checkpoint
        interval) are deleted, then the month's partitions are dropped. So
        every customer's chain still starts right after a signed checkpoint,
        as after :meth:`prune`; a verification reading meanwhile sees its first
        kept seq move and starts over (:class:`_Overtaken`).
        """
        if not self._partitions.enabled:
            return []
        try:
            months: dict[tuple[datetime, datetime], dict[str, Partition]] = defaultdict(dict)
            for partition in await self._partitions.partitions():
                if partition.start and partition.end and partition.end <= before:
                    months[partition.start, partition.end][partition.parent] = partition
            dropped: list[Partition] = []
            for bounds, pair in sorted(months.items()):
                events = pair.get(self._t.events.name)
                subjects = pair.get(self._t.subjects.name)
                if events is None or subjects is None:
                    continue
                for _ in range(_OVERTAKEN_ATTEMPTS):
                    with contextlib.suppress(_Overtaken):
                        if await self._drop_month(events, subjects, bounds, before):
                            dropped += [events, subjects]
                        break
            return dropped
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(f"audit prune failed: {type(exc).__name__}") from exc

    async def _drop_month(
        self,
        events: Partition,
        subjects: Partition,
        bounds: tuple[datetime, datetime],
        before: datetime,
    ) -> bool:
        e, s = self._t.events, self._t.subjects
        start, end = bounds
        async with self._reader.connect() as conn:
            newest = await self._partitions.customers_in(conn, events.name)
        anchors: dict[str, Checkpoint] = {}
        for customer_id, seq in sorted(newest.items()):
            try:
                found = await self._verified_anchor(customer_id, before, at_least=seq)
            except ChainBroken:
                return False  # left to prune(), which reports it
            if found is None:
                return False
            anchors[customer_id] = found[1]
        outside = or_(e.c.occurred_at < start, e.c.occurred_at >= end)
        outside_subjects = or_(s.c.occurred_at < start, s.c.occurred_at >= end)
        try:
            async with self._engine.begin() as conn:
                await self._partitions.set_lock_timeout(conn)
                await self._partitions.lock_parents(conn)
                if await self._partitions.customers_in(conn, events.name) != newest:
                    return False  # an append landed in the month meanwhile: next round
                if anchors:
                    await self._lock_heads(conn, sorted(anchors))
                for customer_id, anchor in anchors.items():
                    if not await self._recheck_anchor(conn, customer_id, anchor):
                        return False
                    await conn.execute(
                        delete(s).where(
                            s.c.customer_id == customer_id, s.c.seq <= anchor.seq, outside_subjects
                        )
                    )
                    await conn.execute(
                        delete(e).where(
                            e.c.customer_id == customer_id, e.c.seq <= anchor.seq, outside
                        )
                    )
                await self._partitions.drop(conn, [events.name, subjects.name])
        except DBAPIError as exc:
            if AuditPartitions.busy(exc):
                return False
            raise
        return True


def _column_differs(name: str) -> str:
    return f"search column {name} differs from the hashed content"


def _subjects_differ(seq: int) -> str:
    return f"event {seq}: {_column_differs('subjects')}"
