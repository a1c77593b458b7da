"""PUT/DELETE /v1/customers/{customer_id}/consents — End Users' marketing consent.

``PUT`` records that the subject consented to a purpose that needs consent;
``DELETE`` (same subject body, optional ``purpose``) withdraws it. Withdrawal
stops only the consent-based purposes and adds no suppression (privacy
notice, "Withdrawal of Consent ... will not affect ... processing ...
conducted in reliance of lawful processing grounds other than consent"); see
:mod:`gateway.subject_controls.consents`. ``DELETE`` carries a body, which
RFC 9110 §9.3.5 permits without defining: the subject is personal data and
stays out of the URL, where logs and proxies would keep it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.api.requests import json_object, runtime_of, service_caller
from gateway.errors import InvalidParameter
from gateway.subject_controls import parse_subject

_RECORD_MEMBERS = frozenset({"subject", "purpose", "evidence"})
_WITHDRAW_MEMBERS = frozenset({"subject", "purpose"})


async def record_consent(request: Request) -> JSONResponse:
    caller = await service_caller(request)
    customer_id = request.path_params["customer_id"]
    caller.require_customer(customer_id)
    body = _members(await json_object(request), _RECORD_MEMBERS)
    identifiers = parse_subject(body.get("subject"))
    consent = await runtime_of(request).consents.record(
        customer_id,
        identifiers,
        purpose=_purpose(body.get("purpose"), required=True) or "",
        evidence=body.get("evidence"),
        actor=caller,
    )
    return JSONResponse({"consent": consent.public()}, headers={"Cache-Control": "no-store"})


async def withdraw_consent(request: Request) -> JSONResponse:
    caller = await service_caller(request)
    customer_id = request.path_params["customer_id"]
    caller.require_customer(customer_id)
    body = _members(await json_object(request), _WITHDRAW_MEMBERS)
    identifiers = parse_subject(body.get("subject"))
    withdrawal = await runtime_of(request).consents.withdraw(
        customer_id, identifiers, purpose=_purpose(body.get("purpose")), actor=caller
    )
    return JSONResponse(withdrawal.public(), headers={"Cache-Control": "no-store"})


def _members(body: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """Refuse members we do not know, rather than silently ignoring an instruction."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidParameter(
            f"unknown member {unknown[0]!r} (expected {', '.join(sorted(allowed))})",
            parameter=unknown[0],
        )
    return body


def _purpose(value: object, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidParameter("purpose must be a Fides data-use key", parameter="purpose")
    return value
