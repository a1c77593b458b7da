"""The portability bundle: JSON and CSV of the subject's records, a manifest, checksums.

Privacy notice (Portability): "a copy of your personal data in a
machine-readable format" (GDPR Art. 20(1) "structured, commonly used and
machine-readable"; CCPA §1798.130(a)(2)(B) "readily usable format"). The
records are exactly what the policies released for the request's purpose on
a live fetch; the manifest lists each file with its SHA-256 so the receiver
can check what it got. Sans-I/O: records in, bytes out.

When the subject is a connection's account holder, the identity claims the
gateway keeps for that connection (gateway.account_claims) are a file of their
own, ``account_claims.json``, with their values; the manifest names which
claims of which connection it holds.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policies import RULE_IDS, Record

__all__ = [
    "CLAIMS_NAME",
    "CSV_NAME",
    "JSON_NAME",
    "Bundle",
    "BundleFile",
    "build_bundle",
    "record_json",
]

JSON_NAME = "records.json"
CSV_NAME = "records.csv"
CLAIMS_NAME = "account_claims.json"
CSV_COLUMNS = ("provider", "connection_id", "resource", "record_id", "field", "category", "value")


@dataclass(frozen=True, slots=True)
class BundleFile:
    name: str
    media_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True, slots=True)
class Bundle:
    files: tuple[BundleFile, ...]
    manifest: dict[str, Any]


def record_json(record: Record) -> dict[str, Any]:
    """A released record, in the records API's shape."""
    return {
        "id": record.id,
        "customer_id": record.customer_id,
        "connection_id": record.connection_id,
        "provider": record.provider,
        "resource": record.resource,
        "visibility": record.visibility.value,
        "subjects": [
            {
                "role": subject.role,
                "identifiers": [
                    {"kind": i.kind.value, "value": i.value} for i in subject.identifiers
                ],
            }
            for subject in record.subjects
        ],
        "data": {name: value.value for name, value in record.data.items()},
        "categories": {name: value.category for name, value in record.data.items()},
        "occurred_at": record.occurred_at.isoformat() if record.occurred_at else None,
    }


def _csv(records: Sequence[Mapping[str, Any]]) -> bytes:
    """One row per field: records of different resources share one flat table."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 §2: CRLF
    writer.writerow(CSV_COLUMNS)
    for record in records:
        for name, value in record["data"].items():
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            writer.writerow(
                [
                    record["provider"],
                    record["connection_id"],
                    record["resource"],
                    record["id"],
                    name,
                    record["categories"].get(name, ""),
                    text,
                ]
            )
    return out.getvalue().encode()


def build_bundle(
    records: Sequence[Mapping[str, Any]],
    *,
    request_id: str,
    customer_id: str,
    purpose: str,
    generated_at: datetime,
    sources: Sequence[Mapping[str, Any]],
    not_fetched: Sequence[Mapping[str, Any]] = (),
    account_claims: Sequence[Mapping[str, Any]] = (),
) -> Bundle:
    """The files and their manifest; equal inputs give byte-equal files.

    ``account_claims``: per connection, ``{connection_id, provider, claims}`` kept
    about the subject as its account holder; a file of their own when any.
    """
    ordered = sorted(records, key=lambda r: (r["connection_id"], r["resource"], r["id"]))
    body = {
        "request_id": request_id,
        "customer_id": customer_id,
        "generated_at": generated_at.isoformat(),
        "records": ordered,
    }
    files: tuple[BundleFile, ...] = (
        BundleFile(
            JSON_NAME,
            "application/json",
            json.dumps(body, sort_keys=True, indent=2, ensure_ascii=False).encode(),
        ),
        BundleFile(CSV_NAME, "text/csv", _csv(ordered)),
    )
    kept = sorted(account_claims, key=lambda c: c["connection_id"])
    if kept:
        claims_body = {
            "request_id": request_id,
            "customer_id": customer_id,
            "generated_at": generated_at.isoformat(),
            "account_claims": [dict(c) for c in kept],
        }
        files += (
            BundleFile(
                CLAIMS_NAME,
                "application/json",
                json.dumps(claims_body, sort_keys=True, indent=2, ensure_ascii=False).encode(),
            ),
        )
    manifest = {
        "request_id": request_id,
        "customer_id": customer_id,
        "generated_at": generated_at.isoformat(),
        "purpose": purpose,
        "records": len(ordered),
        "categories": sorted({c for r in ordered for c in r["categories"].values()}),
        # Every record passed the policy engine for ``purpose`` on the live fetch.
        "policy": {"purpose": purpose, "rules": list(RULE_IDS)},
        "sources": [dict(s) for s in sources],
        "not_fetched": [dict(n) for n in not_fetched],
        "account_claims": [
            {
                "connection_id": c["connection_id"],
                "provider": c["provider"],
                "claims": sorted(c["claims"]),
            }
            for c in kept
        ],
        "files": [
            {
                "name": f.name,
                "media_type": f.media_type,
                "bytes": len(f.content),
                "sha256": f.sha256,
            }
            for f in files
        ],
    }
    return Bundle(files=files, manifest=manifest)
