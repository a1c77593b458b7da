"""Auditors read, search, verify and account for the audit log over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, update

from gateway.audit import (
    Action,
    AuditStore,
    CheckpointSigner,
    EventDraft,
    Outcome,
    SubjectHasher,
)
from gateway.callers import CallerKind
from gateway.cli import main
from gateway.storage import audit_tables, create_engine, writer
from policies.vocabulary import CallerClass
from tests.audit_api.conftest import Keys, make_key
from tests.gateway.conftest import CUSTOMER, OTHER_CUSTOMER, Stack

JANE_AS_AUDITOR_TYPES_IT = "  JANE@customer.EXAMPLE "


async def _connection(stack: Stack) -> str:
    await stack.link()
    async with stack.api() as api:
        response = await api.get("/v1/connections", params={"customer_id": CUSTOMER})
    return str(response.json()["connections"][0]["id"])


async def _read(
    stack: Stack, connection_id: str, key: str | None = None, purpose: str = "essential.service"
) -> httpx.Response:
    async with stack.api(key) as api:
        response = await api.get(
            f"/v1/connections/{connection_id}/records/conversations", params={"purpose": purpose}
        )
    assert response.status_code == 200, response.text
    return response


async def _get(stack: Stack, key: str, path: str, **params: Any) -> httpx.Response:
    async with stack.api(key) as api:
        return await api.get(path, params=params)


def _problem(response: httpx.Response, status: int, kind: str) -> None:
    assert (response.status_code, response.headers["content-type"]) == (
        status,
        "application/problem+json",
    )
    assert response.json()["type"].endswith("/" + kind)


async def test_an_auditor_reads_only_its_own_customers(stack: Stack, auditors: Keys) -> None:
    """Auditor of acme reads acme; auditor of globex gets 403 (404 for an event id) on acme."""
    await _read(stack, await _connection(stack))

    own = await _get(stack, auditors.acme, "/v1/audit/events", customer_id=CUSTOMER)
    search = await _get(stack, auditors.globex, "/v1/audit/events", customer_id=CUSTOMER)
    one = await _get(stack, auditors.globex, f"/v1/audit/events/{CUSTOMER}/1")
    verify = await _get(stack, auditors.globex, "/v1/audit/verify", customer_id=CUSTOMER)
    disclosures = await _get(
        stack,
        auditors.globex,
        "/v1/audit/disclosures",
        customer_id=CUSTOMER,
        subject="jane@customer.example",
    )
    mine = await _get(stack, auditors.globex, "/v1/audit/events")

    assert own.status_code == 200
    assert {e["customer_id"] for e in own.json()["events"]} == {CUSTOMER}
    _problem(search, 403, "forbidden")
    _problem(one, 404, "not-found")
    _problem(verify, 403, "forbidden")
    _problem(disclosures, 403, "forbidden")
    assert mine.json()["events"] == []


async def test_a_service_key_cannot_read_the_log_and_the_refusal_is_audited(
    stack: Stack, auditors: Keys
) -> None:
    """A service key gets 403 at every audit endpoint; each refusal is a caller.refused event."""
    search = await _get(stack, stack.service_key, "/v1/audit/events", customer_id=CUSTOMER)
    verify = await _get(stack, stack.service_key, "/v1/audit/verify", customer_id=CUSTOMER)
    unknown = await _get(stack, "lga_" + "x" * 43, "/v1/audit/events", customer_id=CUSTOMER)
    refused = await _get(
        stack, auditors.acme, "/v1/audit/events", customer_id=CUSTOMER, action="caller.refused"
    )

    _problem(search, 403, "forbidden")
    _problem(verify, 403, "forbidden")
    _problem(unknown, 401, "unauthenticated")
    assert [(e["outcome"], e["caller_class"]) for e in refused.json()["events"]] == [
        ("denied", "internal"),
        ("denied", "internal"),
    ]


@pytest.mark.parametrize(
    "bounds",
    [
        {"since": "0001-01-01T00:00:00+01:00"},  # an hour before the first representable UTC
        {"until": "9999-12-31T23:59:59-01:00"},  # an hour after the last
    ],
)
async def test_a_time_outside_what_utc_can_hold_is_a_bad_request(
    stack: Stack, auditors: Keys, bounds: dict[str, str]
) -> None:
    """A well-formed date-time whose UTC falls outside years 1-9999 is a 400, never a 500."""
    answer = await _get(stack, auditors.acme, "/v1/audit/events", customer_id=CUSTOMER, **bounds)

    _problem(answer, 400, "invalid-parameter")
    assert answer.json()["parameter"] == next(iter(bounds))


async def test_an_auditor_of_another_customer_is_recorded_as_refused(
    stack: Stack, auditors: Keys
) -> None:
    """Globex's auditor asking for acme leaves a caller.refused event in acme's log."""
    await _get(stack, auditors.globex, "/v1/audit/verify", customer_id=CUSTOMER)

    refused = await _get(
        stack, auditors.acme, "/v1/audit/events", customer_id=CUSTOMER, action="caller.refused"
    )

    [event] = refused.json()["events"]
    assert event["problem_type"].endswith("/forbidden")
    assert event["caller_id"].startswith("aud_")


async def test_subject_search_finds_an_email_written_differently(
    stack: Stack, auditors: Keys
) -> None:
    """Jane's email in another case and with spaces finds the read; the subject is never echoed."""
    connection_id = await _connection(stack)
    read = await _read(stack, connection_id)

    found = await _get(
        stack,
        auditors.acme,
        "/v1/audit/events",
        customer_id=CUSTOMER,
        subject=JANE_AS_AUDITOR_TYPES_IT,
    )
    nobody = await _get(stack, auditors.acme, "/v1/audit/events", subject="nobody@customer.example")
    bad = await _get(stack, auditors.acme, "/v1/audit/events", subject="not an identifier")

    [event] = found.json()["events"]
    assert (event["action"], event["connection_id"], event["trace_id"]) == (
        "records.read",
        connection_id,
        read.json()["trace_id"],
    )
    assert "jane" not in found.text.lower()
    assert nobody.json()["events"] == []
    _problem(bad, 400, "invalid-parameter")
    assert "not an identifier" not in bad.text


