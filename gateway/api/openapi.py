"""The OpenAPI 3.1 description of the v1 JSON API (served at /openapi.json)."""

from __future__ import annotations

import copy
import re
from typing import Any

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problems(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": "problem",
            "content": {"application/problem+json": {"schema": _PROBLEM}},
        }
        for code in codes
    }


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_CONNECTION_ID = {
    "name": "connection_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", **schema},
    }


_AUDITOR: list[dict[str, list[str]]] = [{"auditorKey": []}]
_AUDIT_CUSTOMER = {
    **_query("customer_id", "a customer the auditor is entitled to"),
    "required": True,
}
_AUDIT_SUBJECT = _query(
    "subject",
    "an End User identifier as written (e-mail, phone, kind:value, provider:handle); "
    "normalized and hashed per customer on the way in, never echoed",
)
_AUDIT_EVENT = {
    "type": "object",
    "description": "the event's canonical content (what its hash covers) plus prev_hash and hash",
    "properties": {
        "customer_id": {"type": "string"},
        "seq": {"type": "integer"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "action": {"type": "string"},
        "outcome": {"enum": ["allowed", "denied", "error"]},
        "problem_type": {"type": ["string", "null"]},
        "caller_id": {"type": ["string", "null"]},
        "caller_class": {"type": ["string", "null"]},
        "connection_id": {"type": ["string", "null"]},
        "provider": {"type": ["string", "null"]},
        "resource": {"type": ["string", "null"]},
        "purpose": {"type": ["string", "null"]},
        "record_count": {"type": "integer"},
        "categories": {"type": "array", "items": {"type": "string"}},
        "dropped": {"type": "object", "additionalProperties": {"type": "integer"}},
        "subjects": {"type": "array", "items": {"type": "string"}},
        "trace_id": {"type": ["string", "null"]},
        "trace_summary": {
            "type": "object",
            "description": "spans: the request's trace ({name, duration_us, status, attributes?},"
            " its own server span first); for access.rate_limited, rate_limited: {requests,"
            " first_at, last_at, window_seconds, replica, routes, purposes} instead",
        },
        "prev_hash": {"type": "string"},
        "hash": {"type": "string"},
    },
}
_TALLY = {
    "type": "object",
    "properties": {"events": {"type": "integer"}, "records": {"type": "integer"}},
}
_AUDIT_PATHS: dict[str, Any] = {
    "/v1/audit/events": {
        "get": {
            "summary": "Audit events, newest first, paginated (auditors only)",
            "security": _AUDITOR,
            "parameters": [
                _query("customer_id", "default: every customer the auditor is entitled to"),
                _AUDIT_SUBJECT,
                _query("connection_id", "only this connection"),
                _query("caller", "only this caller id"),
                _query("action", "e.g. records.read, caller.refused, access.rate_limited"),
                _query("outcome", "allowed, denied or error"),
                _query("since", "RFC 3339, inclusive", format="date-time"),
                _query("until", "RFC 3339, exclusive", format="date-time"),
                _query("cursor", "next_cursor of the previous page (opaque)"),
                {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}},
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "events": {"type": "array", "items": _AUDIT_EVENT},
                            "next_cursor": {"type": ["string", "null"]},
                        },
                    }
                ),
                **_problems(400, 401, 403, 409, 503),
            },
        }
    },
    "/v1/audit/events/{customer_id}/{seq}": {
        "get": {
            "summary": "One audit event (404 also for a customer the auditor may not read)",
            "security": _AUDITOR,
            "parameters": [
                {**_AUDIT_CUSTOMER, "in": "path", "description": "the event's customer"},
                {"name": "seq", "in": "path", "required": True, "schema": {"type": "integer"}},
            ],
            "responses": {"200": _json(_AUDIT_EVENT), **_problems(401, 403, 404, 409, 503)},
        }
    },
    "/v1/audit/verify": {
        "get": {
            "summary": "Recompute a customer's hash chain and check its signed checkpoints",
            "security": _AUDITOR,
            "parameters": [_AUDIT_CUSTOMER],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["ok", "events_checked", "head", "first_bad_seq", "problem"],
                        "properties": {
                            "customer_id": {"type": "string"},
                            "ok": {"type": "boolean"},
                            "events_checked": {"type": "integer"},
                            "head": {
                                "type": "object",
                                "properties": {
                                    "seq": {"type": "integer"},
                                    "hash": {"type": "string"},
                                },
                            },
                            "first_bad_seq": {"type": ["integer", "null"]},
                            "problem": {"type": ["string", "null"]},
                        },
                    }
                ),
                **_problems(400, 401, 403, 503),
            },
        }
    },
    "/v1/audit/disclosures": {
        "get": {
            "summary": "What was disclosed about an End User, to whom and why (12 months)",
            "description": (
                "The privacy notice's California section: the categories disclosed and the "
                "categories of recipients (internal, affiliate, third_party) in the preceding "
                "months. A disclosure is an allowed records.read that released records."
            ),
            "security": _AUDITOR,
            "parameters": [
                _AUDIT_CUSTOMER,
                {**_AUDIT_SUBJECT, "required": True},
                {
                    "name": "months",
                    "in": "query",
                    "schema": {"type": "integer", "default": 12, "minimum": 1, "maximum": 120},
                },
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "customer_id": {"type": "string"},
                            "months": {"type": "integer"},
                            "since": {"type": "string", "format": "date-time"},
                            "until": {"type": "string", "format": "date-time"},
                            "events": {"type": "integer"},
                            "records": {"type": "integer"},
                            "categories": {"type": "object", "additionalProperties": _TALLY},
                            "recipients": {"type": "object", "additionalProperties": _TALLY},
                            "purposes": {"type": "object", "additionalProperties": _TALLY},
                        },
                    }
                ),
                **_problems(400, 401, 403, 409, 503),
            },
        }
    },
}

