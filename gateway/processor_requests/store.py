"""Filing, reading, verifying and claiming processor requests; every change audited.

Each state change and each step is a ``processor_request.step`` audit event
whose ``resource`` reads ``processor_request/<id>/<step>`` and whose subjects
are the request's keyed identifier hashes (privacy notice, "accountable").
Each is written into the audit outbox (:mod:`gateway.audit.outbox`) by the
transaction that makes its change (a step's completion mark, and the step's
own database change where it has one; see :meth:`RequestStore.complete_step`),
so no change stands without its event and no event is appended twice.

Claiming is safe with several replicas: on PostgreSQL the runner selects the
next due row ``FOR UPDATE SKIP LOCKED`` (two replicas never take the same
request, neither waits for the other); on SQLite the write transaction holds
the single write lock from its first statement. A claim holds a lease; a
replica that dies mid-request leaves a lapsed lease, and the next claim
resumes the request where its recorded steps end.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit import Action, AuditOutbox, EventDraft, Outcome, SubjectHasher
from gateway.errors import Conflict, InvalidParameter, NotFound
from gateway.observability import current_trace_id
from gateway.processor_requests.bundle import BundleFile
from gateway.processor_requests.machine import (
    OPEN,
    Jurisdiction,
    Kind,
    Status,
    due_at,
    due_dates,
    duplicate_key,
    is_overdue,
    transition,
)
from gateway.processor_requests.tables import ProcessorRequestTables
from gateway.storage.engine import writer
from gateway.subject_controls import hash_identifiers
from gateway.vault import KeyRing
from policies import Identifier, IdentifierKind

__all__ = [
    "DuplicateRequest",
    "Filing",
    "ProcessorRequest",
    "RequestStore",
    "StepChange",
    "StoredFile",
]

log = structlog.get_logger(__name__)

# A step's own database change, made in its completion transaction; returns its output.
StepChange = Callable[[AsyncConnection], Awaitable[Mapping[str, Any]]]

MAX_LIST = 200
DEFAULT_LEASE = timedelta(minutes=5)


class DuplicateRequest(Conflict):
    problem = "duplicate-processor-request"
    title = "An open request of this kind for this subject already exists"


@dataclass(frozen=True, slots=True, kw_only=True)
class Filing:
    """What a caller asks for, parsed and checked."""

    customer_id: str
    kind: Kind
    identifiers: tuple[Identifier, ...]
    purposes: tuple[str, ...] = ()
    lift: bool = False  # restriction/objection: lift the earlier one instead
    verified_by: str | None = None
    note: str | None = None
    jurisdiction: Jurisdiction | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorRequest:
    id: str
    customer_id: str
    kind: Kind
    status: Status
    jurisdiction: Jurisdiction | None
    purposes: tuple[str, ...]
    lift: bool
    note: str | None
    reason: str | None
    filed_by: str
    filed_class: str
    verified_by: str | None
    verified_at: datetime | None
    received_at: datetime
    due_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    subject_hashes: tuple[str, ...]
    attempts: int
    result: Mapping[str, Any] | None

    def public(self, now: datetime, *, with_result: bool = True) -> dict[str, Any]:
        """The API's shape: counts of identifiers, never one of them."""
        body: dict[str, Any] = {
            "id": self.id,
            "customer_id": self.customer_id,
            "kind": self.kind.value,
            "status": self.status.value,
            "jurisdiction": self.jurisdiction.value if self.jurisdiction else None,
            "due_at": self.due_at.isoformat(),
            "due_dates": {k: v.isoformat() for k, v in due_dates(self.received_at).items()},
            "overdue": is_overdue(self.status, self.due_at, now),
            "purposes": list(self.purposes),
            "lift": self.lift,
            "identifiers": len(self.subject_hashes),
            "received_at": self.received_at.isoformat(),
            "verified_by": self.verified_by,
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "reason": self.reason,
        }
        if with_result and self.result is not None:
            body["result"] = dict(self.result)
        return body