async def test_subject_search_finds_reads_for_a_pseudonymizing_purpose(
    stack: Stack, auditors: Keys
) -> None:
    """An analytics read releases pseudonyms, yet Jane's real email still finds its event."""
    connection_id = await _connection(stack)
    analytics = await make_key(
        stack, CallerKind.SERVICE, [CUSTOMER], purposes=("analytics.reporting",)
    )
    read = await _read(stack, connection_id, analytics, purpose="analytics.reporting")
    assert "customer.example" not in read.text.lower()

    found = await _get(
        stack, auditors.acme, "/v1/audit/events", subject="email:jane@customer.example"
    )

    assert [e["purpose"] for e in found.json()["events"]] == ["analytics.reporting"]


async def test_search_pages_newest_first_with_an_opaque_cursor(
    stack: Stack, auditors: Keys
) -> None:
    """limit=2 pages walk every event once, newest first; a tampered cursor is a 400."""
    connection_id = await _connection(stack)
    for _ in range(3):
        await _read(stack, connection_id)
    everything = await _get(stack, auditors.acme, "/v1/audit/events", customer_id=CUSTOMER)
    expected = [e["seq"] for e in everything.json()["events"]]

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"customer_id": CUSTOMER, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await _get(stack, auditors.acme, "/v1/audit/events", **params)).json()
        seen += [e["seq"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    tampered = await _get(
        stack, auditors.acme, "/v1/audit/events", cursor=expected and "x" + "A" * 40
    )

    assert seen == expected == sorted(expected, reverse=True)
    assert len(expected) >= 4
    _problem(tampered, 400, "invalid-cursor")


async def test_one_event_by_id_and_its_trace_summary(stack: Stack, auditors: Keys) -> None:
    """GET /v1/audit/events/{customer}/{seq} returns the event with its hash and trace summary."""
    await _read(stack, await _connection(stack))
    newest = (await _get(stack, auditors.acme, "/v1/audit/events", limit=1)).json()["events"][0]

    one = await _get(stack, auditors.acme, f"/v1/audit/events/{CUSTOMER}/{newest['seq']}")
    missing = await _get(stack, auditors.acme, f"/v1/audit/events/{CUSTOMER}/99999")

    assert one.json() == newest
    assert set(one.json()["trace_summary"]) == {"spans", "dropped_spans"}
    assert len(one.json()["hash"]) == 64
    _problem(missing, 404, "not-found")


async def _tamper(stack: Stack, seq: int) -> None:
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.begin() as conn:
            events = audit_tables.events
            await conn.execute(
                update(events)
                .where(events.c.customer_id == CUSTOMER, events.c.seq == seq)
                .values(content=func.replace(events.c.content, "records.read", "records.reaD"))
            )
    finally:
        await engine.dispose()


def _cli_env(monkeypatch: pytest.MonkeyPatch, stack: Stack, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LINKGATE_CONFIG", raising=False)
    monkeypatch.setenv("LINKGATE_DATABASE_URL", stack.settings.database_url)
    monkeypatch.setenv("LINKGATE_VAULT_KEYS", stack.settings.vault_keys)
    monkeypatch.setenv("LINKGATE_SECRET_KEY", stack.settings.secret_key)


async def test_verify_names_the_first_bad_seq_after_sql_tampering(
    stack: Stack,
    auditors: Keys,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One altered row: the API and `linkgate audit verify` both name its seq; the CLI exits 1."""
    await _read(stack, await _connection(stack))
    before = (await _get(stack, auditors.acme, "/v1/audit/verify", customer_id=CUSTOMER)).json()
    [read] = (await _get(stack, auditors.acme, "/v1/audit/events", action="records.read")).json()[
        "events"
    ]
    await _tamper(stack, read["seq"])

    after = (await _get(stack, auditors.acme, "/v1/audit/verify", customer_id=CUSTOMER)).json()
    _cli_env(monkeypatch, stack, tmp_path)
    code = await asyncio.to_thread(main, ["audit", "verify", "--customer", CUSTOMER])

    assert before["ok"] is True
    assert before["first_bad_seq"] is None
    assert (after["ok"], after["first_bad_seq"]) == (False, read["seq"])
    assert code == 1
    assert f"BROKEN at seq {read['seq']}" in capsys.readouterr().out


async def test_export_manifest_matches_and_the_ndjson_reverifies(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The manifest's SHA-256 is the file's; the export re-verifies; one changed byte does not."""
    await _read(stack, await _connection(stack))
    _cli_env(monkeypatch, stack, tmp_path)
    key_file = tmp_path / "audit.key"
    assert await asyncio.to_thread(main, ["audit", "keygen", str(key_file)]) == 0
    monkeypatch.setenv("LINKGATE_AUDIT_KEY_FILE", str(key_file))
    assert await asyncio.to_thread(main, ["audit", "checkpoint", "--customer", CUSTOMER]) == 0
    out = tmp_path / "acme.ndjson"

    code = await asyncio.to_thread(
        main, ["audit", "export", "--customer", CUSTOMER, "--format", "ndjson", "--out", str(out)]
    )
    manifest = json.loads((tmp_path / "acme.ndjson.manifest.json").read_text())
    verified = await asyncio.to_thread(main, ["audit", "verify", "--export", str(out)])
    exported = hashlib.sha256(out.read_bytes()).hexdigest()
    out.write_bytes(out.read_bytes().replace(b"records.read", b"records.reaD", 1))
    broken = await asyncio.to_thread(main, ["audit", "verify", "--export", str(out)])
    lines = out.read_text().splitlines()

    assert (code, verified, broken) == (0, 0, 1)
    assert manifest["sha256"] == exported
    assert manifest["first_seq"] == 1
    assert manifest["last_seq"] == manifest["head"]["seq"] == len(lines)
    assert manifest["checkpoint"]["seq"] == manifest["last_seq"]
    assert manifest["verify"] == f"linkgate audit verify --export {out}"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert "ok," in capsys.readouterr().out


async def test_export_file_hash_is_in_its_manifest_csv(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A CSV export's manifest names the file's SHA-256 and the CSV re-verifies."""
    await _read(stack, await _connection(stack))
    _cli_env(monkeypatch, stack, tmp_path)
    out = tmp_path / "acme.csv"

    code = await asyncio.to_thread(
        main, ["audit", "export", "--customer", CUSTOMER, "--format", "csv", "--out", str(out)]
    )
    manifest = json.loads((tmp_path / "acme.csv.manifest.json").read_text())

    assert code == 0
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert await asyncio.to_thread(main, ["audit", "verify", "--export", str(out)]) == 0


async def test_disclosures_count_the_last_12_months_by_recipient_class(
    stack: Stack, auditors: Keys
) -> None:
    """Reads by internal, affiliate and third-party services are counted; older ones are not."""
    hasher = SubjectHasher(stack.settings.secret_key.encode())
    old = datetime.now(UTC) - timedelta(days=400)
    engine = create_engine(stack.settings.database_url)
    try:
        store = AuditStore(writer(engine), audit_tables, read_engine=engine, clock=lambda: old)
        await store.append(
            [
                EventDraft(
                    customer_id=CUSTOMER,
                    action=Action.RECORDS_READ,
                    outcome=Outcome.ALLOWED,
                    caller_id="svc_old",
                    caller_class="third_party",
                    purpose="essential.service",
                    record_count=1,
                    categories=("user.contact.email",),
                    subjects=(hasher.hash(CUSTOMER, "email:jane@customer.example"),),
                )
            ]
        )
    finally:
        await engine.dispose()
    connection_id = await _connection(stack)
    await _read(stack, connection_id)
    for caller_class in (CallerClass.AFFILIATE, CallerClass.THIRD_PARTY):
        key = await make_key(
            stack,
            CallerKind.SERVICE,
            [CUSTOMER],
            purposes=("essential.service",),
            caller_class=caller_class,
        )
        await _read(stack, connection_id, key)

    year = await _get(
        stack,
        auditors.acme,
        "/v1/audit/disclosures",
        customer_id=CUSTOMER,
        subject="Jane@Customer.Example",
    )
    two_years = await _get(
        stack,
        auditors.acme,
        "/v1/audit/disclosures",
        customer_id=CUSTOMER,
        subject="jane@customer.example",
        months=24,
    )

    body = year.json()
    assert body["months"] == 12
    assert {name: r["events"] for name, r in body["recipients"].items()} == {
        "affiliate": 1,
        "internal": 1,
        "third_party": 1,
    }
    assert body["recipients"]["third_party"]["purposes"] == ["essential.service"]
    assert body["purposes"]["essential.service"]["events"] == 3
    assert body["categories"]
    assert two_years.json()["recipients"]["third_party"]["events"] == 2
    assert "jane" not in year.text.lower()


async def test_the_checkpoint_job_signs_each_head(
    stack: Stack, auditors: Keys, tmp_path: Path
) -> None:
    """With a key file and a short interval, serve signs acme's head and verify still passes."""
    from dataclasses import replace

    from gateway.app import create_app
    from gateway.audit import CheckpointKeys, generate_key_file
    from tests.conftest import Servers

    key_file = tmp_path / "audit.key"
    generate_key_file(key_file)
    verifier = CheckpointSigner.from_key_file(key_file).verifier_key
    await _read(stack, await _connection(stack))
    settings = replace(stack.settings, audit_key_file=str(key_file), audit_checkpoint_interval=0.1)
    servers = Servers()
    url = servers.reserve()
    servers.serve(url, create_app(settings))
    engine = create_engine(stack.settings.database_url)
    try:
        store = AuditStore(engine, audit_tables)
        for _ in range(100):
            checkpoints = await store.checkpoints(CUSTOMER)
            if checkpoints:
                break
            await asyncio.sleep(0.1)
        # The signing gateway knows its own key; other verifiers need the verifier key.
        async with httpx.AsyncClient(base_url=url) as client:
            verify = await client.get(
                "/v1/audit/verify",
                params={"customer_id": CUSTOMER},
                headers={"Authorization": f"Bearer {auditors.acme}"},
            )
    finally:
        servers.stop_all()
        await engine.dispose()

    [checkpoint] = checkpoints[-1:]
    assert CheckpointKeys.parse([verifier]).problem(checkpoint) == ""
    assert checkpoint.seq >= 1
    assert verify.json()["ok"] is True


def test_auditors_create_prints_the_key_once_and_revoke_stops_it(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`auditors create --json` prints {id, key} once; `list` never shows it; `revoke` works."""
    from gateway.vault import generate_key_entry

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LINKGATE_CONFIG", raising=False)
    monkeypatch.setenv("LINKGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("LINKGATE_VAULT_KEYS", generate_key_entry("k1"))
    monkeypatch.setenv("LINKGATE_SECRET_KEY", secrets.token_urlsafe(48))

    created = main(
        [
            "auditors", "create", "privacy", "--customer", CUSTOMER,
            "--customer", OTHER_CUSTOMER, "--json",
        ]
    )  # fmt: skip
    made = json.loads(capsys.readouterr().out)
    listed = main(["auditors", "list", "--json"])
    listing = capsys.readouterr().out
    revoked = main(["auditors", "revoke", made["id"]])

    assert (created, listed, revoked) == (0, 0, 0)
    assert made["key"].startswith("lga_")
    assert made["key"] not in listing
    assert json.loads(listing)[0]["customers"] == [CUSTOMER, OTHER_CUSTOMER]
