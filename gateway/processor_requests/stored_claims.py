"""The account claims the gateway keeps about an account holder, as requests report them (sans-I/O).

Per connection the gateway keeps the linked identity's claims (gateway.account_claims,
sealed; Apple's ``sub``, ``email``, ``name`` …). They are data the gateway itself
stores about the account holder, so an access request about that person names
them and a portability request hands them over (GDPR Art. 15(1), Art. 20(1);
CCPA §1798.100, §1798.110). The access report, like the rest of its ``stored``
part, gives names, categories and counts and no values; the portability bundle
gives the values, in its own file listed in the manifest.

Categories come from the provider module: the resource served from the kept
claims (``Resource.from_kept_claims``) normalizes them, and each field's category
is the claim's; a claim that resource does not map is listed as uncategorized.
The gateway's own note kept beside them, when it last applied the provider's
claims-changed notification (``CLAIMS_CHANGED_AT``), is a record of that
operation: ``system.operations``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateway.account_claims import CLAIMS_CHANGED_AT
from gateway.connections import Connection
from providers.base import NormalizeContext, Provider

__all__ = ["claims_export", "claims_summary"]


def claims_summary(
    connection: Connection, provider: Provider | None, claims: Mapping[str, Any], at: datetime
) -> dict[str, Any]:
    """Which claims are kept for this connection and their categories; never their values."""
    categories = _categories(connection, provider, claims, at)
    return {
        "connection_id": connection.id,
        "provider": connection.provider,
        "claims": sorted(claims),
        "count": len(claims),
        "categories": sorted(set(categories.values())),
        "uncategorized": sorted(name for name in claims if name not in categories),
    }


def claims_export(connection: Connection, claims: Mapping[str, Any]) -> dict[str, Any]:
    """The kept claims with their values, for the portability bundle."""
    return {
        "connection_id": connection.id,
        "provider": connection.provider,
        "claims": dict(sorted(claims.items())),
    }


def _categories(
    connection: Connection, provider: Provider | None, claims: Mapping[str, Any], at: datetime
) -> dict[str, str]:
    """Claim name -> data category, as the provider's kept-claims resource normalizes it."""
    own = {CLAIMS_CHANGED_AT: "system.operations"} if CLAIMS_CHANGED_AT in claims else {}
    if provider is None:
        return own
    resource = next((r for r in provider.resources.values() if r.from_kept_claims), None)
    if resource is None:
        return own
    record = resource.normalize(
        claims,
        NormalizeContext(
            customer_id=connection.customer_id,
            connection_id=connection.id,
            provider=connection.provider,
            resource=resource.name,
            fetched_at=at,
            account_id=connection.subject,
        ),
    )
    found = {name: value.category for name, value in record.data.items() if name in claims}
    return {**found, **own}