@dataclass(frozen=True, slots=True)
class StoredFile:
    name: str
    media_type: str
    sha256: str
    bytes: int


def _subject_row(request_id: str) -> str:
    """Vault associated data: a sealed subject opens only in its own request's row."""
    return f"linkgate/processor_request/{request_id}/subject"


def _bundle_row(request_id: str, name: str) -> str:
    return f"linkgate/processor_request/{request_id}/bundle/{name}"


class RequestStore:
    def __init__(
        self,
        engine: AsyncEngine,
        tables: ProcessorRequestTables,
        *,
        vault: KeyRing,
        hasher: SubjectHasher,
        outbox: AuditOutbox,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._t = tables
        self._vault = vault
        self._hasher = hasher
        self._outbox = outbox  # every change commits with its audit event
        self.clock = clock

    # -- filing and reading ------------------------------------------------------

    async def file(self, filing: Filing, *, actor_id: str, actor_class: str) -> ProcessorRequest:
        """Store a new request (``verified`` at once when ``verified_by`` is given).

        409 ``duplicate-processor-request`` while an open request has the same
        customer, kind and subject hash set.
        """
        if not filing.identifiers:
            raise InvalidParameter("subject names no identifier", parameter="subject")
        hashes = hash_identifiers(self._hasher, filing.customer_id, filing.identifiers)
        now = self.clock()
        request_id = f"prq_{uuid.uuid4().hex[:24]}"
        status = Status.VERIFIED if filing.verified_by else Status.RECEIVED
        clear = json.dumps([[i.kind.value, i.value] for i in filing.identifiers])
        key = duplicate_key(filing.customer_id, filing.kind, hashes)
        try:
            async with self._writer.begin() as conn:
                await conn.execute(
                    insert(self._t.requests).values(
                        id=request_id,
                        customer_id=filing.customer_id,
                        kind=filing.kind.value,
                        status=status.value,
                        jurisdiction=filing.jurisdiction.value if filing.jurisdiction else None,
                        purposes=list(filing.purposes),
                        lift=filing.lift,
                        note=filing.note,
                        reason=None,
                        filed_by=actor_id,
                        filed_class=actor_class,
                        verified_by=filing.verified_by,
                        verified_at=now if filing.verified_by else None,
                        received_at=now,
                        due_at=due_at(now, filing.jurisdiction),
                        updated_at=now,
                        finished_at=None,
                        open_key=key,
                        subject_hashes=list(hashes),
                        # Clear identifiers only while the request is open, sealed;
                        # dropped when it finishes (see tables.py).
                        sealed_subject=self._vault.seal(clear, row=_subject_row(request_id)),
                        lease_until=None,
                        attempts=0,
                        result=None,
                    )
                )
                # Committed with the request: a caller whose answer was lost, and who
                # files again, meets the duplicate check, so the request must not
                # exist without its events.
                steps = ["received", "verified"] if status is Status.VERIFIED else ["received"]
                entries = [
                    await self._outbox.add(
                        conn,
                        _step_event(
                            filing.customer_id, request_id, filing.purposes, hashes, step,
                            actor_id=actor_id, actor_class=actor_class,
                        ),
                    )
                    for step in steps
                ]  # fmt: skip
        except IntegrityError:
            existing = await self._open_with_key(key)
            raise DuplicateRequest(
                "an open request of this kind for this subject exists", existing=existing
            ) from None
        for entry in entries:
            await self._outbox.deliver(entry)
        request = await self._load(request_id)
        log.info("processor_request.filed", request_id=request_id, kind=filing.kind.value)
        return request

    async def _open_with_key(self, key: str) -> str | None:
        r = self._t.requests
        async with self._engine.connect() as conn:
            found = await conn.execute(select(r.c.id).where(r.c.open_key == key))
            return found.scalar_one_or_none()

    async def get(self, request_id: str, *, customers: Iterable[str] | None) -> ProcessorRequest:
        """The request; 404 when it does not exist *or* belongs to another customer.

        ``customers=None`` is the operator's view (the CLI): every customer.
        """
        request = await self._find(request_id)
        if request is None or (customers is not None and request.customer_id not in set(customers)):
            raise NotFound(
                "no such processor request",
                refused_customer=request.customer_id if request is not None else None,
            )
        return request

    async def search(
        self,
        customer_ids: Sequence[str],
        *,
        status: Status | None = None,
        overdue: bool | None = None,
        limit: int = 50,
    ) -> list[ProcessorRequest]:
        """Newest first; ``overdue`` keeps only open requests past their due date."""
        r = self._t.requests
        now = self.clock()
        query = select(r).where(r.c.customer_id.in_(list(customer_ids)))
        if status is not None:
            query = query.where(r.c.status == status.value)
        if overdue:
            query = query.where(r.c.status.in_([s.value for s in OPEN]), r.c.due_at < now)
        query = query.order_by(r.c.received_at.desc(), r.c.id.desc()).limit(
            max(1, min(limit, MAX_LIST))
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        found = [_from_row(row) for row in rows]
        if overdue is False:
            found = [p for p in found if not is_overdue(p.status, p.due_at, now)]
        return found

    async def _find(self, request_id: str) -> ProcessorRequest | None:
        r = self._t.requests
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(r).where(r.c.id == request_id))).mappings().first()
        return None if row is None else _from_row(row)

    async def _load(self, request_id: str) -> ProcessorRequest:
        request = await self._find(request_id)
        if request is None:
            raise NotFound("no such processor request")
        return request

    # -- state changes -----------------------------------------------------------

    async def verify(
        self, request: ProcessorRequest, verified_by: str, *, actor_id: str, actor_class: str
    ) -> ProcessorRequest:
        """received → verified, recording who attested the requester's identity."""
        transition(request.status, Status.VERIFIED)
        now = self.clock()
        r = self._t.requests
        async with self._writer.begin() as conn:
            changed = await conn.execute(
                update(r)
                .where(r.c.id == request.id, r.c.status == Status.RECEIVED.value)
                .values(
                    status=Status.VERIFIED.value,
                    verified_by=verified_by,
                    verified_at=now,
                    updated_at=now,
                )
            )
            if changed.rowcount == 0:
                raise Conflict("the request changed meanwhile; read it again")
            entry = await self._outbox.add(
                conn, self._step_draft(request, "verified", actor_id, actor_class, Outcome.ALLOWED)
            )
        await self._outbox.deliver(entry)
        return await self._load(request.id)

    async def claim(
        self, *, lease: timedelta = DEFAULT_LEASE, request_id: str | None = None
    ) -> ProcessorRequest | None:
        """Take the oldest verified request (or a running one whose lease lapsed)."""
        now = self.clock()
        r = self._t.requests
        due = or_(
            r.c.status == Status.VERIFIED.value,
            and_(r.c.status == Status.RUNNING.value, r.c.lease_until < now),
        )
        query = select(r.c.id, r.c.status).where(due)
        if request_id is not None:
            query = query.where(r.c.id == request_id)
        query = query.order_by(r.c.received_at, r.c.id).limit(1)
        query = query.with_for_update(skip_locked=True)
        async with self._writer.begin() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            transition(Status(row.status), Status.RUNNING)
            await conn.execute(
                update(r)
                .where(r.c.id == row.id)
                .values(status=Status.RUNNING.value, lease_until=now + lease, updated_at=now)
            )
        return await self._load(row.id)

    async def extend(self, request: ProcessorRequest, lease: timedelta = DEFAULT_LEASE) -> None:
        r = self._t.requests
        async with self._writer.begin() as conn:
            await conn.execute(
                update(r).where(r.c.id == request.id).values(lease_until=self.clock() + lease)
            )

    async def retry_later(self, request: ProcessorRequest, delay: timedelta) -> int:
        """A step failed for now: count the attempt, let the lease lapse after ``delay``."""
        r = self._t.requests
        async with self._writer.begin() as conn:
            await conn.execute(
                update(r)
                .where(r.c.id == request.id)
                .values(
                    attempts=r.c.attempts + 1,
                    lease_until=self.clock() + delay,
                    updated_at=self.clock(),
                )
            )
        return request.attempts + 1

    async def finish(
        self,
        request: ProcessorRequest,
        status: Status,
        *,
        result: Mapping[str, Any] | None = None,
        reason: str | None = None,
        actor_id: str,
        actor_class: str,
    ) -> ProcessorRequest:
        """completed | failed | rejected; the sealed identifiers are deleted here."""
        transition(request.status, status)
        now = self.clock()
        r = self._t.requests
        async with self._writer.begin() as conn:
            await conn.execute(
                update(r)
                .where(r.c.id == request.id)
                .values(
                    status=status.value,
                    result=dict(result) if result is not None else None,
                    reason=reason,
                    finished_at=now,
                    updated_at=now,
                    open_key=None,
                    sealed_subject=None,
                    lease_until=None,
                )
            )
            outcome = {Status.COMPLETED: Outcome.ALLOWED, Status.REJECTED: Outcome.DENIED}.get(
                status, Outcome.ERROR
            )
            entry = await self._outbox.add(
                conn, self._step_draft(request, status.value, actor_id, actor_class, outcome)
            )
        await self._outbox.deliver(entry)
        return await self._load(request.id)

    # -- steps, subject, files ---------------------------------------------------

    async def identifiers(self, request: ProcessorRequest) -> tuple[Identifier, ...]:
        """The clear identifiers of an open request, unsealed for the step that needs them."""
        r = self._t.requests
        async with self._engine.connect() as conn:
            sealed = (
                await conn.execute(select(r.c.sealed_subject).where(r.c.id == request.id))
            ).scalar_one_or_none()
        if sealed is None:
            raise Conflict("the request is finished; its identifiers were deleted")
        pairs = json.loads(self._vault.open(sealed, row=_subject_row(request.id)))
        return tuple(Identifier(IdentifierKind(kind), value) for kind, value in pairs)

    async def done_steps(self, request_id: str) -> dict[str, dict[str, Any]]:
        s = self._t.steps
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(s.c.step, s.c.output).where(s.c.request_id == request_id)
            )
            return {row.step: dict(row.output) for row in rows}

    async def complete_step(
        self,
        request: ProcessorRequest,
        step: str,
        change: StepChange,
        *,
        actor_id: str,
        actor_class: str | None,
    ) -> Mapping[str, Any] | None:
        """Record ``step`` as done, with its audit event, in one transaction with ``change``.

        ``change`` makes the step's own database change on the transaction's
        connection (or none) and returns the step's output. The change, the
        step's completion mark and its ``processor_request.step`` event (keyed
        subject hashes only; privacy notice, "accountable"), committed into the
        audit outbox, commit together or not at all; the event is appended to
        the chain after the commit (or by the outbox's drain if that fails).

        Returns the output, or ``None`` when the step was already recorded (a
        concurrent resume): then nothing of this call is kept, its change and
        event included, so a step's event is in the chain exactly once.
        """
        s = self._t.steps
        try:
            async with self._writer.begin() as conn:
                output = dict(await change(conn))
                await conn.execute(
                    insert(s).values(
                        request_id=request.id,
                        step=step,
                        completed_at=self.clock(),
                        output=output,
                    )
                )
                draft = self._step_draft(
                    request,
                    step,
                    actor_id,
                    actor_class,
                    Outcome.ALLOWED,
                    count=int(output.get("count", 0)),
                )
                entry = await self._outbox.add(conn, draft)
        except IntegrityError:
            return None
        await self._outbox.deliver(entry)
        return output

    @staticmethod
    def _step_draft(
        request: ProcessorRequest,
        step: str,
        actor_id: str,
        actor_class: str | None,
        outcome: Outcome,
        count: int = 0,
    ) -> EventDraft:
        return _step_event(
            request.customer_id, request.id, request.purposes, request.subject_hashes, step,
            actor_id=actor_id, actor_class=actor_class, outcome=outcome, count=count,
        )  # fmt: skip

    async def save_files(
        self, conn: AsyncConnection, request: ProcessorRequest, files: Sequence[BundleFile]
    ) -> None:
        """Store the request's downloads, sealed, in ``conn``'s transaction, in place of any
        it had: the transaction that records the step that made them (portability's
        ``fetch_and_bundle``), so a request never holds files of a step not recorded done."""
        b = self._t.bundles
        now = self.clock()
        await conn.execute(delete(b).where(b.c.request_id == request.id))
        if files:
            await conn.execute(
                insert(b),
                [
                    {
                        "request_id": request.id,
                        "name": file.name,
                        "media_type": file.media_type,
                        "sha256": file.sha256,
                        "bytes": len(file.content),
                        "content": self._vault.seal(
                            file.content.decode(), row=_bundle_row(request.id, file.name)
                        ),
                        "created_at": now,
                    }
                    for file in files
                ],
            )

    async def files(self, request_id: str) -> list[StoredFile]:
        b = self._t.bundles
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(b.c.name, b.c.media_type, b.c.sha256, b.c.bytes)
                .where(b.c.request_id == request_id)
                .order_by(b.c.name)
            )
            return [StoredFile(r.name, r.media_type, r.sha256, r.bytes) for r in rows]

    async def open_file(self, request_id: str, name: str) -> tuple[StoredFile, bytes]:
        b = self._t.bundles
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(b).where(b.c.request_id == request_id, b.c.name == name))
            ).first()
        if row is None:
            raise NotFound("the download is gone (past retention, or the subject was erased)")
        content = self._vault.open(row.content, row=_bundle_row(request_id, name)).encode()
        return StoredFile(row.name, row.media_type, row.sha256, row.bytes), content

    async def delete_files_about(
        self, conn: AsyncConnection, customer_id: str, hashes: Sequence[str]
    ) -> int:
        """Delete, in ``conn``'s transaction, every stored download of the customer whose
        subject shares a hash; how many."""
        r, b = self._t.requests, self._t.bundles
        wanted = set(hashes)
        rows = await conn.execute(
            select(r.c.id, r.c.subject_hashes).where(r.c.customer_id == customer_id)
        )
        ids = [row.id for row in rows if wanted & set(row.subject_hashes)]
        if not ids:
            return 0
        deleted = await conn.execute(delete(b).where(b.c.request_id.in_(ids)))
        return int(deleted.rowcount or 0)


