"""The OpenAPI 3.1 description of the v1 JSON API (served at /openapi.json)."""

from __future__ import annotations

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

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Linkgate", "version": "1.0.0"},
    "components": {
        "securitySchemes": {"serviceKey": {"type": "http", "scheme": "bearer"}},
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
                                    "customer_id": {"type": "string", "minLength": 1},
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
                    **_problems(401, 404),
                },
            },
            "delete": {
                "summary": "Disconnect: revoke at the provider, delete the tokens",
                "parameters": [_CONNECTION_ID],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Connection"}),
                    **_problems(401, 404),
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
        "/healthz": {"get": {"security": [], "responses": {"200": _json({"type": "object"})}}},
        "/readyz": {
            "get": {
                "security": [],
                "responses": {"200": _json({"type": "object"}), **_problems(503)},
            }
        },
    },
}
