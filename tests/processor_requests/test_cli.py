"""`linkgate requests …` and `linkgate purge` against a real database."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator

import pytest

from gateway.cli import main
from gateway.vault import generate_key_entry
from tests.conftest import quiet_structlog


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: object) -> Iterator[str]:
    """Settings in the environment; the logging the commands configure is undone after."""
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.delenv("LINKGATE_CONFIG", raising=False)
    monkeypatch.setenv("LINKGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("LINKGATE_VAULT_KEYS", generate_key_entry("k1"))
    monkeypatch.setenv("LINKGATE_SECRET_KEY", secrets.token_urlsafe(48))
    yield database_url
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == "linkgate":
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    quiet_structlog()


def test_create_verify_run_and_show(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A request filed unverified waits; verified and run, it completes, step by step."""
    main(["requests", "create", "--customer", "acme", "--kind", "objection",
          "--email", "jane@customer.example", "--purpose", "marketing.communications",
          "--json"])  # fmt: skip
    created = json.loads(capsys.readouterr().out)
    main(["requests", "run"])
    waiting = capsys.readouterr().out
    main(["requests", "verify", created["id"], "--by", "dpo@acme.example"])
    capsys.readouterr()
    code = main(["requests", "run"])
    ran = capsys.readouterr()
    main(["requests", "show", created["id"]])
    shown = json.loads(capsys.readouterr().out)

    assert created["status"] == "received"
    assert "nothing to run" in waiting
    assert code == 0
    assert "step 1/1: suppress" in ran.err
    assert shown["status"] == "completed"
    assert "jane@" not in ran.out + ran.err + json.dumps(shown)


def test_purge_reports_what_it_deleted(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """On an empty database the purge says nothing is past retention."""
    assert main(["purge"]) == 0
    assert "nothing is past retention" in capsys.readouterr().out
