from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from gateway.observability.logs import CachedLogger, timestamp

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjYW5hcnktc3ViamVjdCJ9.c2lnbmF0dXJlLWNhbmFyeS1abThYdzN2VDlr"


def rendered_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line]


def test_events_are_json_lines_with_iso_timestamps(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each event is one JSON object on stderr with event, level and an ISO timestamp."""
    configured_logging(level="info")

    structlog.get_logger().info("token.refreshed", connection_id="c_1")

    [line] = rendered_lines(capsys)
    assert line["event"] == "token.refreshed"
    assert line["level"] == "info"
    assert line["connection_id"] == "c_1"
    assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None


def test_request_context_is_merged_from_contextvars(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Values bound through structlog.contextvars appear in every event."""
    configured_logging()
    structlog.contextvars.bind_contextvars(trace_id="a" * 32, request_id="r1")

    structlog.get_logger().info("records.served")

    [line] = rendered_lines(capsys)
    assert (line["trace_id"], line["request_id"]) == ("a" * 32, "r1")


_LOG_ONE_LINE = """
import structlog
from gateway.observability.logs import configure_logging
configure_logging(level="info")
structlog.contextvars.bind_contextvars(trace_id="a" * 32, request_id="r1", caller_id="svc")
structlog.get_logger().info("records.served", status=200)
"""


def test_bound_context_keys_come_in_the_same_order_in_every_process() -> None:
    """Replicas write the same line with the same key order, whatever their hash seed.

    The interpreter's context mapping iterates variables by hash, which
    PYTHONHASHSEED (random per process by default) changes.
    """
    orders = set()
    for seed in range(8):
        result = subprocess.run(
            [sys.executable, "-c", _LOG_ONE_LINE],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        )
        [line] = result.stderr.splitlines()
        orders.add(tuple(json.loads(line)))

    assert len(orders) == 1
    [order] = orders
    assert [key for key in order if key in {"caller_id", "request_id", "trace_id"}] == [
        "caller_id",
        "request_id",
        "trace_id",
    ]


def test_events_below_the_level_are_dropped(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """At level warning, info events from structlog and the stdlib are not written."""
    configured_logging(level="warning")

    structlog.get_logger().info("records.served")
    logging.getLogger("sqlalchemy.engine").info("SELECT 1")
    structlog.get_logger().warning("token.refresh_failed")

    assert [line["event"] for line in rendered_lines(capsys)] == ["token.refresh_failed"]


def test_unknown_level_is_rejected(configured_logging: Callable[..., None]) -> None:
    """A misspelt level fails loudly instead of logging everything or nothing."""
    with pytest.raises(ValueError, match="verbose"):
        configured_logging(level="verbose")


def test_canaries_never_reach_the_rendered_line(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str], canary: str
) -> None:
    """Secrets under secret keys, nested or inside strings, are masked in the JSON line."""
    configured_logging()
    structlog.contextvars.bind_contextvars(session_token=canary)

    structlog.get_logger().info(
        "oauth.callback_received",
        access_token=canary,
        REFRESH_TOKEN=canary,
        id_token=JWT,
        code=canary,
        code_verifier=canary,
        client_secret=canary,
        password=canary,
        state=canary,
        cookie=f"sid={canary}",
        key=canary,
        headers={"Authorization": f"Bearer {canary}", "X-Api-Key": canary},
        upstream=[{"token": {"value": canary}}, f"retrying with Bearer {canary}"],
        url=f"https://idp.example/cb?code={canary}&state={canary}",
        body=f"grant_type=authorization_code&code={canary}&client_secret={canary}",
        note=f"caller presented lgk_{canary} and lga_{canary}",
        claims=f"unverified {JWT}",
        reply=f'{{"access_token": "{canary}", "token_type": "Bearer"}}',
    )

    err = capsys.readouterr().err
    assert canary not in err
    assert "eyJ" not in err
    line = json.loads(err)
    assert line["access_token"] == "[REDACTED]"
    assert line["event"] == "oauth.callback_received"


def test_standard_library_records_are_rendered_and_redacted(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str], canary: str
) -> None:
    """uvicorn-style stdlib records go through the same JSON and redaction pipeline."""
    configured_logging()

    logging.getLogger("uvicorn.error").warning(
        "upstream rejected %s", f"Authorization: Bearer {canary}"
    )

    err = capsys.readouterr().err
    assert canary not in err
    line = json.loads(err)
    assert (line["logger"], line["level"]) == ("uvicorn.error", "warning")
    assert line["event"] == "upstream rejected Authorization: [REDACTED]"


def test_exception_messages_are_redacted(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str], canary: str
) -> None:
    """A secret inside a logged exception's message is masked in the traceback."""
    configured_logging()

    try:
        raise RuntimeError(f"token endpoint said refresh_token={canary}")
    except RuntimeError:
        structlog.get_logger().exception("token.refresh_failed")
        logging.getLogger("authlib").exception("refresh failed")

    err = capsys.readouterr().err
    assert canary not in err
    assert len([json.loads(line) for line in err.splitlines()]) == 2
    assert "RuntimeError: token endpoint said refresh_token=[REDACTED]" in err