# Processor requests: service keys and auditor credentials entitled to the customer.
_SERVICE_OR_AUDITOR: list[dict[str, list[str]]] = [{"serviceKey": []}, {"auditorKey": []}]
_REQUEST_ID = {
    "name": "request_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
_PRQ_KINDS = [
    "access",
    "portability",
    "erasure",
    "rectification",
    "restriction",
    "objection",
    "consent_withdrawal",
]
_PRQ_STATUSES = ["received", "verified", "running", "completed", "failed", "rejected"]
_SCOPED: dict[str, Any] = {"type": "object", "required": ["provider"]}
_PROCESSOR_REQUEST = {
    "type": "object",
    "required": ["id", "customer_id", "kind", "status", "due_at", "due_dates", "overdue"],
    "properties": {
        "id": {"type": "string"},
        "customer_id": {"type": "string"},
        "kind": {"enum": _PRQ_KINDS},
        "status": {"enum": _PRQ_STATUSES},
        "jurisdiction": {"enum": ["gdpr", "ccpa", None]},
        "due_at": {"type": "string", "format": "date-time"},
        "due_dates": {
            "type": "object",
            "description": "GDPR Art. 12(3): 30 days; CCPA §1798.130(a)(2)(B): 45 days",
            "properties": {
                "gdpr": {"type": "string", "format": "date-time"},
                "ccpa": {"type": "string", "format": "date-time"},
            },
        },
        "overdue": {"type": "boolean"},
        "purposes": {"type": "array", "items": {"type": "string"}},
        "lift": {"type": "boolean"},
        "identifiers": {"type": "integer", "description": "how many; never the identifiers"},
        "received_at": {"type": "string", "format": "date-time"},
        "verified_by": {"type": ["string", "null"]},
        "verified_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "reason": {"type": ["string", "null"]},
        "result": {"type": "object"},
    },
}
_PROCESSOR_REQUEST_PATHS: dict[str, Any] = {
    "/v1/processor-requests": {
        "post": {
            "summary": "File an End User's privacy request (the customer is the controller)",
            "security": _SERVICE_OR_AUDITOR,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["customer_id", "kind", "subject"],
                            "additionalProperties": False,
                            "properties": {
                                "customer_id": {"type": "string"},
                                "kind": {"enum": _PRQ_KINDS},
                                "subject": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "emails": {"type": "array", "items": {"type": "string"}},
                                        "phones": {"type": "array", "items": {"type": "string"}},
                                        "provider_user_ids": {
                                            "type": "array",
                                            "items": {
                                                **_SCOPED,
                                                "properties": {
                                                    "provider": {"type": "string"},
                                                    "id": {"type": "string"},
                                                },
                                            },
                                        },
                                        "handles": {
                                            "type": "array",
                                            "items": {
                                                **_SCOPED,
                                                "properties": {
                                                    "provider": {"type": "string"},
                                                    "handle": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                },
                                "purposes": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "description": "restriction, objection, consent_withdrawal",
                                },
                                "lift": {
                                    "type": "boolean",
                                    "description": "restriction/objection: lift the earlier one",
                                },
                                "verified_by": {
                                    "type": "string",
                                    "description": "who verified the requester; without it "
                                    "the request waits in received",
                                },
                                "note": {
                                    "type": "string",
                                    "description": "must not repeat an identifier; "
                                    "required for rectification (it is the correction)",
                                },
                                "jurisdiction": {"enum": ["gdpr", "ccpa"]},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json(_PROCESSOR_REQUEST, "filed"),
                **_problems(400, 401, 403, 409, 503),
            },
        },
        "get": {
            "summary": "The caller's customers' requests, newest first",
            "security": _SERVICE_OR_AUDITOR,
            "parameters": [
                _query("customer_id", "one customer the caller is entitled to"),
                _query("status", "only this status", enum=_PRQ_STATUSES),
                _query("overdue", "true: open and past due", enum=["true", "false"]),
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                },
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"requests": {"type": "array", "items": _PROCESSOR_REQUEST}},
                    }
                ),
                **_problems(400, 401, 403),
            },
        },
    },
    "/v1/processor-requests/{request_id}": {
        "get": {
            "security": _SERVICE_OR_AUDITOR,
            "parameters": [_REQUEST_ID],
            "responses": {"200": _json(_PROCESSOR_REQUEST), **_problems(401, 404)},
        }
    },
    "/v1/processor-requests/{request_id}/verify": {
        "post": {
            "summary": "Record who at the customer verified the requester's identity",
            "security": _SERVICE_OR_AUDITOR,
            "parameters": [_REQUEST_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["verified_by"],
                            "properties": {"verified_by": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {"200": _json(_PROCESSOR_REQUEST), **_problems(400, 401, 404, 409)},
        }
    },
    "/v1/processor-requests/{request_id}/result": {
        "get": {
            "summary": "The result (JSON); for portability, signed links to the JSON and CSV "
            "bundle that expire. With file and token, the file itself (no credential needed).",
            "security": [*_SERVICE_OR_AUDITOR, {}],
            "parameters": [
                _REQUEST_ID,
                _query("file", "records.json or records.csv (with token)"),
                _query("token", "the signed, short-lived download token of a link"),
            ],
            "responses": {
                "200": {
                    "description": "the result, or one bundle file",
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **_problems(401, 403, 404, 409),
            },
        }
    },
}

_CUSTOMER_ID = {
    "name": "customer_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}

_PROVIDER = {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}}
_SIGNED_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "Apple: the notification JWS, signed with Apple's JWKS",
                "properties": {"payload": {"type": "string"}},
            }
        },
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "description": "Meta: <HMAC-SHA256 of the payload>.<payload>, base64url",
                "properties": {"signed_request": {"type": "string"}},
            }
        },
    },
}
# Called by providers, not by services: no key; the message's own signature is checked.
_PROVIDER_NOTIFICATION_PATHS: dict[str, Any] = {
    "/providers/{provider}/notifications": {
        "post": {
            "summary": "A provider says a grant ended (Apple events, Meta deauthorize)",
            "security": [],
            "parameters": [_PROVIDER],
            "requestBody": _SIGNED_BODY,
            "responses": {
                "200": _json({"type": "object", "properties": {"received": {"type": "boolean"}}}),
                **_problems(400, 401, 404, 502, 503),
            },
        }
    },
    "/providers/{provider}/data-deletion": {
        "post": {
            "summary": "Meta's Data Deletion Request callback: end the grant, delete what is kept",
            "security": [],
            "parameters": [_PROVIDER],
            "requestBody": _SIGNED_BODY,
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["url", "confirmation_code"],
                        "properties": {
                            "url": {"type": "string"},
                            "confirmation_code": {"type": "string"},
                        },
                    }
                ),
                **_problems(400, 401, 404, 502, 503),
            },
        }
    },
    "/providers/{provider}/data-deletion/{status}": {
        "get": {
            "summary": "The End User's status page for a data deletion request (no personal data)",
            "security": [],
            "parameters": [
                _PROVIDER,
                {"name": "status", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "the status, in words", "content": {"text/html": {}}},
                **_problems(404),
            },
        }
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Linkgate", "version": "1.0.0"},
    "components": {
        "securitySchemes": {
            "serviceKey": {"type": "http", "scheme": "bearer"},
            "auditorKey": {"type": "http", "scheme": "bearer", "description": "lga_… key"},
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                },
            },
            "Record": {
                "type": "object",
                "required": [
                    "id",
                    "customer_id",
                    "connection_id",
                    "provider",
                    "resource",
                    "visibility",
                    "subjects",
                    "data",
                    "fetched_at",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "customer_id": {"type": "string"},
                    "connection_id": {"type": "string"},
                    "provider": {"type": "string"},
                    "resource": {"type": "string"},
                    "visibility": {"enum": ["public", "direct"]},
                    "subjects": {"type": "array", "items": {"type": "object"}},
                    "data": {"type": "object"},
                    "categories": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                    },
                    "occurred_at": {"type": ["string", "null"], "format": "date-time"},
                    "fetched_at": {"type": "string", "format": "date-time"},
                },
            },
            "Subject": {
                "type": "object",
                "description": (
                    "One End User, by any of their identifiers (normalized as the providers "
                    "do: emails lower-cased, phones E.164, handles and provider user ids "
                    "scoped to their provider). Stored only as per-customer keyed hashes."
                ),
                "additionalProperties": False,
                "properties": {
                    "emails": {"type": "array", "items": {"type": "string"}},
                    "phones": {"type": "array", "items": {"type": "string"}},
                    "provider_user_ids": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["provider", "id"],
                            "properties": {
                                "provider": {"type": "string"},
                                "id": {"type": "string"},
                            },
                        },
                    },
                    "handles": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["provider", "handle"],
                            "properties": {
                                "provider": {"type": "string"},
                                "handle": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "Connection": {
                "type": "object",
                "required": [
                    "id",
                    "customer_id",
                    "provider",
                    "account",
                    "scopes",
                    "status",
                    "created_at",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "customer_id": {"type": "string"},
                    "provider": {"type": "string"},
                    "account": {"type": "object"},
                    "scopes": {"type": "array", "items": {"type": "string"}},
                    "status": {
                        "enum": ["active", "refreshing", "needs_reauth", "revoked", "suppressed"]
                    },
                    "status_reason": {"type": ["string", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "expires_at": {"type": ["string", "null"]},
                    "last_refreshed_at": {"type": ["string", "null"]},
                },
            },
        },
    },
    "security": [{"serviceKey": []}],
    "paths": {
        "/v1/connect-sessions": {
            "post": {
                "summary": "Create a short-lived connect-portal link for one customer",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["customer_id"],
                                "properties": {
                                    "customer_id": {
                                        "type": "string",
                                        "pattern": "^[A-Za-z0-9._:@-]{1,128}$",
                                    },
                                    "providers": {"type": "array", "items": {"type": "string"}},
                                    "return_url": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["token", "connect_url", "expires_at"],
                            "properties": {
                                "id": {"type": "string"},
                                "token": {"type": "string"},
                                "connect_url": {"type": "string"},
                                "customer_id": {"type": "string"},
                                "expires_at": {"type": "string", "format": "date-time"},
                            },
                        },
                        "created",
                    ),
                    **_problems(400, 401, 403),
                },
            }
        },
        "/v1/connections": {
            "get": {
                "summary": "A customer's connections (never a token)",
                "parameters": [
                    {
                        "name": "customer_id",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "connections": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Connection"},
                                }
                            },
                        }
                    ),
                    **_problems(400, 401, 403),
                },
            }
        },
        "/v1/connections/{connection_id}": {
            "get": {
                "summary": "One connection",
                "parameters": [_CONNECTION_ID],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Connection"}),
                    **_problems(401, 404, 503),
                },
            },
            "delete": {
                "summary": "Disconnect: revoke at the provider, delete the tokens",
                "parameters": [_CONNECTION_ID],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Connection"}),
                    **_problems(401, 404, 503),
                },
            },
        },
        "/v1/connections/{connection_id}/records/{resource}": {
            "get": {
                "summary": "A policy-filtered, customer-tagged page of a connection's records",
                "description": (
                    "Resource parameters (e.g. post_id for comments) go in the query string. "
                    "next_cursor is opaque and signed, bound to the connection, resource and "
                    "parameters. dropped counts records withheld per policy rule."
                ),
                "parameters": [
                    _CONNECTION_ID,
                    {
                        "name": "resource",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "purpose",
                        "in": "query",
                        "required": True,
                        # A Fides data-use key, e.g. essential.service
                        "schema": {"type": "string", "pattern": "^[a-z_]+(\\.[a-z_]+)*$"},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["records", "next_cursor", "dropped", "trace_id"],
                            "properties": {
                                "records": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Record"},
                                },
                                "next_cursor": {"type": ["string", "null"]},
                                "dropped": {
                                    "type": "object",
                                    "additionalProperties": {"type": "integer"},
                                },
                                "redacted": {"type": "array", "items": {"type": "object"}},
                                "trace_id": {"type": "string"},
                            },
                        }
                    ),
                    **_problems(400, 401, 403, 404, 409, 429, 502, 503),
                },
            }
        },
        **_AUDIT_PATHS,
        "/v1/customers/{customer_id}/consents": {
            "parameters": [_CUSTOMER_ID],
            "put": {
                "summary": "Record an End User's consent to a purpose that requires it",
                "description": (
                    "purpose must be one the policy marks requires_consent (e.g. "
                    "marketing.communications); the consent covers its more specific "
                    "purposes. evidence is a note on how consent was obtained and must not "
                    "repeat the subject's identifiers. Audited as consent.recorded."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["subject", "purpose"],
                                "properties": {
                                    "subject": {"$ref": "#/components/schemas/Subject"},
                                    "purpose": {"type": "string"},
                                    "evidence": {"type": "string", "maxLength": 1000},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "consent": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "string"},
                                        "customer_id": {"type": "string"},
                                        "purpose": {"type": "string"},
                                        "recorded_at": {"type": "string", "format": "date-time"},
                                        "identifiers": {"type": "integer"},
                                    },
                                }
                            },
                        }
                    ),
                    **_problems(400, 401, 403, 503),
                },
            },
            "delete": {
                "summary": "Withdraw an End User's consent (all purposes, or one)",
                "description": (
                    "Ends every active consent of the subject found through any of the given "
                    "identifiers (for purpose and the purposes related to it, or all). It adds "
                    "no suppression: processing on grounds other than consent goes on "
                    "(privacy notice, Withdrawal of Consent). The body carries the subject so "
                    "that identifiers stay out of URLs. Audited as consent.withdrawn."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["subject"],
                                "properties": {
                                    "subject": {"$ref": "#/components/schemas/Subject"},
                                    "purpose": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "customer_id": {"type": "string"},
                                "purpose": {"type": ["string", "null"]},
                                "withdrawn_at": {"type": "string", "format": "date-time"},
                                "withdrawn": {"type": "array", "items": {"type": "string"}},
                            },
                        }
                    ),
                    **_problems(400, 401, 403, 503),
                },
            },
        },
        "/v1/customers/{customer_id}/suppressions": {
            "get": {
                "summary": "The customer's suppression list: counts and ids, never identifiers",
                "parameters": [
                    _CUSTOMER_ID,
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "customer_id": {"type": "string"},
                                "counts": {
                                    "type": "object",
                                    "additionalProperties": {"type": "integer"},
                                },
                                "total": {"type": "integer"},
                                "suppressions": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "id": {"type": "string"},
                                            "kind": {
                                                "enum": [
                                                    "erasure",
                                                    "restriction",
                                                    "objection",
                                                    "consent_withdrawal",
                                                ]
                                            },
                                            "purposes": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                            },
                                            "created_at": {"type": "string"},
                                            "created_by": {"type": "string"},
                                            "identifiers": {"type": "integer"},
                                        },
                                    },
                                },
                            },
                        }
                    ),
                    **_problems(400, 401, 403),
                },
            }
        },
        **_PROCESSOR_REQUEST_PATHS,
        **_PROVIDER_NOTIFICATION_PATHS,
        "/healthz": {"get": {"security": [], "responses": {"200": _json({"type": "object"})}}},
        "/readyz": {
            "get": {
                "security": [],
                "responses": {"200": _json({"type": "object"}), **_problems(503)},
            }
        },
    },
}