def _from_row(row: Any) -> ProcessorRequest:
    return ProcessorRequest(
        id=row["id"],
        customer_id=row["customer_id"],
        kind=Kind(row["kind"]),
        status=Status(row["status"]),
        jurisdiction=Jurisdiction(row["jurisdiction"]) if row["jurisdiction"] else None,
        purposes=tuple(row["purposes"]),
        lift=bool(row["lift"]),
        note=row["note"],
        reason=row["reason"],
        filed_by=row["filed_by"],
        filed_class=row["filed_class"],
        verified_by=row["verified_by"],
        verified_at=row["verified_at"],
        received_at=row["received_at"],
        due_at=row["due_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        subject_hashes=tuple(row["subject_hashes"]),
        attempts=int(row["attempts"]),
        result=row["result"],
    )


def _step_event(
    customer_id: str,
    request_id: str,
    purposes: Sequence[str],
    subject_hashes: Sequence[str],
    step: str,
    *,
    actor_id: str,
    actor_class: str | None,
    outcome: Outcome = Outcome.ALLOWED,
    count: int = 0,
) -> EventDraft:
    return EventDraft(
        customer_id=customer_id,
        action=Action.PROCESSOR_REQUEST_STEP,
        outcome=outcome,
        problem_type=None if outcome is Outcome.ALLOWED else f"processor-request-{step}",
        caller_id=actor_id,
        caller_class=actor_class,
        resource=f"processor_request/{request_id}/{step}",
        purpose=" ".join(purposes) or None,
        record_count=count,
        subjects=tuple(subject_hashes),
        trace_id=current_trace_id(),
    )