def test_console_layout_is_redacted_too(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str], canary: str
) -> None:
    """The human-readable layout masks secrets exactly like the JSON one."""
    configured_logging(json=False)

    structlog.get_logger().info("connect.started", state=canary, note=f"Bearer {canary}")

    err = capsys.readouterr().err
    assert "connect.started" in err
    assert canary not in err


def test_uvicorn_access_log_is_silenced(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn's access line (which includes the query string) gives way to http.request."""
    configured_logging(level="debug")

    logging.getLogger("uvicorn.access").info('"GET /oauth/callback?code=abc HTTP/1.1" 200')

    assert capsys.readouterr().err == ""


def test_sql_parameters_stay_out_of_debug_logs(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """At DEBUG, aiosqlite's per-statement lines (with their parameters) are not written."""
    configured_logging(level="debug")

    logging.getLogger("aiosqlite").debug("executing %s", ("SELECT 1 WHERE id = ?", ("acct_42",)))

    assert "acct_42" not in capsys.readouterr().err


def test_lines_are_compact_ascii_json(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Non-ASCII text is escaped, so a U+202E or U+2028 from data cannot reshape the log."""
    configured_logging()

    structlog.get_logger().info("records.served", customer="Zoë \u202e\u2028", count=3)

    err = capsys.readouterr().err
    assert err.isascii()
    assert "\\u202e" in err
    assert '"count":3' in err
    assert json.loads(err)["customer"] == "Zoë \u202e\u2028"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2**70, 2**70),
        ({1: "a"}, {"1": "a"}),
        ("\ud800", "\ud800"),
        (float("nan"), None),  # json wrote NaN, which is not JSON (RFC 8259 §6)
    ],
)
def test_values_orjson_refuses_are_rendered_by_json(
    configured_logging: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    value: object,
    expected: object,
) -> None:
    """Integers past 64 bits, non-str keys, lone surrogates and NaN still make a JSON line."""
    configured_logging()

    structlog.get_logger().info("odd.value", value=value)

    err = capsys.readouterr().err
    assert err.isascii()
    assert json.loads(err)["value"] == expected


def test_timestamps_are_utc_with_a_z(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """The timestamp is ISO 8601 in UTC, written with Z as structlog's TimeStamper wrote it."""
    configured_logging()

    structlog.get_logger().info("token.refreshed")

    [line] = rendered_lines(capsys)
    assert line["timestamp"].endswith("Z")
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "now_ns",
    [
        0,
        1_795_000_000_000_000_000,
        1_795_000_000_000_000_999,  # under a microsecond: no fraction, as isoformat writes it
        1_795_000_000_123_456_789,
        1_795_000_059_999_999_999,
        1_795_000_060_000_001_000,
        -1_000,  # before the epoch: the second rounds down too
    ],
)
def test_a_timestamp_is_written_as_datetime_isoformat_wrote_it(now_ns: int) -> None:
    """The cached-second timestamp equals ``datetime.isoformat`` in UTC with Z."""
    second, nanoseconds = divmod(now_ns, 1_000_000_000)
    instant = datetime.fromtimestamp(second, UTC).replace(microsecond=nanoseconds // 1000)
    assert instant.isoformat().replace("+00:00", "Z") == timestamp(now_ns)


def test_a_cached_logger_follows_reconfiguration(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """A CachedLogger writes through whatever pipeline structlog was configured with last."""
    log = CachedLogger("gateway.http")
    configured_logging(level="info")
    log.info("http.request", status=200)
    configured_logging(level="warning")
    log.info("http.request", status=201)
    log.error("http.request", status=500)

    assert [line["status"] for line in rendered_lines(capsys)] == [200, 500]


def test_a_cached_logger_is_captured_by_capture_logs(
    configured_logging: Callable[..., None],
) -> None:
    """capture_logs, which swaps the processors in place, sees a CachedLogger's events."""
    log = CachedLogger("gateway.http")
    configured_logging()
    log.info("http.request", status=200)

    with structlog.testing.capture_logs() as logs:
        log.info("http.request", status=204)

    assert [entry["status"] for entry in logs] == [204]


def test_a_cached_loggers_bound_logger_follows_reconfiguration(
    configured_logging: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """bound(), the access line's way in, writes through the pipeline configured last."""
    log = CachedLogger("gateway.http")
    configured_logging(level="info")
    log.bound().info("http.request", status=200)
    configured_logging(level="warning")
    log.bound().info("http.request", status=201)
    log.bound().error("http.request", status=500)
    with structlog.testing.capture_logs() as logs:
        log.bound().warning("http.request", status=204)

    assert [line["status"] for line in rendered_lines(capsys)] == [200, 500]
    assert [entry["status"] for entry in logs] == [204]
