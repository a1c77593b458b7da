"""What each kind of request does, as lists of named, idempotent steps.

The runner (:mod:`~gateway.processor_requests.runner`) records each finished
step, with its audit event, in one transaction
(:meth:`~gateway.processor_requests.store.RequestStore.complete_step`); a
resumed request skips those. A step is one of three shapes:

* a *change* (:attr:`Step.change`): its database change is made on the
  connection of that same transaction, so the change, its event and its
  completion mark commit together or not at all (``lift_suppressions``,
  ``delete_stored_files``);
* a *prepared change* (:attr:`Step.prepare`): it reads on its own first and
  returns the database change to make in that transaction. ``fetch_and_bundle``
  walks every connection live (no write transaction may stay open across that
  walk) and builds the bundle, then saves its files on the completion's
  connection: the files, the completion mark and the event commit together, so
  a request never holds the files of a step that is not recorded done (the
  download routes offer files of completed requests only, and now there are
  no others to find). A run cut off before its completion leaves nothing; the
  resumed run fetches again;
* a *run* (:attr:`Step.run`): it acts on its own before the transaction,
  because it calls a provider (revocation at ``disconnect_account_holder`` and
  ``suppress_account_holder_connections``) or a store that commits its own
  change with its own audit event (suppressions, consents, a disconnect's
  status change with its ``connection.deleted`` event,
  :func:`~gateway.connect.disconnect.disconnect`), or because it only reads. A
  run that acted but was not yet recorded when the process died runs again on
  resume, so each is written to be harmless the second time (look before
  adding, skip a connection already revoked or suppressed, revoke a token
  twice: RFC 7009 §2.2); its step event is still recorded once, with the
  completion mark.

Step outputs are JSON kept with the request: counts, ids of gateway objects
and provider names, never an End User identifier.

Per kind (privacy notice, "Your privacy rights"; GDPR Art. 15-21; CCPA §1798.100-.125):

* ``access`` — what is stored about the subject (suppressions, consents, the
  connections it linked and the account claims kept for them,
  :mod:`~gateway.processor_requests.stored_claims`), then a report built from
  the audit log (:mod:`~gateway.processor_requests.report`).
* ``portability`` — a live, policy-filtered fetch through the customer's
  connections (purpose ``essential.legal_obligation``: "comply with
  applicable laws ... and legal requests"), walking child resources per parent
  (:mod:`~gateway.processor_requests.connection_walk`), bundled as JSON and CSV
  with a manifest, plus the account claims kept about the subject as an
  account holder (:mod:`~gateway.processor_requests.bundle`).
* ``erasure`` — suppress (every later fetch drops the subject), withdraw
  consents, revoke and delete a connection whose account holder is the
  subject, delete stored downloads about the subject. Audit events keep
  only keyed hashes, so the chain is left as it is and still verifies.
* ``restriction`` / ``objection`` — suppression for the named purposes (or
  all); with ``lift`` a later request removes it again.
* ``rectification`` — record the correction (the request's note), report the
  sources the customer must correct: the gateway stores no source records.
* ``consent_withdrawal`` — withdraw the consents for the named purposes (or
  all); where the subject is a connection's account holder, revoke its tokens
  at the provider and set the connection ``suppressed``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import AuditEvent, AuditStore, AuditWriter, SubjectHasher
from gateway.callers import Caller, CallerKind
from gateway.connect.disconnect import disconnect, revoke_at_provider
from gateway.connections import Connection, ConnectionStore, Status
from gateway.errors import InvalidParameter
from gateway.processor_requests.bundle import build_bundle, record_json
from gateway.processor_requests.connection_walk import ConnectionWalk
from gateway.processor_requests.machine import Kind
from gateway.processor_requests.report import access_report, sources_of
from gateway.processor_requests.store import ProcessorRequest, RequestStore, StepChange
from gateway.processor_requests.stored_claims import claims_export, claims_summary
from gateway.provider_registry import ProviderRegistry
from gateway.records import RecordsService
from gateway.storage.schema import subject_control_tables
from gateway.subject_controls import ConsentStore, SuppressionKind, SuppressionStore
from policies import CallerClass, InvalidIdentifier, email_identifier, provider_user_identifier

__all__ = ["PORTABILITY_PURPOSE", "Output", "Services", "Step", "result_of", "steps_for"]

log = structlog.get_logger(__name__)

# GDPR Art. 20 / CCPA §1798.130: answering the End User is a legal obligation
# of the customer; the notice's "Meet legal obligations" purpose covers it.
PORTABILITY_PURPOSE = "essential.legal_obligation"
MAX_EVENTS = 20_000  # audit events read for one report
_SEARCH_PAGE = 1000

Output = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """What the steps use; built from the runtime."""

    store: RequestStore
    records: RecordsService
    connections: ConnectionStore
    providers: ProviderRegistry
    oauth_http: httpx.AsyncClient
    audit_store: AuditStore
    audit: AuditWriter
    suppressions: SuppressionStore
    consents: ConsentStore
    hasher: SubjectHasher
    engine: Any  # AsyncEngine

    def actor(self, request: ProcessorRequest, purposes: Sequence[str] = ()) -> Caller:
        """The request acting for its filer: its id is the caller id in the audit log."""
        return Caller(
            id=request.id,
            kind=CallerKind.SERVICE,
            name=f"processor request {request.id}",
            caller_class=CallerClass(request.filed_class),
            customers=frozenset({request.customer_id}),
            purposes=frozenset(purposes),
            created_at=request.received_at,
        )


StepFn = Callable[[Services, ProcessorRequest, Mapping[str, Output]], Awaitable[Output]]
ChangeFn = Callable[
    [Services, ProcessorRequest, Mapping[str, Output], AsyncConnection], Awaitable[Output]
]
PrepareFn = Callable[[Services, ProcessorRequest, Mapping[str, Output]], Awaitable[StepChange]]


@dataclass(frozen=True, slots=True)
class Step:
    """A named step: exactly one of ``run`` (acts on its own, before its completion is
    recorded), ``change`` (acts on the connection of the transaction that records it) or
    ``prepare`` (reads on its own, then returns its change for that transaction)."""

    name: str
    run: StepFn | None = None
    change: ChangeFn | None = None
    prepare: PrepareFn | None = None

    def __post_init__(self) -> None:
        given = [f for f in (self.run, self.change, self.prepare) if f is not None]
        if len(given) != 1:
            raise ValueError(f"step {self.name}: give one of run, change or prepare")


# -- shared ------------------------------------------------------------------------


def _account_holder(services: Services, request: ProcessorRequest, c: Connection) -> bool:
    """Whether the subject is the person who linked the account (by keyed hash): by the
    account's id, its second id (``Connection.subject_alias``) or its email name."""
    candidates = [provider_user_identifier(c.provider, c.subject)]
    if c.subject_alias:
        candidates.append(provider_user_identifier(c.provider, c.subject_alias))
    with contextlib.suppress(InvalidIdentifier):
        candidates.append(email_identifier(c.account_name))
    hashes = {services.hasher.hash(c.customer_id, str(i)) for i in candidates}
    return bool(hashes & set(request.subject_hashes))


