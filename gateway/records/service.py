"""The records service: the one place where a page of End User data is released.

:meth:`RecordsService.read` is the whole path, in the order the design names it:
fetch → normalize → decide → audit → respond. Everything it calls is either
pure (the policy engine, the cursor, the provider's normalizers) or an edge
(the upstream client, the token refresher, the audit writer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from datetime import UTC, datetime
from typing import Any

from gateway import audit
from gateway.audit import Action, AuditWriter, EventDraft, Outcome, SubjectHasher
from gateway.callers import Caller
from gateway.connections import Connection, ConnectionStore
from gateway.cursor import Binding, CursorKey, PagePosition, same_origin
from gateway.errors import (
    AuditUnavailable,
    ConnectionNeedsReauth,
    Forbidden,
    InvalidParameter,
    LinkgateError,
    PurposeNotAllowed,
    UnknownResource,
    UpstreamError,
    UpstreamMalformed,
)
from gateway.observability import GatewayMetrics, current_trace_id
from gateway.provider_registry import ProviderRegistry
from gateway.refresh import TokenRefresher, require_usable
from gateway.subject_controls import PageControls, SubjectControls
from gateway.upstream import Unauthorized, UpstreamClients
from policies import (
    TENANT_TAG,
    AccessContext,
    Identifier,
    PageDecision,
    PolicyEngine,
    Record,
    value_type,
)
from providers.base import NormalizeContext, PageStyle, Provider, Resource, dig

DEFAULT_LIMIT = 25


class _PageView:
    """The page's consents, suppressions and subject hashes, as the policy engine asks.

    One per request, shared by its one :class:`AccessContext`: until ``read()``
    loads the page's controls nobody has consented and everybody is suppressed
    (fail closed), and a pseudonym is hashed afresh. One context for both
    ``check_access`` and ``decide_page`` spares a ``dataclasses.replace`` of
    it per request (about 25,000 instructions, counted under callgrind).
    """

    __slots__ = ("_customer_id", "_subjects", "controls")

    def __init__(self, customer_id: str, subjects: SubjectHasher) -> None:
        self._customer_id = customer_id
        self._subjects = subjects
        self.controls: PageControls | None = None

    def consented(self, identifier: Identifier) -> bool:
        controls = self.controls
        return controls is not None and controls.consented(identifier)

    def suppressed(self, identifier: Identifier, purpose: str) -> bool:
        controls = self.controls
        return controls is None or controls.suppressed(identifier, purpose)

    def pseudonymize(self, identifier: Identifier) -> str:
        """The identifier's keyed hash: from the page's hashes, else computed."""
        controls = self.controls
        digest = controls.hashes.get(identifier) if controls is not None else None
        if digest is not None:
            return digest
        return self._subjects.hash(self._customer_id, str(identifier))


# The request's own values are value types, not frozen dataclasses: immutable to
# the type checker, but built without a frozen ``__setattr__`` per field, as each
# is built once per request (see policies.value_type).


@value_type(kw_only=True)
class RecordsQuery:
    """One records request, as the route parsed it (strings still unvalidated)."""

    connection_id: str
    resource: str
    purpose: str
    limit: str | None = None
    cursor: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


@value_type
class RecordsPage:
    records: list[Record]
    decision: PageDecision
    next_cursor: str | None
    fetched_at: datetime
    trace_id: str


@value_type
class _Request:
    """A validated query."""

    provider: Provider
    resource: Resource
    params: dict[str, str]
    limit: int
    position: PagePosition | None
    binding: Binding


class RecordsService:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        providers: ProviderRegistry,
        upstream: UpstreamClients,
        refresher: TokenRefresher,
        policy: PolicyEngine,
        audit: AuditWriter,
        subjects: SubjectHasher,
        cursors: CursorKey,
        controls: SubjectControls,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        trace_summary: Callable[[str, int], Mapping[str, Any]] | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._connections = connections
        self._providers = providers
        self._upstream = upstream
        self._refresher = refresher
        self._policy = policy
        self._audit = audit
        self._subjects = subjects
        self._cursors = cursors
        self._controls = controls  # consents and suppressions, loaded once per page
        self._clock = clock
        self._trace_summary = trace_summary
        self._metrics = metrics or GatewayMetrics.disabled()

    async def read(self, caller: Caller, query: RecordsQuery) -> RecordsPage:
        """fetch → normalize → decide → audit → respond."""
        # 404 for another customer's connection too: its existence does not leak.
        connection = await self._connections.get(
            query.connection_id, customers=caller.customers, cached=True
        )
        request = self._validate(connection, query)
        view = _PageView(connection.customer_id, self._subjects)
        ctx = self._context(caller, connection, query.purpose, view)
        refusal = self._policy.check_access(ctx)
        if not refusal.allowed:
            error = self._refusal_error(refusal.rule_id, refusal.reason)
            await self._record(caller, connection, request, query.purpose, error=error)
            raise error
        try:
            require_usable(connection)
            body, fetched_at = await self._fetch(connection, request)
            records = self._normalize(connection, request, body, fetched_at)
            # A next link that leaves the provider's origin is a malformed answer,
            # refused (502) and recorded like every failure after the access check.
            next_cursor = self._next_cursor(request, body, len(records))
            controls = await self._load_controls(connection, query.purpose, records)
        except LinkgateError as error:
            await self._record(caller, connection, request, query.purpose, error=error)
            raise
        # The controls hashed every identifier of the page (under the customer's
        # key); pseudonyms and the audit event reuse those hashes, not hash again.
        hashes = controls.hashes
        view.controls = controls
        decision = self._policy.decide_page(records, ctx)
        trace_id = await self._record(
            caller,
            connection,
            request,
            query.purpose,
            page=decision,
            originals=records,
            hashes=hashes,
        )
        # Counted once the event is durable: these records are released.
        self._metrics.records(
            connection.provider, request.resource.name, len(decision.kept), decision.dropped
        )
        return RecordsPage(decision.kept, decision, next_cursor, fetched_at, trace_id)

    # -- validate ---------------------------------------------------------------

    def _validate(self, connection: Connection, query: RecordsQuery) -> _Request:
        provider = self._providers.require(connection.provider).provider
        resource = provider.resources.get(query.resource)
        if resource is None:
            raise UnknownResource(
                f"{provider.name} has no resource {query.resource!r}",
                resources=sorted(provider.resources),
            )
        params: dict[str, str] = {}
        declared = {param.name: param for param in resource.params}
        unknown = sorted(set(query.params) - set(declared))
        if unknown:
            raise InvalidParameter(
                f"{resource.name} takes no parameter {unknown[0]!r}", parameter=unknown[0]
            )
        for name, param in declared.items():
            value = query.params.get(name)
            if value is None:
                if param.required:
                    raise InvalidParameter(f"{name} is required", parameter=name)
                continue
            if not param.accepts(value):
                raise InvalidParameter(f"{name} is not a valid value", parameter=name)
            params[name] = value
        limit = _limit(query.limit, resource)
        binding = Binding(connection.id, resource.name, params)
        position = self._cursors.open(query.cursor, binding) if query.cursor else None
        return _Request(provider, resource, params, limit, position, binding)

    def _subject_hash(
        self, customer_id: str, known: Mapping[Identifier, str], identifier: Identifier
    ) -> str:
        """The identifier's keyed hash: from the page's ``known`` hashes, else computed."""
        digest = known.get(identifier)
        return digest if digest is not None else self._subjects.hash(customer_id, str(identifier))

    def _context(
        self, caller: Caller, connection: Connection, purpose: str, view: _PageView
    ) -> AccessContext:
        return AccessContext(
            service_id=caller.id,
            caller_class=caller.caller_class,
            granted_purposes=caller.purposes,
            entitled_customers=caller.customers,
            connection_customer_id=connection.customer_id,
            purpose=purpose,
            now=self._clock(),
            # Fail closed until read() fills the view in (_load_controls).
            consented=view.consented,
            suppressed=view.suppressed,
            pseudonymize=view.pseudonymize,
        )

    async def _load_controls(
        self, connection: Connection, purpose: str, records: list[Record]
    ) -> PageControls:
        """Consents and suppressions of every identifier on the page, in one read.

        Suppressions on every fetch (rule ``suppression``); consents only when
        the purpose needs them (rule ``purpose``: "we do not use the data ...
        for marketing without your consent").
        """
        rule = self._policy.policy.rule_for(purpose)
        return await self._controls.for_records(
            connection.customer_id,
            purpose,
            records,
            consent_required=rule is not None and rule.requires_consent,
        )

    @staticmethod
    def _refusal_error(rule_id: str | None, reason: str) -> LinkgateError:
        if rule_id == TENANT_TAG:
            return Forbidden(reason, rule_id=rule_id)
        return PurposeNotAllowed(reason, rule_id=rule_id)

    # -- fetch ------------------------------------------------------------------

    async def _fetch(
        self, connection: Connection, request: _Request
    ) -> tuple[Mapping[str, Any], datetime]:
        if request.resource.from_kept_claims:
            # No API to call (Apple): the page is the identity claims kept when the
            # account was linked (providers.base, kept_claims); judged like any page.
            return await self._kept_claims(connection), self._clock()
        url, query = self._page_request(connection, request)
        client = self._upstream[connection.provider]
        connection = await self._refresher.fresh(connection)
        try:
            body = await client.get_json(
                url, params=query, bearer=await self._bearer(connection, request)
            )
        except Unauthorized:
            # RFC 6750 §3.1 invalid_token: refresh once (single-flight) and try again.
            connection = await self._refresher.refresh(connection)
            try:
                body = await client.get_json(
                    url, params=query, bearer=await self._bearer(connection, request)
                )
            except Unauthorized:
                raise UpstreamError(
                    f"{connection.provider} refused a freshly refreshed token"
                ) from None
        return body, self._clock()

    async def _kept_claims(self, connection: Connection) -> Mapping[str, Any]:
        claims = await self._connections.claims.get(connection.id)
        if claims is None:  # linked before claims were kept: only a new link has them
            raise ConnectionNeedsReauth(
                "the account must be linked again for its profile", connection_id=connection.id
            )
        return claims

    async def _bearer(self, connection: Connection, request: _Request) -> str:
        """The user's access token, or the scoped token of the object the resource names
        (a Facebook Page's own token for Page resources; providers.base, scoped_tokens)."""
        param = request.resource.scoped_token_param
        if not param:
            return self._refresher.access_token(connection)
        token = await self._connections.scoped.get(connection.id, request.params[param])
        if token is None:
            raise InvalidParameter(
                f"the connection grants no access to this {param}", parameter=param
            )
        return token

    def _page_request(
        self, connection: Connection, request: _Request
    ) -> tuple[str, dict[str, str]]:
        base = request.provider.oauth.endpoints.api_base_url.rstrip("/")
        position = request.position
        pagination = request.resource.pagination
        if position is not None and position.link is not None:
            # The link came from the provider and was signed by us; check the origin
            # anyway so no cursor can ever point the gateway (and its bearer token) elsewhere.
            if not same_origin(position.link, base):
                raise UpstreamMalformed("the provider's next link leaves its API origin")
            return position.link, {}
        path = request.resource.path.format(account_id=connection.subject, **request.params)
        query = dict(request.resource.query)
        if pagination.limit_param:
            query[pagination.limit_param] = str(request.limit)
        if position is not None and position.token is not None:
            query[pagination.token_param] = position.token
        if position is not None and position.offset is not None:
            query[pagination.token_param] = str(position.offset)
        return base + path, query

    # -- normalize --------------------------------------------------------------

    @staticmethod
    def _normalize(
        connection: Connection,
        request: _Request,
        body: Mapping[str, Any],
        fetched_at: datetime,
    ) -> list[Record]:
        resource = request.resource
        items: Any = (
            resource.extract(body)
            if resource.extract is not None
            else [body]
            if not resource.items_path
            else dig(body, resource.items_path)
        )
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            # Never a partial, unfiltered page: the whole answer is refused.
            raise UpstreamMalformed(f"{connection.provider} answered without a list of items")
        ctx = NormalizeContext(
            customer_id=connection.customer_id,
            connection_id=connection.id,
            provider=connection.provider,
            resource=resource.name,
            fetched_at=fetched_at,
            account_id=connection.subject,
            scope_id=request.params.get(resource.scoped_token_param, ""),
            # Every record is judged by decide_page: one it drops by visibility
            # alone is built without the content nobody reads.
            releasable=PolicyEngine.RELEASABLE_VISIBILITIES,
        )
        try:
            return [resource.normalize(item, ctx) for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamMalformed(
                f"{connection.provider} answered with an item the gateway cannot read "
                f"({type(exc).__name__})"
            ) from None

    def _next_cursor(self, request: _Request, body: Mapping[str, Any], count: int) -> str | None:
        pagination = request.resource.pagination
        style = pagination.style
        if style is PageStyle.NONE:
            return None
        if style is PageStyle.OFFSET:
            if count < request.limit:
                return None
            start = request.position.offset if request.position and request.position.offset else 0
            return self._cursors.sign(request.binding, PagePosition(offset=start + count))
        found = dig(body, pagination.token_path)
        if not isinstance(found, str) or not found:
            return None
        if style is PageStyle.NEXT_LINK:
            base = request.provider.oauth.endpoints.api_base_url
            if not same_origin(found, base):
                raise UpstreamMalformed("the provider's next link leaves its API origin")
            return self._cursors.sign(request.binding, PagePosition(link=found))
        return self._cursors.sign(request.binding, PagePosition(token=found))

    # -- audit ------------------------------------------------------------------

    async def _record(
        self,
        caller: Caller,
        connection: Connection,
        request: _Request,
        purpose: str,
        *,
        page: PageDecision | None = None,
        error: LinkgateError | None = None,
        originals: list[Record] | None = None,
        hashes: Mapping[Identifier, str] | None = None,
    ) -> str:
        """Append the access to the audit log; returns once durable (privacy notice, "accountable").

        Raises ``AuditUnavailable`` otherwise, and then nothing is released.
        """
        trace_id = current_trace_id()
        customer_id = connection.customer_id
        subjects: set[str] = set()
        if page is not None:
            # Hash the subjects as fetched, not as released: a pseudonymizing purpose
            # releases keyed pseudonyms, but the auditor searches by the person's
            # real identifier (privacy notice, "accountable").
            kept = {record.id for record in page.kept}
            touched = [r for r in originals if r.id in kept] if originals else page.kept
            known = hashes or {}
            for record in touched:
                for subject in record.subjects:
                    for identifier in subject.identifiers:
                        subjects.add(self._subject_hash(customer_id, known, identifier))
        denied = isinstance(error, Forbidden)
        draft = EventDraft(
            customer_id=customer_id,
            action=Action.RECORDS_READ,
            outcome=(
                Outcome.ALLOWED if error is None else (Outcome.DENIED if denied else Outcome.ERROR)
            ),
            problem_type=error.type_uri if error is not None else None,
            caller_id=caller.id,
            caller_class=caller.caller_class.value,
            connection_id=connection.id,
            provider=connection.provider,
            resource=request.resource.name,
            purpose=purpose,
            record_count=len(page.kept) if page is not None else 0,
            categories=tuple(page.categories_released) if page is not None else (),
            dropped=page.dropped if page is not None else {},
            subjects=tuple(subjects),
            trace_id=trace_id,
            trace_summary=(
                self._trace_summary(trace_id, error.status if error is not None else 200)
                if self._trace_summary
                else {}
            ),
        )
        try:
            await self._audit.record(draft)
        except audit.AuditUnavailable as exc:
            # Fail closed (privacy notice, "accountable"): no event, no data.
            raise AuditUnavailable(str(exc)) from None
        return trace_id


def _limit(raw: str | None, resource: Resource) -> int:
    minimum, maximum = resource.pagination.min_limit, resource.pagination.max_limit
    if raw is None:
        return max(minimum, min(DEFAULT_LIMIT, maximum))
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise InvalidParameter(f"limit must be between {minimum} and {maximum}", parameter="limit")
    return int(raw)
