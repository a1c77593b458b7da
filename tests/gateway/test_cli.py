"""The `linkgate` command: services, config check, key rotation."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from gateway.callers import CallerKind, authenticate
from gateway.cli import main
from gateway.connections import ConnectionStore
from gateway.oauth import TokenSet
from gateway.provider_tokens import ScopedTokenStore
from gateway.storage import connections, create_engine
from gateway.storage.migrate import upgrade
from gateway.vault import KeyRing, generate_key_entry, token_row
from providers.base import Account
from tests.conftest import undo_logging

OLD = generate_key_entry("k1")
NEW = generate_key_entry("k2")


@pytest.fixture
def keys_set(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """The settings every command needs besides the database, no config file."""
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.delenv("LINKGATE_CONFIG", raising=False)
    monkeypatch.setenv("LINKGATE_VAULT_KEYS", OLD)
    monkeypatch.setenv("LINKGATE_SECRET_KEY", secrets.token_urlsafe(48))


@pytest.fixture
def env(keys_set: None, monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("LINKGATE_DATABASE_URL", database_url)
    return database_url


async def _authenticates(url: str, key: str) -> bool:
    engine = create_engine(url)
    try:
        caller = await authenticate(engine, f"Bearer {key}", CallerKind.SERVICE)
    finally:
        await engine.dispose()
    return caller.customers == frozenset({"acme", "globex"})


def test_services_create_prints_the_key_once_as_json(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`services create --json` prints {id, key}; the key authenticates; `list` never shows it."""
    code = main(
        [
            "services", "create", "crm", "--customer", "acme", "--customer", "globex",
            "--purpose", "essential.service", "--class", "affiliate", "--json",
        ]
    )  # fmt: skip
    created = json.loads(capsys.readouterr().out)
    main(["services", "list", "--json"])
    listed = json.loads(capsys.readouterr().out)

    assert code == 0
    assert created["key"].startswith("lgk_")
    assert asyncio.run(_authenticates(env, created["key"]))
    assert [entry["id"] for entry in listed] == [created["id"]]
    assert listed[0]["class"] == "affiliate"
    assert created["key"] not in json.dumps(listed)