async def _account_holder_connections(
    services: Services, request: ProcessorRequest
) -> list[Connection]:
    """The customer's connections whose account holder is the subject."""
    return [
        c
        for c in await services.connections.list(request.customer_id)
        if _account_holder(services, request, c)
    ]


async def _kept_claims(
    services: Services, holder_of: Sequence[Connection]
) -> list[tuple[Connection, dict[str, Any]]]:
    """The identity claims kept for each of these connections (gateway.account_claims)."""
    kept = []
    for connection in holder_of:
        claims = await services.connections.claims.get(connection.id)
        if claims:
            kept.append((connection, claims))
    return kept


async def _events(services: Services, request: ProcessorRequest) -> list[AuditEvent]:
    """The customer's audit events about the subject, newest first, de-duplicated."""
    seen: dict[int, AuditEvent] = {}
    before = None
    while len(seen) < MAX_EVENTS:
        page = await services.audit_store.search(
            [request.customer_id],
            subject_hash=list(request.subject_hashes),
            before=before,
            limit=_SEARCH_PAGE,
        )
        for event in page.events:
            seen.setdefault(event.seq, event)
        if page.next_cursor is None:
            break
        before = page.next_cursor
    return list(seen.values())


async def _suppression_for(services: Services, request: ProcessorRequest) -> str | None:
    t = subject_control_tables.suppressions
    async with services.engine.connect() as conn:
        found = await conn.execute(
            select(t.c.id).where(
                t.c.customer_id == request.customer_id, t.c.reason == _reason(request)
            )
        )
        first: str | None = found.scalars().first()
        return first


