"""Structured logging: one JSON line per event on stderr, secrets masked.

Events are named ``noun.verb`` (``token.refreshed``, ``records.served``) with
snake_case keys. Request context (``trace_id``, ``request_id``) is bound by the
tracing middleware through `structlog.contextvars` and merged into every event.

Standard-library records (uvicorn, SQLAlchemy, asyncio, authlib) are rendered
by the same processors through `structlog.stdlib.ProcessorFormatter`, so the
redaction step sees every line that leaves the process.
"""

from __future__ import annotations

import logging
import sys
from json import JSONEncoder
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from gateway.observability.redaction import MASK, is_secret_key, redact_value

__all__ = ["configure_logging", "redact_event"]

_HANDLER_NAME = "linkgate"

# uvicorn installs its own handlers unless started with log_config=None; they
# are removed so its records reach the root handler below. Its access log is
# silenced because TracingMiddleware logs one `http.request` per request
# without the query string, which may carry an authorization code.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# httpx logs an INFO line with the full URL of every outbound request: a hot-path
# cost (measured ~1-2% of CPU) and a URL that may carry provider query data.
# Loggers that say more than the gateway may log, whatever the level: uvicorn's
# access line and httpx's request line carry query strings; aiosqlite's DEBUG
# lines carry every SQL statement's parameters (account ids, subject hashes).
_SILENCED_LOGGERS = {
    "uvicorn.access": logging.WARNING,
    "httpx": logging.WARNING,
    "aiosqlite": logging.INFO,
}


def redact_event(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """Mask secrets in an event dict; the last processor before rendering."""
    return {
        key: MASK if is_secret_key(key) else redact_value(value)
        for key, value in event_dict.items()
    }


# json.dumps builds a new JSONEncoder on every call that passes ``default``, as
# structlog's JSONRenderer does; one encoder serves every line instead. No
# fallback for other types is needed: redact_event has turned every value
# into a string, number, boolean, None, dict or list.
_JSON_ENCODER = JSONEncoder()


def _render_json(event_dict: EventDict, **_dumps_kw: Any) -> str:
    return _JSON_ENCODER.encode(event_dict)


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure_logging(
    *, level: str = "info", json: bool = True, stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library to write to stderr.

    *level* is a standard level name (``debug``, ``info``, ``warning`` …);
    *json* selects one JSON object per line, otherwise a console layout for
    people reading a terminal. Safe to call more than once.
    """
    threshold = _level_number(level)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    # Exceptions are rendered to text *before* redaction so that a secret in an
    # exception message is masked too; locals are never rendered. The timestamp
    # is the gateway's own, so it is added after redaction, unscanned.
    renderer: Processor = (
        structlog.processors.JSONRenderer(_render_json) if json else structlog.dev.ConsoleRenderer()
    )
    final: list[Processor] = [
        structlog.processors.format_exc_info,
        redact_event,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        renderer,
    ]
    # One output object for every logger: with loggers not cached (below), a
    # WriteLoggerFactory would build a new WriteLogger for every event.
    output = structlog.WriteLogger(file=stream or sys.stderr)

    structlog.configure(
        processors=[*shared, *final],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda *_args: output,
        # Not cached, so that reconfiguring (the CLI after parsing --log-level,
        # tests capturing stderr) reaches loggers created at import time.
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(threshold)

    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name, minimum in _SILENCED_LOGGERS.items():
        logging.getLogger(name).setLevel(max(minimum, threshold))
