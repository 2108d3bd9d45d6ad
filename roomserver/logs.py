"""Logging: one line per event, ``key=value`` text or JSON, with tokens and the secret redacted.

Invariants:

- Every written record passes :class:`RedactFilter`, installed on the root
  handler (not on a logger), so records from our modules, aiohttp, asyncio
  and the Redis client are all covered. It replaces the rendered message,
  the traceback and string context values with their redacted form: anything
  shaped like a JWT (three base64url segments separated by dots), the
  configured secret, and the value of ``token=`` / ``secret=`` pairs as they
  appear in query strings.
- A record is one line. Newlines inside a message or a traceback are escaped
  by the formatter; nothing else writes to the log stream.
- Records below the level are never built: the logging module checks the
  level before it formats anything, and the filter and formatters only run
  for records that are written. Calls on the hot path pass arguments, never
  pre-formatted strings, so a disabled ``debug`` costs one level check.
- Context (room, user, conn, request_id, peer) comes from ``extra=`` or from
  trailing ``key=value`` pairs of the message (the project's convention, e.g.
  ``log.info("auto-mute room=%s user=%s", ...)``); both formats show it as
  separate keys.
- The HTTP access log (:class:`AccessLogger`) records the path with its
  query redacted; URL fragments (where the pages carry tokens) never reach a
  server at all.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from typing import IO, Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from roomserver.netaddr import Network, client_address

REDACTED = "[redacted]"
ACCESS_LOGGER = "roomserver.access"
CONTEXT_KEYS = ("room", "user", "conn", "request_id", "peer", "node")
RESERVED = ("ts", "level", "logger", "msg")

# A JWT's header is a JSON object, so its base64url always starts with "eyJ";
# the second branch catches other three-segment tokens with long segments while
# leaving dotted names (module paths, hostnames) alone.
_JWT = re.compile(
    r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
    r"|[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"
)
_PAIR = re.compile(r"(?i)((?:token|secret)(?:=|%3D))[^&\s#\"',;]+")
_KV = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)=(\S*)$")
_BARE = re.compile(r"^[^\s\"=\\]+$")


class RedactFilter(logging.Filter):
    """Rewrites each record so no token or secret can reach the output."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        words: set[str] = set()
        for secret in secrets:
            if secret:
                words.update({secret, quote(secret, safe="")})
        # Longest first, so a secret containing another is replaced whole.
        ordered = sorted(words, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        text = _JWT.sub(REDACTED, text)
        return _PAIR.sub(lambda found: found.group(1) + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the event
            message = f"{record.msg!r} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if isinstance(value, str):
                record.__dict__[key] = self.redact(value)
        return True


def split_message(message: str) -> tuple[str, dict[str, str]]:
    """``"auto-mute room=r user=u"`` -> ``("auto-mute", {"room": "r", "user": "u"})``.

    Only a message that ends in ``key=value`` words is split; anything else
    stays whole with no fields, so nothing is ever lost or reordered.
    """
    if "=" not in message or "\n" in message:
        return message, {}
    words = message.split(" ")
    fields: dict[str, str] = {}
    index = len(words)
    while index > 0:
        found = _KV.match(words[index - 1])
        if found is None:
            break
        key, value = found.groups()
        if key in RESERVED or key in fields:
            break
        fields[key] = _unquote(value)
        index -= 1
    if not fields:
        return message, {}
    head = " ".join(words[:index])
    return head, dict(reversed(fields.items()))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event as ordered fields: ts, level, logger, msg, context, then the traceback."""
    head, pairs = split_message(record.getMessage())
    out: dict[str, Any] = {
        "ts": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": head,
    }
    out.update(pairs)
    for key in CONTEXT_KEYS:
        value = record.__dict__.get(key)
        if value is not None and key not in out:
            out[key] = value
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    if record.exc_text:
        out["exc"] = record.exc_text
    if record.stack_info:
        out["stack"] = record.stack_info
    return out


class TextFormatter(logging.Formatter):
    """``ts=... level=info logger=roomserver.node msg=auto-mute room=r user=u`` (logfmt)."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_text_value(value)}" for key, value in _fields(record).items())


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and _BARE.match(text):
        return text
    return json.dumps(text, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the keys ts, level, logger, msg and the context."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), ensure_ascii=False, default=str)


def setup(
    level: str,
    fmt: str = "text",
    secrets: Sequence[str] = (),
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record, redacted and one per line, to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt.lower() == "json" else TextFormatter())
    handler.addFilter(RedactFilter(secrets))
    # Fields no formatter here shows; skipping them makes each record cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]  # the only way out, so nothing is written unfiltered
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    return handler


class AccessLogger(AbstractAccessLogger):
    """One line per HTTP request: method, path (query redacted), status, size, time, client.

    The client is the same address the per-IP limits use (see
    :mod:`roomserver.netaddr`); ``request_id`` is the proxy's ``X-Request-Id``.
    Use :func:`access_logger_class` to bind the trusted proxies.
    """

    trusted: Sequence[Network] = ()

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        headers = request.headers
        # A request the parser refused carries a plain dict of headers, not a multidict.
        getall = getattr(headers, "getall", None)
        forwarded = (
            getall("X-Forwarded-For", ()) if getall else [headers.get("X-Forwarded-For", "")]
        )
        peer = client_address(request.remote or "", forwarded, self.trusted)
        log_access(
            self.logger,
            request.method,
            request.raw_path,
            response.status,
            response.body_length,
            time,
            peer,
            headers.get("X-Request-Id"),
        )


def log_access(
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    method: str,
    raw_path: str,
    status: int,
    size: int,
    seconds: float,
    peer: str,
    request_id: str | None,
) -> None:
    """One access line (query secrets redacted); also written for lean ``/ws`` connections."""
    path = _PAIR.sub(lambda found: found.group(1) + REDACTED, raw_path.split("#", 1)[0])
    extra: dict[str, Any] = {"peer": peer}
    if request_id:
        extra["request_id"] = request_id[:64]
    logger.info(
        "%s %s status=%d bytes=%d ms=%.1f",
        method,
        path,
        status,
        size,
        seconds * 1000,
        extra=extra,
    )


def access_logger_class(trusted: Sequence[Network]) -> type[AccessLogger]:
    """An :class:`AccessLogger` that believes ``X-Forwarded-For`` from ``trusted``."""
    return type("BoundAccessLogger", (AccessLogger,), {"trusted": tuple(trusted)})