def _reason(request: ProcessorRequest) -> str:
    return f"processor request {request.id} ({request.kind.value})"


# -- access ------------------------------------------------------------------------


async def stored_data(
    services: Services, request: ProcessorRequest, _done: Mapping[str, Output]
) -> Output:
    """What the gateway itself keeps about the subject, found by keyed hash; counts, no values."""
    t = subject_control_tables
    hashes = list(request.subject_hashes)
    async with services.engine.connect() as conn:
        suppressions = await conn.execute(
            select(func.count(func.distinct(t.suppression_subjects.c.suppression_id))).where(
                t.suppression_subjects.c.customer_id == request.customer_id,
                t.suppression_subjects.c.subject_hash.in_(hashes),
            )
        )
        consents = await conn.execute(
            select(func.count(func.distinct(t.consent_subjects.c.consent_id))).where(
                t.consent_subjects.c.customer_id == request.customer_id,
                t.consent_subjects.c.subject_hash.in_(hashes),
            )
        )
        n_suppressions, n_consents = suppressions.scalar_one(), consents.scalar_one()
    holder = await _account_holder_connections(services, request)
    now = services.store.clock()
    claims = []
    for connection, kept in await _kept_claims(services, holder):
        configured = services.providers.get(connection.provider)
        provider = configured.provider if configured is not None else None
        claims.append(claims_summary(connection, provider, kept, now))
    return {
        "suppressions": int(n_suppressions),
        "consents": int(n_consents),
        "connections_as_account_holder": len(holder),
        # Names, categories and counts only: like the rest of this part, no values.
        "account_claims": sum(c["count"] for c in claims),
        "account_claims_by_connection": claims,
        # The gateway caches no records: what it releases it fetches live.
        "cached_records": 0,
    }


async def audit_log_report(
    services: Services, request: ProcessorRequest, done: Mapping[str, Output]
) -> Output:
    events = await _events(services, request)
    return access_report(
        events, stored=done.get("stored_data", {}), searched_hashes=len(request.subject_hashes)
    )


# -- portability -------------------------------------------------------------------


async def fetch_and_bundle(
    services: Services, request: ProcessorRequest, _done: Mapping[str, Output]
) -> StepChange:
    """Walk every connection live, keep the subject's released records, add kept claims,
    bundle; the change returned saves the bundle's files in the step's completion."""
    caller = services.actor(request, [PORTABILITY_PURPOSE])
    wanted = set(request.subject_hashes)
    found: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for connection in await services.connections.list(request.customer_id):
        if connection.status not in (Status.ACTIVE, Status.REFRESHING):
            skipped.append({"connection_id": connection.id, "reason": connection.status.value})
            continue
        provider = services.providers.get(connection.provider)
        if provider is None:
            skipped.append({"connection_id": connection.id, "reason": "provider not configured"})
            continue
        walk = ConnectionWalk(
            records_service=services.records,
            connections=services.connections,
            caller=caller,
            purpose=PORTABILITY_PURPOSE,
            connection=connection,
            provider=provider.provider,
        )
        await walk.run()
        skipped.extend(walk.not_fetched)
        for record in walk.records:
            hashes = {
                services.hasher.hash(request.customer_id, str(i))
                for s in record.subjects
                for i in s.identifiers
            }
            if hashes & wanted:
                found.append(record_json(record))
    holder = await _account_holder_connections(services, request)
    claims = [claims_export(c, kept) for c, kept in await _kept_claims(services, holder)]
    bundle = build_bundle(
        found,
        request_id=request.id,
        customer_id=request.customer_id,
        purpose=PORTABILITY_PURPOSE,
        generated_at=services.store.clock(),
        sources=_sources(found),
        not_fetched=skipped,
        account_claims=claims,
    )
    output: Output = {"count": len(found), "manifest": bundle.manifest}

    async def save(conn: AsyncConnection) -> Output:
        await services.store.save_files(conn, request, bundle.files)
        return output

    return save


def _sources(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str, str], int] = {}
    for r in records:
        key = (r["provider"], r["connection_id"], r["resource"])
        counts[key] = counts.get(key, 0) + 1
    return [
        {"provider": p, "connection_id": c, "resource": res, "records": n}
        for (p, c, res), n in sorted(counts.items())
    ]


