"""Policy data: the privacy notice's allowances as data, validated at start-up.

The packaged ``data/policy.toml`` says which purposes the notice allows for
End User data, which data categories each purpose may receive, how long each
category may be kept, and which purposes are never grantable because they
amount to selling or renting data. :func:`load_policy` reads it, applies the
operator's overrides and checks everything once; a mistake is a
:class:`PolicyConfigError` listing every problem, one per line.

Overrides have the same shape as the packaged file and may only tighten:

.. code-block:: toml

    [purposes."marketing.communications"]
    allowed = false                       # withdraw a purpose
    [purposes."essential.service"]
    categories = ["user.name", "user.content"]   # receive less
    [retention."user.content"]
    days = 7                              # keep for less
    [no_sale]
    purposes = ["personalize"]            # never grant more

Anything looser (a purpose or category the notice does not allow, a longer
retention, turning consent or pseudonymization off) is refused.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

from policies.errors import PolicyConfigError
from policies.taxonomy import Taxonomy, default_taxonomy, is_within, is_within_any

POLICY_RESOURCE = "policy.toml"

# "For our End Users, we do not use the data we collect about you when you use
# our services for marketing without your consent." Any purpose under these
# keys must require consent, in the packaged data and after every override.
CONSENT_REQUIRED_UNDER = ("marketing", "sales")

# Analytics of End User interactions is allowed only pseudonymized (DESIGN.md,
# rule ``purpose``); any purpose under this key must pseudonymize.
PSEUDONYMIZED_UNDER = ("analytics",)

_PURPOSE_KEYS = frozenset({"notice", "allowed", "categories", "requires_consent", "pseudonymize"})
_RETENTION_KEYS = frozenset({"notice", "days"})
_NO_SALE_KEYS = frozenset({"notice", "purposes"})
_TOP_KEYS = frozenset({"purposes", "retention", "no_sale"})


@dataclass(frozen=True, slots=True)
class PurposeRule:
    """What one purpose may do with End User data."""

    purpose: str
    allowed: bool
    categories: frozenset[str]
    requires_consent: bool
    pseudonymize: bool
    notice: str

    def may_receive(self, category: str) -> bool:
        """True when a field of ``category`` may be released for this purpose."""
        return self.allowed and is_within_any(category, self.categories)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long data of one category may be stored."""

    category: str
    days: int
    notice: str


@dataclass(frozen=True, slots=True)
class Policy:
    """The validated policy data; build it with :func:`load_policy`."""

    purposes: Mapping[str, PurposeRule]
    retention: Mapping[str, Retention]
    no_sale: frozenset[str]
    no_sale_notice: str
    taxonomy: Taxonomy

    def rule_for(self, purpose: str) -> PurposeRule | None:
        """The most specific entry covering ``purpose`` (which may say not allowed)."""
        best: PurposeRule | None = None
        for key, rule in self.purposes.items():
            if is_within(purpose, key) and (best is None or len(key) > len(best.purpose)):
                best = rule
        return best

    def allows(self, purpose: str) -> bool:
        """True when the notice allows ``purpose`` for End User data."""
        rule = self.rule_for(purpose)
        return rule is not None and rule.allowed and not self.is_sale(purpose)

    def is_sale(self, purpose: str) -> bool:
        """True when ``purpose`` amounts to selling or renting data (rule ``no-sale``)."""
        return is_within_any(purpose, self.no_sale)

    def retention_days(self, category: str) -> int | None:
        """Days data of ``category`` may be stored; None when no entry covers it."""
        best: Retention | None = None
        for key, entry in self.retention.items():
            if is_within(category, key) and (best is None or len(key) > len(best.category)):
                best = entry
        return None if best is None else best.days


def load_policy(
    overrides: Mapping[str, Any] | None = None, *, taxonomy: Taxonomy | None = None
) -> Policy:
    """Read the packaged policy, apply ``overrides`` (stricter only) and validate both."""
    taxonomy = taxonomy or default_taxonomy()
    text = resources.files("policies.data").joinpath(POLICY_RESOURCE).read_text("utf-8")
    packaged = tomllib.loads(text)
    problems: list[str] = []
    base = _parse(packaged, taxonomy, problems, source=POLICY_RESOURCE, notice_required=True)
    problems.extend(_sale_problems(base))
    if problems:
        raise PolicyConfigError(problems)
    policy = base
    if overrides:
        policy = _tighten(base, overrides, taxonomy, problems)
    problems.extend(_invariant_problems(policy))
    if problems:
        raise PolicyConfigError(problems)
    return policy


