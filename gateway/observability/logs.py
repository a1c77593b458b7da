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
import time
from datetime import UTC, datetime
from json import JSONEncoder
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from gateway.observability.redaction import MASK, is_secret_key, redact_text, redact_value

__all__ = ["CachedLogger", "configure_logging", "redact_event"]

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


# Exact classes, not isinstance: a subclass (a StrEnum, an IntFlag) takes the
# general path through redact_value, as before.
_UNSCANNED = frozenset({int, float, bool, type(None)})


def redact_event(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """Mask secrets in an event dict; the last processor before rendering.

    The same masking as ``redact_value`` on every value, with the values most
    lines carry (plain strings, numbers, booleans, None) handled inline: one
    Python call fewer per field.
    """
    redacted: EventDict = {}
    for key, value in event_dict.items():
        if is_secret_key(key):
            redacted[key] = MASK
        elif value.__class__ is str:
            redacted[key] = redact_text(value)
        elif value.__class__ in _UNSCANNED:
            redacted[key] = value
        else:
            redacted[key] = redact_value(value)
    return redacted


class CachedLogger:
    """``structlog.get_logger(name)``, bound once per configuration instead of once per event.

    Loggers are not cached by structlog (see `configure_logging`), so its lazy
    proxy assembles a new bound logger for every event: about 17k instructions
    a line. This one keeps the logger it assembled and assembles another only
    when structlog has been configured with other processors, wrapper class,
    logger factory or context class since, so reconfiguring still reaches it.
    """

    __slots__ = ("_cached", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        # The configuration the logger was assembled under, and the logger: one
        # tuple, replaced whole, so that another thread never sees a mismatched pair.
        self._cached: tuple[dict[str, Any], Any] | None = None

    def bound(self) -> Any:
        """The bound logger for structlog's current configuration.

        Call its methods (``log.bound().info(...)``) on a hot path: reaching
        them through :meth:`__getattr__` first fails the normal attribute
        lookup, and building and discarding that ``AttributeError`` cost a
        quarter of what this class saves.
        """
        config = structlog.get_config()
        cached = self._cached
        if cached is None or not _same_configuration(config, cached[0]):
            cached = self._cached = (config, structlog.get_logger(self._name).bind())
        return cached[1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bound(), name)


def _same_configuration(current: dict[str, Any], earlier: dict[str, Any]) -> bool:
    """Whether a logger assembled under *earlier* is what structlog would assemble now."""
    return (
        current["processors"] is earlier["processors"]
        and current["wrapper_class"] is earlier["wrapper_class"]
        and current["logger_factory"] is earlier["logger_factory"]
        and current["context_class"] is earlier["context_class"]
    )


def _format_exc_info(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog's ``format_exc_info``, skipped for events without ``exc_info`` (almost all)."""
    if "exc_info" not in event_dict:
        return event_dict
    return structlog.processors.format_exc_info(logger, method_name, event_dict)


# The current second as ISO 8601 text, written once per second rather than per line:
# formatting an aware datetime (``isoformat`` asks its tzinfo for the offset) was
# about 16k of the 100k instructions one log line cost, counted under callgrind.
# One tuple, replaced whole, so a thread reading it sees a matching pair.
_SECOND: tuple[int, str] = (-1, "")


def timestamp(now_ns: int) -> str:
    """``now_ns`` (nanoseconds since the epoch) as ``TimeStamper(fmt="iso", utc=True)`` wrote it.

    ``datetime.isoformat`` in UTC with "Z" for "+00:00": microseconds (rounded
    down, as ``datetime.now`` takes them from the clock) only when not zero.
    """
    global _SECOND
    second, nanoseconds = divmod(now_ns, 1_000_000_000)
    cached, text = _SECOND
    if cached != second:
        text = datetime.fromtimestamp(second, UTC).isoformat()[:-6]  # without "+00:00"
        _SECOND = (second, text)
    microseconds = nanoseconds // 1000
    return f"{text}.{microseconds:06d}Z" if microseconds else f"{text}Z"


def _add_timestamp(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """What ``TimeStamper(fmt="iso", utc=True)`` adds, in one call instead of three."""
    event_dict["timestamp"] = timestamp(time.time_ns())
    return event_dict


# Lines stay ASCII, as json.dumps wrote them: non-ASCII text is escaped, so a
# bidirectional override or a line separator (U+202E, U+2028) logged from a
# provider's data cannot rearrange what a person reading the log sees. orjson
# writes UTF-8, so a line it renders with a non-ASCII byte is rendered again by
# json's encoder, as are values orjson refuses (integers past 64 bits, lone
# surrogates); redact_event has turned every other value into a string,
# number, boolean, None, dict or list. orjson renders a typical line in a
# fraction of the instructions of JSONEncoder.encode, which also builds a
# new C encoder object for every line.
_ASCII_JSON = JSONEncoder(separators=(",", ":"))


def _render_json(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> str:
    """The event as one compact line of ASCII JSON."""
    try:
        line = orjson.dumps(event_dict)
    except orjson.JSONEncodeError:
        return _ASCII_JSON.encode(event_dict)
    if line.isascii():
        return line.decode("ascii")
    return _ASCII_JSON.encode(event_dict)


def _merge_bound_context(
    _logger: WrappedLogger, _method_name: str, event_dict: EventDict
) -> EventDict:
    """structlog's bound context (``trace_id``, ``request_id`` …) merged in sorted key order.

    ``structlog.contextvars.merge_contextvars`` adds the bound keys in the order
    the interpreter's context mapping iterates its variables, which follows
    their hashes and so changes from one process to the next: two replicas
    wrote the same line with its keys in different orders. As there, a key the
    event itself gives wins.
    """
    bound = structlog.contextvars.get_contextvars()
    for key in sorted(bound):
        event_dict.setdefault(key, bound[key])
    return event_dict


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
        _merge_bound_context,
        structlog.processors.add_log_level,
    ]
    # Exceptions are rendered to text *before* redaction so that a secret in an
    # exception message is masked too; locals are never rendered. The timestamp
    # is the gateway's own, so it is added after redaction, unscanned.
    renderer: Processor = _render_json if json else structlog.dev.ConsoleRenderer()
    final: list[Processor] = [_format_exc_info, redact_event, _add_timestamp, renderer]
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
