"""Structured logs for ``plugstream cloud serve --log-format json``: every log record one
JSON object per line on stderr, which a log collector (Loki, Elasticsearch, CloudWatch,
journald's JSON readers) takes as it is, with no pattern to maintain for it.

Each object has ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``logger`` and
``message``; ``exc`` (the traceback, as one string) when the record carries an exception;
``stack`` with ``stack_info``; and whatever a caller passed in ``extra=``. A message or a
traceback over several lines stays on one line: JSON escapes its newlines.

uvicorn is given no logging configuration in that mode (``serve.uvicorn_config``), so
its loggers keep no handlers of their own and send their records through the one handler.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

__all__ = ["UVICORN_LOGGERS", "JsonFormatter", "use_json_logs"]

#: uvicorn's loggers, which its default configuration gives handlers of their own
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

# A record's own attributes: anything else on it came from ``extra=``. uvicorn's
# color_message is its message again with terminal colour codes.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON (see the module's docstring for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a caller's bad %-arguments: still one parseable line
            message = f"{record.msg!r} % {record.args!r}"
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry.setdefault(key, value)
        return json.dumps(entry, ensure_ascii=False, default=str)


def use_json_logs(stream: TextIO | None = None) -> None:
    """Send every log record, uvicorn's and Python's warnings included, as JSON lines to
    ``stream`` (default: stderr). The levels stay as they are (the root logger's WARNING
    unless something set another). Idempotent."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        for old in list(root.handlers):
            root.removeHandler(old)
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """An exception nothing caught: logged (one JSON line) rather than printed."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("plugstream").critical("uncaught exception", exc_info=(kind, value, tb))