def test_services_create_refuses_a_sale_purpose(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A purpose the notice forbids (selling data) cannot be granted."""
    code = main(
        ["services", "create", "broker", "--customer", "acme", "--purpose", "third_party_sharing"]
    )

    assert code == 2
    assert "--purpose" in capsys.readouterr().err


def test_services_revoke_stops_the_key(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A revoked key no longer authenticates."""
    main(["services", "create", "crm", "--customer", "acme", "--purpose", "essential.service",
          "--json"])  # fmt: skip
    created = json.loads(capsys.readouterr().out)

    assert main(["services", "revoke", created["id"]]) == 0
    with pytest.raises(Exception, match="revoked"):
        asyncio.run(_authenticates(env, created["key"]))


def test_config_check_lists_every_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """Invalid settings fail with one line per problem and exit code 2."""
    monkeypatch.chdir(str(tmp_path))
    for name in ("LINKGATE_CONFIG", "LINKGATE_VAULT_KEYS", "LINKGATE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LINKGATE_DATABASE_URL", "mysql://nope")
    monkeypatch.setenv("LINKGATE_PORT", "eighty")

    code = main(["config", "check"])
    err = capsys.readouterr().err

    assert code == 2
    for setting in (
        "LINKGATE_DATABASE_URL",
        "LINKGATE_VAULT_KEYS",
        "LINKGATE_SECRET_KEY",
        "LINKGATE_PORT",
    ):
        assert setting in err


def test_migrate_names_the_fix_when_the_database_is_unreachable(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator whose database is down gets one line naming the setting to check,
    not a traceback; the exit code says it failed."""
    monkeypatch.setenv(
        "LINKGATE_DATABASE_URL", "postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/linkgate"
    )

    code = main(["migrate"])
    err = capsys.readouterr().err

    assert code == 1
    assert err.startswith("linkgate: cannot migrate postgresql+asyncpg://postgres:***@"), err
    assert "LINKGATE_DATABASE_URL" in err
    assert "Traceback" not in err
    assert "hunter2" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migrate_refuses_subject_rows_without_an_event_and_changes_nothing(
    kind: str,
    request: pytest.FixtureRequest,
    keys_set: None,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """0012 files each subject row under its event's time; a row whose event is gone has
    none. The operator is told how to find and remove such rows, and the database is
    left at 0011 with every row still there."""
    url = (
        f"sqlite+aiosqlite:///{tmp_path}/old.db"
        if kind == "sqlite"
        else request.getfixturevalue("postgres_database")
    )
    upgrade(url, "0011")
    asyncio.run(_sql(url, "INSERT INTO audit_subjects VALUES ('acme', 'hmac-sha256:ab', 7)"))
    monkeypatch.setenv("LINKGATE_DATABASE_URL", url)

    code = main(["migrate"])
    err = capsys.readouterr().err

    assert code == 1
    assert "audit_subjects holds 1 rows whose event is gone" in err, err
    assert "delete them, and migrate again" in err
    assert "Traceback" not in err
    assert asyncio.run(_sql(url, "SELECT version_num FROM alembic_version")) == [("0011",)]
    assert asyncio.run(_sql(url, "SELECT * FROM audit_subjects")) == [("acme", "hmac-sha256:ab", 7)]


async def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


async def _page_token(url: str, connection_id: str) -> str | None:
    """The scoped token, opened with the new key alone."""
    engine = create_engine(url)
    try:
        return await ScopedTokenStore(engine, KeyRing.parse(NEW)).get(connection_id, "page_1")
    finally:
        await engine.dispose()


def test_keys_rotate_reseals_every_token_under_the_new_key(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rotation re-seals connection and scoped tokens under the first key, with progress."""

    async def link() -> str:
        engine = create_engine(env)
        try:
            connection, _ = await ConnectionStore(engine, KeyRing.parse(OLD)).link(
                customer_id="acme", provider="sandbox",
                account=Account(subject="u1", name="Ada", issuer="http://idp"),
                tokens=TokenSet(access_token="at-canary", token_type="Bearer", expires_at=None,
                                refresh_token="rt-canary"),
                scopes=("openid",),
            )  # fmt: skip
            await ScopedTokenStore(engine, KeyRing.parse(OLD)).replace(
                connection.id, {"page_1": "page-token-canary"}
            )
        finally:
            await engine.dispose()
        return connection.id

    async def sealed() -> dict[str, str]:
        engine = create_engine(env)
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(select(connections))).mappings().one()
        finally:
            await engine.dispose()
        return dict(row)

    connection_id = asyncio.run(link())
    monkeypatch.setenv("LINKGATE_VAULT_KEYS", f"{NEW},{OLD}")

    assert main(["keys", "rotate"]) == 0
    row = asyncio.run(sealed())
    err = capsys.readouterr().err

    assert "2/2" in err
    assert asyncio.run(_page_token(env, connection_id)) == "page-token-canary"
    new_only = KeyRing.parse(NEW)
    assert new_only.open(row["access_token"], row=token_row(connection_id, "access_token")) == (
        "at-canary"
    )
    assert new_only.open(row["refresh_token"], row=token_row(connection_id, "refresh_token")) == (
        "rt-canary"
    )


def test_audit_partitions_lists_the_months_and_creates_ahead(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`linkgate audit partitions --create-ahead 5` creates the two months beyond the
    migration's three ahead and lists every month with DEFAULT; SQLite says it has none."""
    code = main(["audit", "partitions", "--create-ahead", "5"])
    out = capsys.readouterr().out
    if env.startswith("sqlite"):
        assert (code, out) == (
            0,
            "the audit log is partitioned on PostgreSQL only; this database is not\n",
        )
        return
    created = [line for line in out.splitlines() if line.startswith("created ")]
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("audit_")]
    assert (code, len(created), len(listed)) == (0, 4, 2 * (6 + 1))  # 6 months and DEFAULT
    assert "audit_events_default" in listed


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_audit_export_names_a_time_utc_cannot_hold(
    env: str, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """A well-formed --since an hour before year 1 in UTC is one line and exit 2, no traceback."""
    upgrade(env)

    code = main(
        ["audit", "export", "--customer", "acme", "--out", f"{tmp_path}/out",
         "--since", "0001-01-01T00:00:00+01:00"]
    )  # fmt: skip
    err = capsys.readouterr().err

    assert code == 2
    assert "--since" in err
    assert "Traceback" not in err


DATABASE_COMMANDS = [
    ["services", "list"],
    ["services", "create", "crm", "--customer", "acme", "--purpose", "essential.service"],
    ["services", "revoke", "ser_x"],
    ["auditors", "list"],
    ["keys", "rotate"],
    ["requests", "list", "--customer", "acme"],
    ["purge"],
    ["audit", "verify", "--customer", "acme"],
    ["audit", "partitions"],
    ["audit", "export", "--customer", "acme", "--out", os.devnull],
    ["audit", "prune", "--before", "2020-01-01T00:00:00Z"],
]


@pytest.fixture
def logging_undone() -> Iterator[None]:
    """`requests` and `purge` configure logging onto this test's stderr: undone after."""
    yield
    undo_logging()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_a_command_names_the_fix_when_the_database_is_unreachable(
    env: str,
    logging_undone: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """Every command that reads or writes the database: one line naming the setting, exit 1."""
    monkeypatch.setenv(
        "LINKGATE_DATABASE_URL", "postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/linkgate"
    )

    code = main(command)
    err = capsys.readouterr().err

    assert code == 1
    assert "Traceback" not in err
    assert "hunter2" not in err
    [line] = [line for line in err.splitlines() if line.startswith("linkgate: ")]
    assert "LINKGATE_DATABASE_URL" in line


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_command_on_a_database_never_migrated_says_to_migrate(
    env: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty SQLite file (no tables yet) is one line pointing at linkgate migrate."""
    monkeypatch.setenv("LINKGATE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/empty.db")

    code = main(["services", "list"])
    err = capsys.readouterr().err

    assert code == 1
    assert "Traceback" not in err
    assert err.startswith("linkgate: "), err
    assert "linkgate migrate" in err
    assert len(err.strip().splitlines()) == 1, err