def _parse(
    data: Mapping[str, Any],
    taxonomy: Taxonomy,
    problems: list[str],
    *,
    source: str,
    notice_required: bool,
) -> Policy:
    _unknown_keys(data, _TOP_KEYS, source, problems)
    purposes: dict[str, PurposeRule] = {}
    for key, entry in _table(data, "purposes", source, problems).items():
        where = f"{source}: purposes.{key!r}"
        if not _is_table(entry, where, problems):
            continue
        _unknown_keys(entry, _PURPOSE_KEYS, where, problems)
        _note(taxonomy.purpose_problem(key), where, problems)
        allowed = _flag(entry, "allowed", True, where, problems)
        categories = _keys(entry.get("categories", []), taxonomy, where, problems)
        if allowed and "categories" not in entry and notice_required:
            problems.append(f"{where}: an allowed purpose needs its list of categories")
        purposes[key] = PurposeRule(
            purpose=key,
            allowed=allowed,
            categories=categories,
            requires_consent=_flag(entry, "requires_consent", False, where, problems),
            pseudonymize=_flag(entry, "pseudonymize", False, where, problems),
            notice=_notice(entry, where, problems, required=notice_required),
        )
    retention: dict[str, Retention] = {}
    for key, entry in _table(data, "retention", source, problems).items():
        where = f"{source}: retention.{key!r}"
        if not _is_table(entry, where, problems):
            continue
        _unknown_keys(entry, _RETENTION_KEYS, where, problems)
        _note(taxonomy.category_problem(key), where, problems)
        days = entry.get("days")
        if type(days) is not int or days < 0:
            problems.append(f"{where}: days must be a whole number of days >= 0, not {days!r}")
            days = 0
        notice = _notice(entry, where, problems, required=notice_required)
        retention[key] = Retention(category=key, days=days, notice=notice)
    no_sale_table = _table(data, "no_sale", source, problems)
    _unknown_keys(no_sale_table, _NO_SALE_KEYS, f"{source}: no_sale", problems)
    no_sale: frozenset[str] = frozenset()
    if no_sale_table:
        where = f"{source}: no_sale"
        no_sale = _keys(no_sale_table.get("purposes", []), taxonomy, where, problems, purposes=True)
    no_sale_notice = ""
    if no_sale_table or notice_required:
        no_sale_notice = _notice(no_sale_table, f"{source}: no_sale", problems, notice_required)
    return Policy(
        purposes=MappingProxyType(purposes),
        retention=MappingProxyType(retention),
        no_sale=no_sale,
        no_sale_notice=no_sale_notice,
        taxonomy=taxonomy,
    )


def _tighten(
    base: Policy, overrides: Mapping[str, Any], taxonomy: Taxonomy, problems: list[str]
) -> Policy:
    source = "override"
    extra = _parse(overrides, taxonomy, problems, source=source, notice_required=False)
    purposes = dict(base.purposes)
    for key, wanted in extra.purposes.items():
        where = f"{source}: purposes.{key!r}"
        raw = overrides["purposes"][key]
        inherited = base.rule_for(key)
        if inherited is None or not inherited.allowed:
            if wanted.allowed:
                problems.append(f"{where}: looser than the privacy notice, which does not allow it")
            purposes[key] = _withdrawn(key, wanted.notice or "withdrawn by the operator")
            continue
        if not wanted.allowed:
            purposes[key] = _withdrawn(key, wanted.notice or "withdrawn by the operator")
            continue
        categories = inherited.categories
        if "categories" in raw:
            wider = sorted(c for c in wanted.categories if not is_within_any(c, categories))
            if wider:
                problems.append(f"{where}: looser: categories {wider} are not allowed for it")
            categories = wanted.categories
        consent = _not_weaker(raw, "requires_consent", inherited.requires_consent, where, problems)
        pseudonyms = _not_weaker(raw, "pseudonymize", inherited.pseudonymize, where, problems)
        purposes[key] = PurposeRule(
            purpose=key,
            allowed=True,
            categories=categories,
            requires_consent=consent,
            pseudonymize=pseudonyms,
            notice=wanted.notice or inherited.notice,
        )
    retention = dict(base.retention)
    for key, entry in extra.retention.items():
        limit = base.retention_days(key)
        if limit is not None and entry.days > limit:
            problems.append(
                f"{source}: retention.{key!r}: looser: {entry.days} days is longer"
                f" than the {limit} days allowed"
            )
        notice = entry.notice or (base.retention[key].notice if key in base.retention else "")
        retention[key] = Retention(category=key, days=entry.days, notice=notice)
    return Policy(
        purposes=MappingProxyType(purposes),
        retention=MappingProxyType(retention),
        no_sale=base.no_sale | extra.no_sale,
        no_sale_notice=base.no_sale_notice,
        taxonomy=taxonomy,
    )


