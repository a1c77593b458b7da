"""The linked identity's claims, kept at connect time for providers without a userinfo endpoint.

Apple has no endpoint to read the account from later (providers.apple): what
the gateway knows is the ID token's claims and the name Apple posts on the
first consent only. :class:`AccountClaimsStore` keeps them per connection as
one JSON object sealed by the vault, bound to its row as associated data like
every token (they hold an email address), and the records service serves the
provider's ``from_kept_claims`` resource from them.

Besides the claims, the object may hold ``claims_changed_at``: the provider's time
(seconds) of the last claims-changed notification applied (Apple's email events,
gateway.provider_notifications), so an older one arriving late changes nothing.
A new key in the sealed JSON needs no migration.

They live and die with the grant: ``ConnectionStore.end_grant`` (disconnect,
consent withdrawal), ``ConnectionStore.delete`` (erasure) and the retention
purge delete them together with the tokens.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import AuditOutbox, EventDraft
from gateway.storage import account_claims, connections, writer
from gateway.vault import KeyRing, token_row
from providers.base import Account, JSONObject

__all__ = ["CLAIMS_CHANGED_AT", "CLAIMS_ROW", "AccountClaimsStore"]

log = structlog.get_logger(__name__)

CLAIMS_ROW = "account_claims"  # the vault's associated-data name of the sealed claims
CLAIMS_CHANGED_AT = "claims_changed_at"  # the last applied claims change, provider's time


class AccountClaimsStore:
    """One sealed claims object per connection, replaced as a whole on each link."""

    def __init__(
        self, engine: AsyncEngine, vault: KeyRing, *, audit: AuditOutbox | None = None
    ) -> None:
        self._engine = engine
        self._vault = vault
        self._audit = audit  # for a change kept with its audit event (``audit_as``)

    async def keep(
        self, connection_id: str, claims: JSONObject, *, audit_as: EventDraft | None = None
    ) -> None:
        """Replace the connection's claims; ``audit_as``: the change's audit event,
        committed with it through the audit outbox and appended after (or by the drain)."""
        if audit_as is not None and self._audit is None:
            raise ValueError("an audit event needs a store built with an audit outbox")
        sealed = self._vault.seal(
            json.dumps(dict(claims), separators=(",", ":"), sort_keys=True),
            row=token_row(connection_id, CLAIMS_ROW),
        )
        async with writer(self._engine).begin() as conn:
            await conn.execute(
                delete(account_claims).where(account_claims.c.connection_id == connection_id)
            )
            await conn.execute(
                account_claims.insert().values(
                    connection_id=connection_id, claims=sealed, updated_at=datetime.now(UTC)
                )
            )
            entry = (
                await self._audit.add(conn, audit_as)
                if audit_as is not None and self._audit is not None
                else None
            )
        log.info("account_claims.kept", connection_id=connection_id, count=len(claims))
        if entry is not None and self._audit is not None:
            await self._audit.deliver(entry)  # never raises: the drain appends what it cannot

    async def get(self, connection_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            sealed = (
                await conn.execute(
                    select(account_claims.c.claims).where(
                        account_claims.c.connection_id == connection_id
                    )
                )
            ).scalar()
        return None if sealed is None else self._open(connection_id, sealed)

    async def find(
        self, *, customer_id: str, provider: str, account: Account
    ) -> dict[str, Any] | None:
        """The claims kept when this customer last linked the same account, if any."""
        c = connections.c
        query = (
            select(c.id, account_claims.c.claims)
            .join(account_claims, account_claims.c.connection_id == c.id)
            .where(
                c.customer_id == customer_id,
                c.provider == provider,
                c.issuer == account.issuer,
                c.subject == account.subject,
            )
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else self._open(row.id, row.claims)

    def _open(self, connection_id: str, sealed: str) -> dict[str, Any]:
        claims = json.loads(self._vault.open(sealed, row=token_row(connection_id, CLAIMS_ROW)))
        return claims if isinstance(claims, dict) else {}
