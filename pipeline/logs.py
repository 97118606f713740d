"""One log format for the API, the workers and the scheduler: readable text, or JSON lines.

:func:`configure_logging` puts one handler on the root logger. With ``VIDPIPE_LOG_FORMAT=json``
every line is one JSON object with ``time``, ``level``, ``logger`` and ``message``; the default is
a line a person reads. Either way each line also carries the fields of the current log context:

- the stage runner opens a context with ``job_id``, ``video_id`` and ``stage`` for the whole of a
  stage's work; the API opens one with ``request_id`` for each request. The context lives in a
  :class:`~contextvars.ContextVar`, which asyncio tasks and ``asyncio.to_thread`` copy, so the
  work a stage starts inherits it without passing ids around.
- a filter on the handler copies the context onto each record in the thread that logged it,
  so a handler that formats later, elsewhere, still sees the right ids.

A second filter removes what must never reach a log: ``Authorization`` values and bearer
tokens, secrets in URL queries (``token=``, signatures), passwords in URLs and ``key=value``
pairs, JSON web tokens and email addresses. It is a safety net under the rule that code does
not log such things, not a licence to: it only knows the obvious shapes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
CONTEXT_FIELDS = ("request_id", "job_id", "video_id", "stage")
"""The context fields, in the order text lines show them."""

REDACTED = "[redacted]"

_context: ContextVar[Mapping[str, str]] = ContextVar("vidpipe_log_context", default=MappingProxyType({}))

# Libraries that narrate every request at INFO; their warnings still come through.
_CHATTY = ("opensearch", "urllib3", "botocore", "boto3", "s3transfer", "httpx", "httpcore", "aiosqlite", "asyncio")

_SECRET_NAME = r"[a-z0-9_.-]*(?:token|secret|password|passwd|(?:api|secret|access|private)_?key|signature|credential)"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host keeps the user and the host.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    # Authorization: Bearer …, 'authorization': 'Basic …', Proxy-Authorization=…
    (re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,;}]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\bbearer\s+[a-z0-9._~+/=-]+"), f"Bearer {REDACTED}"),
    # ?token=…&X-Amz-Signature=… in any URL.
    (re.compile(rf"(?i)([?&;](?:{_SECRET_NAME}|sig)=)[^&\s\"'#<>]+"), rf"\1{REDACTED}"),
    # password=…, "secret_key": "…", refresh_token: … in free text and reprs.
    (
        re.compile(rf"(?i)\b({_SECRET_NAME})([\"']?\s*[:=]\s*[\"']?)(?!\[redacted\])[^\s\"',&;}}\]]+"),
        rf"\1\2{REDACTED}",
    ),
    # A service account's API key keeps its public id (vpk_<id>_<secret>).
    (re.compile(r"\b(vpk_[0-9a-f]{12}_)[A-Za-z0-9_-]{8,}"), rf"\1{REDACTED}"),
    # A JSON web token anywhere (header.payload.signature, base64url, starting with '{"').
    (re.compile(r"\beyJ[a-zA-Z0-9_-]{4,}\.[a-zA-Z0-9_-]{4,}\.[a-zA-Z0-9_-]*"), REDACTED),
    # An email address; the user part of a URL was handled above and is left alone here.
    (re.compile(r"(?i)(?<![\w.+/%-])[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"), "[email]"),
)


_SECRET_WORDS = ("token", "secret", "passw", "key", "signature", "credential", "sig=")


def _may_hold_secrets(text: str) -> bool:
    """Whether any pattern could match: a cheap test that lets most lines skip the expressions.

    Every pattern above needs one of these: a URL scheme, a header or parameter separator
    (``:`` or ``=``) next to a secret's name, a bearer token, a key's or a JWT's prefix, or an
    ``@``. A line like ``Request GET /api/v1/jobs/… answered 200 in 1.2 ms.`` has none.
    """
    if "@" in text or "vpk_" in text or "eyJ" in text:
        return True
    lowered = text.lower()
    if "bearer" in lowered or "authorization" in lowered:
        return True
    return (":" in text or "=" in text) and any(word in lowered for word in _SECRET_WORDS)


def redact(text: str) -> str:
    """``text`` with tokens, passwords, signatures and email addresses replaced."""
    if not _may_hold_secrets(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every log line made inside the block (and in tasks it starts)."""
    token = _context.set(_merged(fields))
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: object) -> None:
    """Add ``fields`` to the current context until the enclosing :func:`log_context` ends."""
    _context.set(_merged(fields))


def current_log_context() -> Mapping[str, str]:
    return _context.get()


def _merged(fields: Mapping[str, object]) -> Mapping[str, str]:
    return {**_context.get(), **{name: str(value) for name, value in fields.items() if value is not None}}


class ContextFilter(logging.Filter):
    """Copies the current log context onto each record as ``record.log_context``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "log_context"):
            record.log_context = dict(_context.get())
        return True


class RedactingFilter(logging.Filter):
    """Rewrites each record's message, traceback and stack with :func:`redact`."""

    _plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call; the formatter reports it through handleError
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class TextFormatter(logging.Formatter):
    """``2026-12-03 10:00:00,123 INFO pipeline.x: message [job_id=… stage=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s%(context_text)s")

    def format(self, record: logging.LogRecord) -> str:
        context: Mapping[str, str] = getattr(record, "log_context", {})
        shown = [f"{name}={context[name]}" for name in CONTEXT_FIELDS if name in context]
        record.context_text = f" [{' '.join(shown)}]" if shown else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "log_context", {}))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class VidpipeHandler(logging.StreamHandler[TextIO]):
    """The root handler :func:`configure_logging` installs; recognised when it is installed again."""


def configure_logging(log_format: str = "text", *, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every logger's records to ``stream`` (standard error) in ``log_format``.

    Replaces a handler installed earlier by this function or by :func:`logging.basicConfig`
    (Dramatiq's worker command calls it), and leaves other handlers, such as a test
    runner's, alone.
    """
    handler = build_handler(log_format, stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, VidpipeHandler) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)


def log_format_from_env(environ: Mapping[str, str]) -> str:
    """``VIDPIPE_LOG_FORMAT`` before the settings are read, so even a settings error is formatted.

    An unknown value gives ``text`` here; reading the settings then reports it.
    """
    value = (environ.get("VIDPIPE_LOG_FORMAT") or "").strip().lower()
    return value if value in LOG_FORMATS else "text"


def build_handler(log_format: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """The handler every vidpipe process logs through: the format, the context and the redaction."""
    handler = VidpipeHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    return handler


def dict_config(log_format: str, levels: Mapping[str, int]) -> dict[str, Any]:
    """The same set-up as :func:`configure_logging`, as a :func:`logging.config.dictConfig` dictionary.

    For servers that configure logging in each process they start (uvicorn's ``log_config``).
    ``levels`` maps logger names to levels; ``""`` is the root logger.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"vidpipe": {"()": build_handler, "log_format": log_format}},
        "root": {"handlers": ["vidpipe"], "level": levels.get("", logging.WARNING)},
        "loggers": {name: {"level": level} for name, level in levels.items() if name},
    }