# -- suppression -------------------------------------------------------------------


async def suppress(
    services: Services, request: ProcessorRequest, _done: Mapping[str, Output]
) -> Output:
    """Add the request's suppression once (rule ``suppression`` drops the subject from now on)."""
    existing = await _suppression_for(services, request)
    if existing is None:
        purposes = request.purposes if SuppressionKind(request.kind.value).per_purpose else ()
        suppression = await services.suppressions.add(
            request.customer_id,
            await services.store.identifiers(request),
            kind=request.kind.value,
            reason=_reason(request),
            actor=services.actor(request),
            purposes=purposes,
        )
        existing = suppression.id
    return {"count": 1, "suppression_id": existing, "purposes": list(request.purposes) or ["*"]}


async def lift_suppressions(
    _services: Services,
    request: ProcessorRequest,
    _done: Mapping[str, Output],
    conn: AsyncConnection,
) -> Output:
    """Undo earlier restrictions (or objections) of the subject, for the named purposes or all.

    Notice (Restriction, Objection): the End User may ask to stop a use; the
    same right lets them ask to resume it. Only suppressions of the same kind
    are lifted: an erasure stays in force.
    """
    t = subject_control_tables
    hashes = list(request.subject_hashes)
    ids = (
        (
            await conn.execute(
                select(t.suppressions.c.id)
                .join(
                    t.suppression_subjects,
                    t.suppression_subjects.c.suppression_id == t.suppressions.c.id,
                )
                .where(
                    t.suppressions.c.customer_id == request.customer_id,
                    t.suppressions.c.kind == request.kind.value,
                    t.suppression_subjects.c.subject_hash.in_(hashes),
                )
                .distinct()
            )
        )
        .scalars()
        .all()
    )
    lifted = 0
    if ids:
        rows = delete(t.suppression_subjects).where(
            t.suppression_subjects.c.suppression_id.in_(ids)
        )
        if request.purposes:
            rows = rows.where(t.suppression_subjects.c.scope.in_(list(request.purposes)))
        lifted = int((await conn.execute(rows)).rowcount or 0)
        remaining = select(t.suppression_subjects.c.suppression_id).where(
            t.suppression_subjects.c.suppression_id.in_(ids)
        )
        await conn.execute(
            delete(t.suppressions).where(
                t.suppressions.c.id.in_(ids), t.suppressions.c.id.not_in(remaining)
            )
        )
    return {"count": lifted, "suppressions": len(ids), "scopes_lifted": lifted}


# -- consents and connections ------------------------------------------------------


async def withdraw_consents(
    services: Services, request: ProcessorRequest, _done: Mapping[str, Output]
) -> Output:
    """Withdraw active consents, for each named purpose or all (none left is fine)."""
    identifiers = await services.store.identifiers(request)
    actor = services.actor(request)
    withdrawn: set[str] = set()
    purposes: Sequence[str | None] = (
        request.purposes if request.kind is Kind.CONSENT_WITHDRAWAL and request.purposes else [None]
    )
    for purpose in purposes:
        result = await services.consents.withdraw(
            request.customer_id, identifiers, actor=actor, purpose=purpose
        )
        withdrawn.update(result.consent_ids)
    return {"count": len(withdrawn), "consents_withdrawn": sorted(withdrawn)}


async def disconnect_account_holder(
    services: Services, request: ProcessorRequest, _done: Mapping[str, Output]
) -> Output:
    """Revoke and delete every connection the subject linked as its account holder.

    A run, not a change: revocation is a call to the provider, which no database
    transaction can take back, so it happens before the step is recorded. A
    connection's ``revoked`` status and its ``connection.deleted`` event commit
    together (:func:`~gateway.connect.disconnect.disconnect`), so a resumed run
    skips a connection already revoked without losing or repeating its event,
    revokes again one the dead run did not get that far with (harmless, RFC
    7009 §2.2), and deletes what is left; the step's own event is written once,
    with its completion mark. A connection deleted by the run that died is no
    longer listed in the resumed run's output.
    """
    deleted: list[str] = []
    for connection in await _account_holder_connections(services, request):
        if connection.status is not Status.REVOKED:
            await disconnect(
                connection,
                actor_id=request.id,
                actor_class=request.filed_class,
                store=services.connections,
                registry=services.providers,
                http=services.oauth_http,
            )
        await services.connections.delete(connection.id)
        deleted.append(connection.id)
    return {"count": len(deleted), "connections_deleted": deleted}