_METHODS = frozenset({"get", "put", "post", "delete", "patch"})


def _with_request_limits(document: dict[str, Any]) -> dict[str, Any]:
    """Every operation may meet gateway/request_limits.py before its handler: headers
    over the limit (431), a body over it (413, operations with a body) and the
    per-key rate limit (429, operations that take a bearer key)."""
    for operations in document["paths"].values():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue  # path-level "parameters"
            codes = [431]
            if "requestBody" in operation:
                codes.append(413)
            if operation.get("security") != []:
                codes.append(429)
            for code, response in _problems(*codes).items():
                operation["responses"].setdefault(code, response)
    return document


OPENAPI = _with_request_limits(OPENAPI)


def for_deployment(
    document: dict[str, Any], *, providers: list[str], return_urls: tuple[str, ...]
) -> dict[str, Any]:
    """A copy of ``document`` naming this deployment's providers and return-URL prefixes."""
    filled = copy.deepcopy(document)
    body = filled["paths"]["/v1/connect-sessions"]["post"]["requestBody"]
    properties = body["content"]["application/json"]["schema"]["properties"]
    items: dict[str, Any] = {"enum": providers} if providers else {"not": {}}
    properties["providers"]["items"] = items
    if return_urls:
        prefixes = "|".join(re.escape(url.rstrip("/")) for url in return_urls)
        properties["return_url"] = {"type": "string", "pattern": f"^({prefixes})([/?].*)?$"}
    else:
        del properties["return_url"]  # no allow-list: no return URL is accepted
    return filled
