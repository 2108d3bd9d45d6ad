"""Log lines: one per event, text or JSON, with context keys; tokens and the secret redacted."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from roomserver import logs
from roomserver.auth import mint_token
from roomserver.logs import REDACTED, RedactFilter, split_message

SECRET = "logs-test-secret-0123456789-abcdefghijk"
TOKEN = mint_token(SECRET, room="r", user="u", name="N", role="host")


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A private logger writing through a handler made like :func:`logs.setup` makes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    handler.addFilter(RedactFilter([SECRET]))
    logger = logging.getLogger("tests.unit.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


# --- redaction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        TOKEN,
        f"join token={TOKEN} failed",
        f'{{"t":"join","token":"{TOKEN}"}}',
        f"b'\\x82\\xa1t\\xa4join\\xa5token\\xda{TOKEN}'",
        f"GET /host.html?room=r&token={TOKEN}",
        "header.payloadpayload.signaturesignature".replace("header", "eyJhbGciOiJIUzI1NiJ9"),
    ],
)
def test_tokens_are_redacted(text: str) -> None:
    out = RedactFilter().redact(text)
    assert TOKEN not in out
    assert REDACTED in out
    assert "eyJ" not in out


def test_the_secret_is_redacted_in_every_spelling() -> None:
    tricky = SECRET[:-1] + "/"  # URL-encodes differently
    redact = RedactFilter([SECRET, tricky]).redact
    assert redact(f"Bearer {SECRET}") == f"Bearer {REDACTED}"
    assert redact(f"x={tricky.replace('/', '%2F')}") == f"x={REDACTED}"
    assert SECRET not in redact(f"{SECRET}{SECRET}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/healthz?token=abc&x=1", f"/healthz?token={REDACTED}&x=1"),
        ("/ws?access_token=abc", f"/ws?access_token={REDACTED}"),
        ("/x?SECRET=abc def", f"/x?SECRET={REDACTED} def"),
        ("/x?token%3Dabc", f"/x?token%3D{REDACTED}"),
    ],
)
def test_token_and_secret_pairs_are_redacted(text: str, expected: str) -> None:
    assert RedactFilter().redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "redis subscription lost: roomserver.broker.redis",
        "listening on https://live.example.com:8443",
        "conn=12 peer=203.0.113.9 tokens=5",
        "version 1.22.1",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert RedactFilter([SECRET]).redact(text) == text


def test_the_filter_covers_arguments_context_and_tracebacks(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, _ = capture
    logger.info("join room=%s token=%s", "r", TOKEN, extra={"user": f"u {SECRET}"})
    try:
        raise ValueError(f"bad token {TOKEN} with {SECRET}")
    except ValueError:
        logger.exception("request failed conn=%d", 7)
    logger.warning("stack", stack_info=True, extra={"room": TOKEN})
    text = stream.getvalue()
    assert TOKEN not in text and SECRET not in text
    assert text.count(REDACTED) >= 5
    assert "ValueError" in text  # the traceback is kept, redacted


def test_a_broken_format_string_still_logs(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, _ = capture
    logger.info("two %s %s", TOKEN)
    assert "two" in stream.getvalue() and TOKEN not in stream.getvalue()


def test_disabled_levels_never_reach_the_filter(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, _ = capture
    logger.setLevel(logging.INFO)

    class Boom:
        def __str__(self) -> str:
            raise AssertionError("formatted a disabled record")

    logger.debug("value %s", Boom())
    assert stream.getvalue() == ""


# --- format -----------------------------------------------------------------------------


def test_trailing_pairs_become_fields() -> None:
    assert split_message("auto-mute room=r1 user=u reason=spam") == (
        "auto-mute",
        {"room": "r1", "user": "u", "reason": "spam"},
    )
    assert split_message("request failed id='a b' t=join conn=3")[1] == {"t": "join", "conn": "3"}
    assert split_message("request failed id='abc' t=join") == (
        "request failed",
        {"id": "abc", "t": "join"},
    )
    assert split_message("no pairs here") == ("no pairs here", {})
    assert split_message("dropped room=r what=likes: unavailable") == (
        "dropped room=r what=likes: unavailable",
        {},
    )
    # Reserved keys stay in the message rather than replace the line's own.
    assert split_message("x level=9") == ("x level=9", {})


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("roomserver.node", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    RedactFilter([SECRET]).filter(rec)
    return rec


def test_text_lines_are_key_value() -> None:
    rec = record("auto-mute room=%s user=%s", "r1", "u", conn=4, request_id="q")
    line = logs.TextFormatter().format(rec)
    ts, rest = line.split(" ", 1)
    assert ts.startswith("ts=") and ts.endswith("Z")
    assert (
        rest == "level=info logger=roomserver.node msg=auto-mute room=r1 user=u conn=4 request_id=q"
    )


def test_text_values_with_spaces_are_quoted() -> None:
    rec = record("chat refused room=%s reason=%s", "r1", 'too "loud" now', user="u 2")
    line = logs.TextFormatter().format(rec)
    # The message does not end in clean pairs, so it stays whole, quoted.
    assert line.endswith(' msg="chat refused room=r1 reason=too \\"loud\\" now" user="u 2"')
    assert "\n" not in line


def test_json_lines_have_the_keys() -> None:
    rec = record("auto-mute room=%s user=%s reason=%s", "r1", "u", "spam", conn=4)
    data = json.loads(logs.JsonFormatter().format(rec))
    assert list(data)[:4] == ["ts", "level", "logger", "msg"]
    assert data["ts"].endswith("Z") and "T" in data["ts"]
    assert data["level"] == "info" and data["logger"] == "roomserver.node"
    assert data["msg"] == "auto-mute"
    assert (data["room"], data["user"], data["reason"], data["conn"]) == ("r1", "u", "spam", 4)


def test_a_traceback_stays_on_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed conn=%d", (3,), sys.exc_info()
        )
    RedactFilter().filter(rec)
    text = logs.TextFormatter().format(rec)
    assert "\n" not in text and "RuntimeError: boom" in text
    data = json.loads(logs.JsonFormatter().format(rec))
    assert data["msg"] == "failed" and data["conn"] == "3"
    assert "RuntimeError: boom" in data["exc"]


def test_setup_installs_the_filter_on_the_root_handler() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        handler = logs.setup("info", "json", [SECRET], stream=stream)
        assert root.handlers == [handler]
        logging.getLogger("aiohttp.server").error("Error handling request %s", SECRET)
        logging.getLogger("roomserver.node").debug("hidden %s", TOKEN)
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        data = json.loads(lines[0])
        assert data["logger"] == "aiohttp.server"
        assert data["msg"] == f"Error handling request {REDACTED}"
    finally:
        logging.captureWarnings(False)
        root.handlers[:], level = saved
        root.setLevel(level)
