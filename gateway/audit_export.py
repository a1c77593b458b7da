"""Exporting a customer's audit log to NDJSON or CSV, with a verification manifest beside it.

An export is evidence handed to someone outside the gateway, so it carries
what they need to check it without trusting us (CloudTrail's digest files are
the model, "CloudTrail digest file structure"):

* every event with its canonical content, ``prev_hash`` and ``hash``, in chain
  order, so the hash chain re-verifies from the file alone
  (``hash = SHA-256(prefix || prev_hash || canonical content)``,
  :mod:`gateway.audit.chain`);
* a manifest (``<out>.manifest.json``): customer, first and last seq, the head
  hash, the latest signed checkpoint note covering the export (C2SP
  signed-note, verifiable with the published verifier key), the SHA-256 of
  the export file, and the command that verifies it.

An NDJSON line is the event's canonical content object plus ``prev_hash``
and ``hash``; re-serializing the object without those two keys (sorted keys,
no whitespace, UTF-8: RFC 8785 for this value set) gives the hashed bytes. A
CSV row carries the canonical content verbatim in its ``content`` column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.audit import (
    AuditStore,
    Checkpoint,
    CheckpointKeys,
    canonical_content,
    event_hash,
    format_time,
    genesis_hash,
)

__all__ = ["FORMATS", "ExportCheck", "export_log", "manifest_path", "verify_export"]

FORMATS = ("ndjson", "csv")
CSV_COLUMNS = (
    "customer_id",
    "seq",
    "occurred_at",
    "action",
    "outcome",
    "problem_type",
    "caller_id",
    "caller_class",
    "connection_id",
    "provider",
    "resource",
    "purpose",
    "record_count",
    "categories",
    "dropped",
    "trace_id",
    "prev_hash",
    "hash",
    "content",
)


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name + ".manifest.json")


async def export_log(
    store: AuditStore,
    customer_id: str,
    *,
    fmt: str,
    out: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the export and its manifest; returns the manifest."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    digest = hashlib.sha256()
    first: int | None = None
    last: int | None = None
    head_hash = ""
    count = 0
    with out.open("w", encoding="utf-8", newline="") as file:
        as_csv = fmt == "csv"
        if as_csv:
            digest.update(_write_row(file, CSV_COLUMNS))
        async for event in store.events(customer_id):
            if since is not None and event.occurred_at < since:
                continue
            if until is not None and event.occurred_at >= until:
                break
            content = canonical_content(event)
            if not as_csv:
                line = _ndjson_line(content, event.prev_hash, event.hash)
                file.write(line)
                digest.update(line.encode("utf-8"))
            else:
                body = json.loads(content)
                row = [_cell(body[c]) if c in body else "" for c in CSV_COLUMNS[:-3]] + [
                    event.prev_hash,
                    event.hash,
                    content.decode("utf-8"),
                ]
                digest.update(_write_row(file, row))
            first = event.seq if first is None else first
            last, head_hash = event.seq, event.hash
            count += 1
            if progress is not None and count % 10_000 == 0:
                progress(count)
    if progress is not None:
        progress(count)
    checkpoints = await store.checkpoints(customer_id)
    covering = [c for c in checkpoints if last is not None and c.seq <= last]
    latest = covering[-1] if covering else None
    manifest: dict[str, Any] = {
        "customer_id": customer_id,
        "format": fmt,
        "file": out.name,
        "sha256": digest.hexdigest(),
        "events": count,
        "first_seq": first,
        "last_seq": last,
        "head": {"seq": last, "hash": head_hash or None},
        "since": format_time(since) if since else None,
        "until": format_time(until) if until else None,
        "checkpoint": (
            {"seq": latest.seq, "key_id": latest.key_id, "note": latest.note} if latest else None
        ),
        "verify": f"linkgate audit verify --export {out}",
    }
    manifest_path(out).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _ndjson_line(content: bytes, prev_hash: str, hash_: str) -> str:
    body = json.loads(content)
    body["prev_hash"] = prev_hash
    body["hash"] = hash_
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _write_row(file: io.TextIOWrapper, row: Any) -> bytes:
    # Hash exactly what reaches the file: render the row to a buffer first.
    buffer = io.StringIO()
    csv.writer(buffer).writerow(row)
    text = buffer.getvalue()
    file.write(text)
    return text.encode("utf-8")


@dataclass(frozen=True, slots=True)
class ExportCheck:
    """What re-verifying an export found."""

    ok: bool
    events_checked: int
    first_bad_seq: int | None = None
    problem: str = ""


def verify_export(out: Path, keys: CheckpointKeys) -> ExportCheck:
    """Re-verify an export from the file and its manifest alone."""
    manifest = json.loads(manifest_path(out).read_text(encoding="utf-8"))
    data = out.read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        return ExportCheck(False, 0, None, "the file's SHA-256 differs from the manifest's")
    customer_id = manifest["customer_id"]
    hashes: dict[int, str] = {}
    previous: tuple[int, str] | None = None
    checked = 0
    for seq, content, prev_hash, hash_ in _rows(data.decode("utf-8"), manifest["format"]):
        if json.loads(content).get("customer_id") != customer_id:
            return ExportCheck(False, checked, seq, f"event {seq} belongs to another log")
        if previous is None and seq == 1 and prev_hash != genesis_hash(customer_id):
            return ExportCheck(False, checked, seq, "the first event does not start the chain")
        if previous is not None and (seq != previous[0] + 1 or prev_hash != previous[1]):
            return ExportCheck(False, checked, seq, f"event {seq} does not follow {previous[0]}")
        if event_hash(prev_hash, content) != hash_:
            return ExportCheck(False, checked, seq, f"event {seq} does not match its hash")
        hashes[seq] = hash_
        previous = (seq, hash_)
        checked += 1
    if checked != manifest["events"] or (previous and previous[0] != manifest["last_seq"]):
        return ExportCheck(False, checked, None, "the file holds other events than the manifest")
    if previous and manifest["head"]["hash"] != previous[1]:
        return ExportCheck(False, checked, previous[0], "the head hash differs from the manifest")
    note = manifest.get("checkpoint")
    if note:
        checkpoint = Checkpoint.parse(note["note"])
        problem = keys.problem(checkpoint)
        if problem:
            return ExportCheck(False, checked, checkpoint.seq, f"checkpoint: {problem}")
        expected = hashes.get(checkpoint.seq)
        if expected is not None and expected != checkpoint.head_hash:
            return ExportCheck(
                False, checked, checkpoint.seq, "the signed checkpoint disagrees with the file"
            )
    return ExportCheck(True, checked)


def _rows(text: str, fmt: str) -> Iterator[tuple[int, bytes, str, str]]:
    if fmt == "csv":
        for row in csv.DictReader(io.StringIO(text, newline="")):
            yield int(row["seq"]), row["content"].encode("utf-8"), row["prev_hash"], row["hash"]
        return
    for line in text.splitlines():
        body = json.loads(line)
        prev_hash, hash_ = body.pop("prev_hash"), body.pop("hash")
        content = json.dumps(
            body, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        yield int(body["seq"]), content, prev_hash, hash_