def _sale_problems(policy: Policy) -> Iterable[str]:
    """The packaged data may not allow what it also lists as never grantable.

    (An operator's added no-sale purpose simply wins over an allowed one.)
    """
    for key, rule in sorted(policy.purposes.items()):
        if rule.allowed and policy.is_sale(key):
            yield f"purposes.{key!r}: allowed, but it is a sale or rental of data (no-sale)"


def _invariant_problems(policy: Policy) -> Iterable[str]:
    """What no policy may say, whoever wrote it."""
    for key, rule in sorted(policy.purposes.items()):
        if not rule.allowed:
            continue
        where = f"purposes.{key!r}"
        if is_within_any(key, CONSENT_REQUIRED_UNDER) and not rule.requires_consent:
            yield f"{where}: marketing must require the End User's consent"
        if is_within_any(key, PSEUDONYMIZED_UNDER) and not rule.pseudonymize:
            yield f"{where}: analytics must pseudonymize End User identifiers"
    if "user" not in policy.retention:
        yield "retention: needs an entry for 'user' so every End User category has a period"


def _withdrawn(key: str, notice: str) -> PurposeRule:
    return PurposeRule(
        purpose=key,
        allowed=False,
        categories=frozenset(),
        requires_consent=False,
        pseudonymize=False,
        notice=notice,
    )


def _not_weaker(
    raw: Mapping[str, Any], name: str, inherited: bool, where: str, problems: list[str]
) -> bool:
    if name not in raw:
        return inherited
    wanted = raw[name] is True
    if inherited and not wanted:
        problems.append(f"{where}: looser: {name} cannot be turned off")
        return inherited
    return wanted


def _table(
    data: Mapping[str, Any], name: str, source: str, problems: list[str]
) -> Mapping[str, Any]:
    value = data.get(name, {})
    return value if _is_table(value, f"{source}: {name}", problems) else {}


def _is_table(value: object, where: str, problems: list[str]) -> bool:
    if isinstance(value, Mapping):
        return True
    problems.append(f"{where}: expected a table, not {type(value).__name__}")
    return False


def _unknown_keys(
    data: Mapping[str, Any], known: frozenset[str], where: str, problems: list[str]
) -> None:
    problems.extend(f"{where}: unknown setting {key!r}" for key in sorted(set(data) - known))


def _note(problem: str | None, where: str, problems: list[str]) -> None:
    if problem is not None:
        problems.append(f"{where}: {problem}")


def _flag(
    entry: Mapping[str, Any], name: str, default: bool, where: str, problems: list[str]
) -> bool:
    value = entry.get(name, default)
    if not isinstance(value, bool):
        problems.append(f"{where}: {name} must be true or false, not {value!r}")
        return name != "allowed"  # fail toward the stricter reading
    return value


def _notice(entry: Mapping[str, Any], where: str, problems: list[str], required: bool) -> str:
    value = entry.get("notice", "")
    if not isinstance(value, str) or (required and not value.strip()):
        problems.append(f"{where}: needs the privacy-notice passage it rests on in 'notice'")
        return ""
    return " ".join(value.split())


def _keys(
    value: object,
    taxonomy: Taxonomy,
    where: str,
    problems: list[str],
    *,
    purposes: bool = False,
) -> frozenset[str]:
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list of Fides keys, not {value!r}")
        return frozenset()
    check = taxonomy.purpose_problem if purposes else taxonomy.category_problem
    for key in value:
        _note(check(key), where, problems)
    return frozenset(key for key in value if isinstance(key, str))
