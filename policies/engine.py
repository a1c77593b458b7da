"""The policy engine: the notice's rules applied to requests and records.

Pure: it reads no clock, does no I/O and keeps no state beyond caches: what
a purpose and a caller class imply (bounded by the known Fides data uses) and
the per-request work for the most recent contexts it saw. The order in which the rules
run is the order in which a reviewer should read them:

Request (``check_access``, and again first thing in ``decide``):

1. ``tenant-tag``  the caller is entitled to the connection owner's data;
2. ``no-sale``     the purpose is not a sale or rental of data;
3. ``purpose``     the purpose is known, granted to the caller and allowed by the notice.

Record (``decide``):

4. ``tenant-tag``        the record is tagged with the connection owner;
5. ``public-or-direct``  it is public or directly provided;
6. ``under-16``          no subject is known to be under 16, no field is children's data;
7. ``suppression``       no subject is suppressed for this purpose;
8. ``purpose``           marketing: every subject consented.

Fields and identifiers of a kept record:

9.  ``sms-phone``  SMS-consent phone numbers withheld from marketing and non-internal callers;
10. ``purpose``    values of a category the purpose may not receive are withheld;
                   analytics sees keyed pseudonyms instead of identifiers.

The first rule that drops a record is the one named.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from policies.context import AccessContext
from policies.decision import Decision, Outcome, PageDecision, RedactedField, Redaction
from policies.identifiers import InvalidIdentifier, normalize_phone
from policies.policy_data import Policy, PurposeRule
from policies.rules import (
    no_sale,
    public_or_direct,
    purpose,
    sms_phone,
    suppression,
    tenant_tag,
    under_16,
)
from policies.vocabulary import (
    CallerClass,
    Field,
    Identifier,
    IdentifierKind,
    Record,
    Subject,
    Visibility,
)


def _drop(rule_id: str, reason: str) -> Decision:
    return Decision(Outcome.DROP, rule_id=rule_id, reason=reason)


# Drops carry no record, so one instance per rule and reason serves every record.
_PROCEED = Decision(Outcome.KEEP, reason="the request may proceed")
_NOT_ENTITLED = _drop(tenant_tag.RULE_ID, tenant_tag.NOT_ENTITLED)
_OTHER_CUSTOMER = _drop(tenant_tag.RULE_ID, tenant_tag.OTHER_CUSTOMER)
_SALE = _drop(no_sale.RULE_ID, no_sale.REASON)
_UNKNOWN_PURPOSE = _drop(purpose.RULE_ID, purpose.UNKNOWN)
_NOT_GRANTED = _drop(purpose.RULE_ID, purpose.NOT_GRANTED)
_NOT_ALLOWED = _drop(purpose.RULE_ID, purpose.NOT_ALLOWED)
_NO_CONSENT = _drop(purpose.RULE_ID, purpose.NO_CONSENT)
_NOT_RELEASABLE = _drop(public_or_direct.RULE_ID, public_or_direct.REASON)
_CHILD = _drop(under_16.RULE_ID, under_16.REASON)
_SUPPRESSED = _drop(suppression.RULE_ID, suppression.REASON)

_KEPT_REASON = "released"
# A field verdict naming children's data (``_PurposePlan.field_verdicts``).
_CHILDRENS_DATA = under_16.RULE_ID
# Why a value was withheld, by the rule that withheld it.
_WITHHELD_REASONS = {sms_phone.RULE_ID: sms_phone.REASON, purpose.RULE_ID: purpose.CATEGORY}


@dataclass(slots=True)
class _PurposePlan:
    """What follows from the declared purpose and the caller's class alone.

    The same for every request that declares them, so the engine works it out
    once per pair (``PolicyEngine._purpose_plan``) rather than once per request.
    """

    is_sale: bool
    unknown: bool
    allowed: bool
    rule: PurposeRule | None  # None unless the policy allows the purpose
    withhold_sms: bool
    # Whether some identifier kind may not be released, so subjects need a look.
    check_identifiers: bool = False
    category_allowed: dict[str, bool] = field(default_factory=dict)
    # Per data category, what the record and field rules make of a value of it:
    # "" released, ``under-16`` children's data (the record is dropped), ``purpose``
    # withheld. The hot loop reads the dict and calls field_verdict() on a miss.
    field_verdicts: dict[str, str] = field(default_factory=dict)

    def may_receive(self, category: str) -> bool:
        allowed = self.category_allowed.get(category)
        if allowed is None:
            allowed = self.rule is not None and self.rule.may_receive(category)
            if len(self.category_allowed) < _MAX_CATEGORIES:
                self.category_allowed[category] = allowed
        return allowed

    def field_verdict(self, category: str) -> str:
        verdict = self.field_verdicts.get(category)
        if verdict is None:
            if under_16.is_childrens_category(category):
                verdict = under_16.RULE_ID
            else:
                verdict = "" if self.may_receive(category) else purpose.RULE_ID
            if len(self.field_verdicts) < _MAX_CATEGORIES:
                self.field_verdicts[category] = verdict
        return verdict


# Categories come from the providers' normalizers (a few dozen Fides keys); the
# bound only keeps a memo of them from growing if that ever changes.
_MAX_CATEGORIES = 512
_CALLER_CLASSES = frozenset(CallerClass)
# Requests in flight whose plan is kept between their check_access and
# decide_page: above the gateway's usual concurrency per replica.
_RECENT_PLANS = 64


@dataclass(slots=True)
class _Plan:
    """Everything about a request the record rules need, worked out once."""

    refusal: Decision | None
    customer_id: str
    purpose: str
    rule: PurposeRule | None
    child_cutoff: date
    withhold_sms: bool
    check_identifiers: bool
    may_receive: Callable[[str], bool]
    field_verdicts: dict[str, str]  # shared with the purpose plan: see _PurposePlan
    field_verdict: Callable[[str], str]
    consented: Callable[[Identifier], bool]
    suppressed: Callable[[Identifier, str], bool]
    pseudonymize: Callable[[Identifier], str]
    pseudonyms: dict[Identifier, Identifier] = field(default_factory=dict)

    def pseudonym(self, identifier: Identifier) -> Identifier:
        known = self.pseudonyms.get(identifier)
        if known is None:
            known = Identifier(IdentifierKind.PSEUDONYM, self.pseudonymize(identifier))
            self.pseudonyms[identifier] = known
        return known


class PolicyEngine:
    """Judges requests and records against one validated :class:`Policy`."""

    #: The only visibilities a record may have and be released. Rule
    #: ``public-or-direct`` drops any other whatever the record holds, and the only
    #: rule before it, ``tenant-tag``, reads nothing but the record's tenancy; so a
    #: reader that judges every record it builds may leave such a record's fields
    #: and subjects out (``providers.base.NormalizeContext.releasable``) and get the
    #: same decision, with the same rule named.
    RELEASABLE_VISIBILITIES: frozenset[Visibility] = public_or_direct.RELEASABLE

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        # Plans of the most recent contexts, by identity. More than one: requests
        # interleave between check_access and decide_page (the fetch awaits), and a
        # single "last" entry made most pages prepare their plan twice. Each entry
        # holds its context, so no other context can take its id while cached.
        self._recent: OrderedDict[int, tuple[AccessContext, _Plan]] = OrderedDict()
        self._purpose_plans: dict[tuple[str, str], _PurposePlan] = {}

    def check_access(self, ctx: AccessContext) -> Decision:
        """May this request go to the provider at all? (tenant-tag, no-sale, purpose)"""
        return self._plan(ctx).refusal or _PROCEED

    def check_grant(self, purposes: Iterable[str]) -> Decision:
        """May a service be granted these purposes? Refuses sales and disallowed purposes."""
        for key in sorted(purposes):
            if self.policy.taxonomy.purpose_problem(key) is not None:
                return _drop(purpose.RULE_ID, f"{purpose.UNKNOWN}: {key}")
            if no_sale.is_sale(key, self.policy.no_sale):
                return _drop(no_sale.RULE_ID, f"{no_sale.REASON}: {key}")
            if not self.policy.allows(key):
                return _drop(purpose.RULE_ID, f"{purpose.NOT_ALLOWED}: {key}")
        return _PROCEED

    def decide(self, record: Record, ctx: AccessContext) -> Decision:
        """Keep, redact or drop one record; the decision carries what may be released."""
        withheld: list[tuple[str, str]] = []
        released = self._release(record, self._plan(ctx), withheld)
        if isinstance(released, Decision):
            return released
        if not withheld:
            return Decision(Outcome.KEEP, reason=_KEPT_REASON, record=released)
        return Decision(
            Outcome.REDACT,
            reason=f"{len(withheld)} value(s) withheld",
            redactions=tuple(
                Redaction(where, rule_id, _WITHHELD_REASONS[rule_id]) for where, rule_id in withheld
            ),
            record=released,
        )

    def decide_page(self, records: Iterable[Record], ctx: AccessContext) -> PageDecision:
        """Judge a page and sum it up for the response and the audit log."""
        plan = self._plan(ctx)
        release = self._release
        page = PageDecision()
        kept = page.kept
        dropped = page.dropped
        redacted = page.redacted
        categories = page.categories_released
        identifier_categories = purpose.IDENTIFIER_CATEGORIES
        unclassified = purpose.UNCLASSIFIED_IDENTIFIER
        # No Decision per record: a drop is counted by its rule, a kept record's
        # withheld values are located in the page straight from (where, rule id).
        withheld: list[tuple[str, str]] = []
        for record in records:
            released = release(record, plan, withheld)
            if isinstance(released, Decision):
                rule_id = released.rule_id or purpose.RULE_ID
                dropped[rule_id] = dropped.get(rule_id, 0) + 1
                withheld.clear()  # values withheld before a later rule dropped the record
                continue
            kept.append(released)
            if withheld:
                record_id = released.id
                for where, rule_id in withheld:
                    redacted.append(RedactedField(record_id, where, rule_id))
                withheld.clear()
            for value in released.data.values():
                categories.add(value.category)
            for subject in released.subjects:
                for identifier in subject.identifiers:
                    categories.add(identifier_categories.get(identifier.kind, unclassified))
        return page

    # -- request ----------------------------------------------------------------

    def _plan(self, ctx: AccessContext) -> _Plan:
        recent = self._recent
        entry = recent.get(id(ctx))
        if entry is not None and entry[0] is ctx:
            return entry[1]
        plan = self._prepare(ctx)
        recent[id(ctx)] = (ctx, plan)
        if len(recent) > _RECENT_PLANS:
            recent.popitem(last=False)
        return plan

    def _prepare(self, ctx: AccessContext) -> _Plan:
        shared = self._purpose_plan(ctx.purpose, ctx.caller_class)
        # Positional, in the order _Plan declares its fields: a class called with
        # keywords goes through a dict of them in 3.11, and this runs per request.
        return _Plan(
            self._refusal(ctx, shared),
            ctx.connection_customer_id,
            ctx.purpose,
            shared.rule,
            under_16.born_after_is_child(ctx.now),
            shared.withhold_sms,
            shared.check_identifiers,
            shared.may_receive,
            shared.field_verdicts,
            shared.field_verdict,
            ctx.consented,
            ctx.suppressed,
            ctx.pseudonymize,
        )

    def _purpose_plan(self, purpose_key: str, caller_class: object) -> _PurposePlan:
        key = (purpose_key, str(caller_class))
        plan = self._purpose_plans.get(key)
        if plan is not None:
            return plan
        policy = self.policy
        rule = policy.rule_for(purpose_key)
        unknown = policy.taxonomy.purpose_problem(purpose_key) is not None
        plan = _PurposePlan(
            is_sale=no_sale.is_sale(purpose_key, policy.no_sale),
            unknown=unknown,
            allowed=policy.allows(purpose_key),
            rule=rule if rule is not None and rule.allowed else None,
            withhold_sms=sms_phone.withheld(purpose_key, caller_class),
        )
        pseudonymizes = plan.rule is not None and plan.rule.pseudonymize
        kinds = [IdentifierKind.PSEUDONYM] if pseudonymizes else list(IdentifierKind)
        plan.check_identifiers = not all(
            plan.may_receive(purpose.identifier_category(Identifier(kind, ""))) for kind in kinds
        )
        # Only known Fides data uses and caller classes are kept: at most a few
        # hundred pairs, however many purposes callers make up.
        if not unknown and caller_class in _CALLER_CLASSES:
            self._purpose_plans[key] = plan
        return plan

    @staticmethod
    def _refusal(ctx: AccessContext, shared: _PurposePlan) -> Decision | None:
        if not tenant_tag.caller_entitled(ctx.connection_customer_id, ctx.entitled_customers):
            return _NOT_ENTITLED
        if shared.is_sale:
            return _SALE
        if shared.unknown:
            return _UNKNOWN_PURPOSE
        if not purpose.granted(ctx.purpose, ctx.granted_purposes):
            return _NOT_GRANTED
        if not shared.allowed:
            return _NOT_ALLOWED
        return None

    # -- record -----------------------------------------------------------------

    def _release(
        self, record: Record, plan: _Plan, withheld: list[tuple[str, str]]
    ) -> Record | Decision:
        """What of ``record`` may leave: the drop, or the record itself or its redacted copy.

        Each value withheld from a kept record is appended to ``withheld`` as
        (``field`` or ``subjects[i].<kind>``, rule id), in the record's order.
        """
        if plan.refusal is not None:
            return plan.refusal
        if not tenant_tag.owned_by(record, plan.customer_id):
            return _OTHER_CUSTOMER
        if not public_or_direct.releasable(record.visibility):
            return _NOT_RELEASABLE
        subjects = record.subjects
        if under_16.any_child(subjects, plan.child_cutoff):
            return _CHILD
        # One walk over the fields answers both under-16 (children's data drops the
        # record) and the field rules (sms-phone, purpose), each category's verdict
        # read from the plan. Values it withholds before a later rule drops the
        # record are the caller's to discard.
        data = record.data
        verdicts = plan.field_verdicts
        withhold_sms = plan.withhold_sms
        kept: dict[str, Field] = {}
        for name, value in data.items():
            verdict = verdicts.get(value.category)
            if verdict is None:
                verdict = plan.field_verdict(value.category)
            if verdict == _CHILDRENS_DATA:
                return _CHILD
            if value.sms_consent and withhold_sms:
                withheld.append((name, sms_phone.RULE_ID))
            elif verdict:
                withheld.append((name, purpose.RULE_ID))
            else:
                kept[name] = value
        if suppression.any_suppressed(subjects, plan.purpose, plan.suppressed):
            return _SUPPRESSED
        rule = plan.rule
        if rule is None:  # unreachable: such a plan carries a refusal; fail closed anyway
            return _NOT_ALLOWED
        if rule.requires_consent and not purpose.all_consented(subjects, plan.consented):
            return _NO_CONSENT

        sms_numbers = _sms_numbers(data) if withhold_sms else ()
        new_subjects = subjects
        if rule.pseudonymize or plan.check_identifiers or sms_numbers:
            new_subjects = self._released_subjects(subjects, plan, sms_numbers, withheld)
        if new_subjects is subjects and len(kept) == len(data):
            return record
        return _released(record, kept, new_subjects)

    @staticmethod
    def _released_subjects(
        subjects: tuple[Subject, ...],
        plan: _Plan,
        sms_numbers: tuple[str, ...],
        withheld: list[tuple[str, str]],
    ) -> tuple[Subject, ...]:
        pseudonymize = plan.rule is not None and plan.rule.pseudonymize
        released: list[Subject] = []
        for index, subject in enumerate(subjects):
            identifiers: list[Identifier] = []
            for identifier in subject.identifiers:
                where = f"subjects[{index}].{identifier.kind}"
                if identifier.kind == IdentifierKind.PHONE and identifier.value in sms_numbers:
                    withheld.append((where, sms_phone.RULE_ID))
                    continue
                out = plan.pseudonym(identifier) if pseudonymize else identifier
                if not plan.may_receive(purpose.identifier_category(out)):
                    withheld.append((where, purpose.RULE_ID))
                    continue
                identifiers.append(out)
            age = None if pseudonymize else subject.age
            released.append(Subject(identifiers=tuple(identifiers), age=age, role=subject.role))
        return tuple(released)


def _released(record: Record, data: Mapping[str, Field], subjects: tuple[Subject, ...]) -> Record:
    """``record`` with only the released fields and subjects.

    Spelled out rather than ``dataclasses.replace`` (a third of the page time),
    positionally in the order Record declares its fields (keywords cost twice the
    instructions in 3.11); a test checks it copies every field of :class:`Record`.
    """
    return Record(
        record.id,
        record.customer_id,
        record.connection_id,
        record.provider,
        record.resource,
        record.visibility,
        subjects,
        data,
        record.occurred_at,
        record.extra,
    )


def _sms_numbers(data: Mapping[str, Field]) -> tuple[str, ...]:
    """The SMS-consent phone numbers among a record's fields, as E.164 where readable.

    The same number may also name a subject; it is withheld there too.
    """
    numbers: list[str] = []
    for value in data.values():
        if value.sms_consent and isinstance(value.value, str | int):
            raw = str(value.value)
            try:
                numbers.append(normalize_phone(raw))
            except InvalidIdentifier:
                numbers.append(raw.strip())
    return tuple(numbers)