async def suppress_account_holder_connections(
    services: Services, request: ProcessorRequest, _done: Mapping[str, Output]
) -> Output:
    """Revoke the account holder's tokens at the provider; the connection becomes ``suppressed``.

    A run, not a change: the revocation is a call to the provider. A resumed run
    skips a connection already ``suppressed`` and revokes again one whose status
    change the dead run did not reach (revoking a token twice is harmless,
    RFC 7009 §2.2); the step's event is written once, with its completion mark.
    """
    changed: list[str] = []
    for connection in await _account_holder_connections(services, request):
        if connection.status is Status.SUPPRESSED:
            changed.append(connection.id)
            continue
        # The tokens end either way, confirmed at the provider or not.
        await revoke_at_provider(
            connection,
            store=services.connections,
            registry=services.providers,
            http=services.oauth_http,
        )
        await services.connections.end_grant(
            connection.id, status=Status.SUPPRESSED, reason=f"consent withdrawn ({request.id})"
        )
        changed.append(connection.id)
    return {"count": len(changed), "connections_suppressed": changed}


async def delete_stored_files(
    services: Services,
    request: ProcessorRequest,
    _done: Mapping[str, Output],
    conn: AsyncConnection,
) -> Output:
    """Delete earlier downloads (portability bundles) about the subject."""
    deleted = await services.store.delete_files_about(
        conn, request.customer_id, request.subject_hashes
    )
    return {"count": deleted, "files_deleted": deleted}


# -- rectification -----------------------------------------------------------------


async def record_correction(
    services: Services, request: ProcessorRequest, _done: Mapping[str, Output]
) -> Output:
    """The correction is the request's note; the gateway keeps no copy it could correct."""
    if not request.note:
        raise InvalidParameter("a rectification needs a note describing the correction")
    return {"count": 1, "recorded": True, "applied_to_stored": 0}


async def find_sources(
    services: Services, request: ProcessorRequest, _done: Mapping[str, Output]
) -> Output:
    """The sources the customer must correct: where the subject's data was released from."""
    sources = sources_of(await _events(services, request))
    return {"count": len(sources), "sources_to_correct": sources}


# -- plans -------------------------------------------------------------------------

_PLANS: Mapping[Kind, tuple[Step, ...]] = {
    Kind.ACCESS: (Step("stored_data", stored_data), Step("audit_log_report", audit_log_report)),
    Kind.PORTABILITY: (Step("fetch_and_bundle", prepare=fetch_and_bundle),),
    Kind.ERASURE: (
        Step("suppress", suppress),
        Step("withdraw_consents", withdraw_consents),
        Step("disconnect_account_holder", disconnect_account_holder),
        Step("delete_stored_files", change=delete_stored_files),
    ),
    Kind.RESTRICTION: (Step("suppress", suppress),),
    Kind.OBJECTION: (Step("suppress", suppress),),
    Kind.RECTIFICATION: (
        Step("record_correction", record_correction),
        Step("find_sources", find_sources),
    ),
    Kind.CONSENT_WITHDRAWAL: (
        Step("withdraw_consents", withdraw_consents),
        Step("suppress_account_holder_connections", suppress_account_holder_connections),
    ),
}
_LIFT = (Step("lift_suppressions", change=lift_suppressions),)


def steps_for(request: ProcessorRequest) -> tuple[Step, ...]:
    if request.lift and request.kind in (Kind.RESTRICTION, Kind.OBJECTION):
        return _LIFT
    return _PLANS[request.kind]


def result_of(request: ProcessorRequest, done: Mapping[str, Output], now: datetime) -> Output:
    """The request's result: each step's output, and the kind's headline."""
    result: Output = {"completed_at": now.isoformat(), "steps": dict(done)}
    if request.kind is Kind.ACCESS:
        result["report"] = done.get("audit_log_report", {})
    if request.kind is Kind.PORTABILITY:
        result["manifest"] = done.get("fetch_and_bundle", {}).get("manifest", {})
    if request.kind is Kind.RECTIFICATION:
        result["sources_to_correct"] = done.get("find_sources", {}).get("sources_to_correct", [])
    return result
