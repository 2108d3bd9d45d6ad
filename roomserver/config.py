"""Typed settings, read once from a TOML file, ``ROOMSERVER_*`` variables and flags.

Every setting is declared once in :data:`OPTIONS`; the argument parser, the
environment lookup, the file's keys and the documentation all come from that
table, so a flag, its variable and its file key can never drift apart.

Invariants:

- Precedence is flag, then environment, then the file (``--config`` or
  ``ROOMSERVER_CONFIG``), then the default; a source that does not mention a
  setting never hides a lower one.
- Every value is checked where it is read, and a refusal names its source:
  the flag (``--port: ...``), the variable (``ROOMSERVER_PORT: ...``) or the
  file and key (``/etc/roomserver.toml: port: ...``). :func:`finish` checks the
  finished settings once more, so values passed as code overrides are held to
  the same rules.
- File keys are the setting names in snake_case (``max_cohosts``), values
  are typed TOML (numbers, booleans, arrays of strings for lists); a key the
  table does not know is an error, never silently ignored. Relative paths in
  a file are relative to the file's folder.
- The secret, and passwords in the Redis and TURN URLs, are only ever shown
  masked (:func:`render`).
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import secrets
import ssl
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from roomserver.netaddr import parse_network

ENV_PREFIX = "ROOMSERVER_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
MIN_SECRET_LENGTH = 32
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
WEEK_S = 7 * 24 * 3600


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it and its source."""


def _words(value: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in value.split(",") if w.strip())


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


def _optional_path(value: str) -> Path | None:
    """A path, or None for an empty value (so ``ROOMSERVER_TLS_CERT=`` means unset)."""
    return Path(value) if value.strip() else None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node needs to know, validated."""

    host: str = "0.0.0.0"
    port: int = 8080
    secret: str = ""
    secret_generated: bool = False
    redis: str = ""
    redis_prefix: str = "rs"
    node_id: str = ""
    public_url: str = ""
    web_dir: Path = DEFAULT_WEB_DIR
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trusted_proxy: tuple[str, ...] = ()
    history_size: int = 1000
    chat_rate: float = 5.0
    chat_burst: float = 10.0
    request_rate: float = 50.0
    request_burst: float = 200.0
    words: tuple[str, ...] = ()
    rtc_ip: tuple[str, ...] = ()
    ice_server: tuple[str, ...] = ()
    media: bool = True
    auto_mute_strikes: int = 5
    auto_mute_window_s: float = 60.0
    auto_mute_seconds: int = 600
    max_cohosts: int = 3
    max_rooms_per_connection: int = 10
    max_connections_per_ip: int = 1000
    joins_per_ip_rate: float = 100.0
    send_queue_limit: int = 2048
    send_ring: bool = True
    member_events_below: int = 200
    webhook: tuple[str, ...] = ()
    webhook_retry_s: float = 300.0
    webhook_member_events: bool = True
    stats_retention_s: int = WEEK_S
    demo: bool = False
    recordings_dir: str = "recordings"  # relative to the working directory
    recording_segment_s: float = 300.0
    log_level: str = "info"
    log_format: str = "text"
    access_log: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def url(self) -> str:
        """The base URL people should open: ``public_url``, or else the bound address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its flag, its type and its help text."""

    name: str
    parse: Callable[[str], Any]
    help: str
    positive: bool = False
    repeat: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "address to listen on"),
    Option("port", int, "HTTP port for pages, API and WebSocket"),
    Option("secret", str, "signs tokens and authorises the HTTP API (>= 32 characters)"),
    Option("redis", str, "Redis URL; turns on the shared broker for several nodes"),
    Option("redis_prefix", str, "prefix of every Redis key of this deployment"),
    Option("node_id", str, "name of this node (default: random)"),
    Option("public_url", str, "base URL printed in links, e.g. https://live.example.com"),
    Option("web_dir", Path, "folder of the browser client"),
    Option("tls_cert", _optional_path, "PEM certificate (chain): serve HTTPS and WSS"),
    Option("tls_key", _optional_path, "PEM private key of --tls-cert"),
    Option(
        "trusted_proxy",
        _words,
        "proxy address or CIDR whose X-Forwarded-For is believed (repeat or comma-separate)",
        repeat=True,
    ),
    Option("history_size", int, "chat messages kept per room", positive=True),
    Option("chat_rate", float, "member chat messages per second", positive=True),
    Option("chat_burst", float, "member chat burst", positive=True),
    Option("request_rate", float, "member requests per second per connection", positive=True),
    Option("request_burst", float, "member request burst per connection", positive=True),
    Option("words", _words, "comma-separated words the chat filter refuses"),
    Option(
        "rtc_ip",
        _words,
        "address announced in ICE candidates (repeat or comma-separate)",
        repeat=True,
    ),
    Option("ice_server", _words, "STUN/TURN URL for media (repeat or comma-separate)", repeat=True),
    Option("media", _bool, "serve WebRTC media (on by default when aiortc is installed)"),
    Option("auto_mute_strikes", int, "limit trips within the window that auto-mute", True),
    Option("auto_mute_window_s", float, "window for auto-mute strikes, seconds", True),
    Option("auto_mute_seconds", int, "length of an automatic mute, seconds", True),
    Option("max_cohosts", int, "co-hosts on stage at once per room", positive=True),
    Option("max_rooms_per_connection", int, "rooms one connection may join", positive=True),
    Option("max_connections_per_ip", int, "open WebSockets per client address", positive=True),
    Option("joins_per_ip_rate", float, "joins per second per client address", positive=True),
    Option("send_queue_limit", int, "queued messages before a slow client is dropped", True),
    Option("send_ring", _bool, "send a room's events to many sockets per system call (io_uring)"),
    Option("member_events_below", int, "rooms this small get member.joined/left events", True),
    Option(
        "webhook",
        _words,
        "URL that receives webhook events (repeat or comma-separate)",
        repeat=True,
    ),
    Option("webhook_retry_s", float, "how long a webhook delivery is retried, seconds", True),
    Option("webhook_member_events", _bool, "send member.joined/left webhooks"),
    Option("stats_retention_s", int, "how long a room's analytics are kept after it ends, s", True),
    Option("recordings_dir", str, "folder for recordings, from the working directory"),
    Option("recording_segment_s", float, "recordings roll to a new file this often, s", True),
    Option("log_level", str, "debug, info, warning or error"),
    Option("log_format", str, "text (key=value) or json, one line per event"),
    Option("access_log", _bool, "log one line per HTTP request (tokens redacted)"),
)
BY_NAME: Mapping[str, Option] = {opt.name: opt for opt in OPTIONS}

_TOML_KINDS: dict[Callable[[str], Any], str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    _bool: "a boolean (true or false)",
    _words: "an array of strings",
    Path: "a string (a path)",
    _optional_path: "a string (a path)",
}


def _toml_kind(opt: Option) -> str:
    return _TOML_KINDS.get(opt.parse, "a string")


def _toml_type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _from_toml(opt: Option, raw: object, base: Path) -> Any:
    """A typed file value for ``opt``; ValueError says what was expected and what came."""
    parse = opt.parse
    if parse is _words:
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(item.strip() for item in raw if item.strip())
    elif parse is _bool:
        if isinstance(raw, bool):
            return raw
    elif parse is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
    elif parse is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
    elif parse in (Path, _optional_path):
        if isinstance(raw, str):
            if not raw.strip():
                return None if parse is _optional_path else Path(raw)
            return base / Path(raw).expanduser()
    elif isinstance(raw, str):
        return parse(raw)
    raise ValueError(f"must be {_toml_kind(opt)}, not {_toml_type_name(raw)} ({raw!r})")


def _check(name: str, value: Any) -> None:
    """Value rules beyond the type; ValueError with the reason (the caller names the source)."""
    if name == "secret" and value and len(value) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"must be at least {MIN_SECRET_LENGTH} characters: a shorter secret can be guessed"
        )
    if name == "port" and not 0 <= value <= 65535:
        raise ValueError("must be 0-65535")
    if name == "log_level" and value.lower() not in LOG_LEVELS:
        raise ValueError("must be debug, info, warning or error")
    if name == "log_format" and value.lower() not in LOG_FORMATS:
        raise ValueError("must be text or json")
    if name in ("tls_cert", "tls_key") and value is not None:
        try:
            with open(value, "rb") as file:
                file.read(1)
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
    if name == "trusted_proxy":
        for item in value:
            parse_network(item)
    if name == "webhook":
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")


def _convert(opt: Option, raw: Any) -> Any:
    """A flag or variable value (a string, a list of strings or already typed), checked."""
    if isinstance(raw, list):
        raw = ",".join(raw)
    value = opt.parse(raw) if isinstance(raw, str) else raw
    if opt.positive and not value > 0:  # also refuses NaN
        raise ValueError("must be greater than 0")
    _check(opt.name, value)
    return value


def read_file(path: Path) -> dict[str, Any]:
    """The settings a TOML file sets, typed and checked; errors name the file and the key."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = [key for key in data if key not in BY_NAME]
    if unknown:
        raise ConfigError(f"{path}: " + "; ".join(_unknown_key(key) for key in unknown))
    base = path.resolve().parent
    values: dict[str, Any] = {}
    for key, raw in data.items():
        opt = BY_NAME[key]
        try:
            value = _from_toml(opt, raw, base)
            if opt.positive and not value > 0:
                raise ValueError("must be greater than 0")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("must be a finite number")
            _check(key, value)
        except ValueError as exc:
            raise ConfigError(f"{path}: {key}: {exc}") from None
        values[key] = value
    return values


def _unknown_key(key: str) -> str:
    text = f"unknown key {key!r}"
    guess = difflib.get_close_matches(key.replace("-", "_").lower(), list(BY_NAME), n=1)
    if guess:
        text += f" (did you mean {guess[0]!r}?)"
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; defaults stay None so the environment can fill in."""
    parser.add_argument(
        "--config",
        dest="config",
        default=None,
        metavar="FILE",
        help=f"TOML file of settings; flags and variables override it [{CONFIG_ENV}]",
    )
    for opt in OPTIONS:
        help_text = f"{opt.help} [{opt.env}]"
        if opt.repeat:
            parser.add_argument(opt.flag, dest=opt.name, action="append", help=help_text)
        else:
            parser.add_argument(opt.flag, dest=opt.name, default=None, help=help_text)


def gather(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values set by flags, environment and file, and where each one came from."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    path = flags.get("config") or environ.get(CONFIG_ENV) or None
    from_file = read_file(Path(path)) if path else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        raw = flags.get(opt.name)
        source = opt.flag
        if raw is None and opt.env in environ:
            raw, source = environ[opt.env], opt.env
        if raw is None:
            if opt.name in from_file:
                values[opt.name] = from_file[opt.name]
                sources[opt.name] = str(path)
            continue
        try:
            values[opt.name] = _convert(opt, raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        sources[opt.name] = source
    return values, sources


def load(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from flags (already parsed or raw strings), the environment and a file.

    The file is ``flags["config"]`` or else ``ROOMSERVER_CONFIG``; ``overrides``
    come from code and win over everything.
    """
    values, _ = gather(flags, environ)
    values.update(overrides)
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    settings = Settings(**values)
    return finish(settings)


def finish(settings: Settings) -> Settings:
    """Fill in generated values and check the ones that depend on each other."""
    for opt in OPTIONS:
        try:
            _check(opt.name, getattr(settings, opt.name))
        except ValueError as exc:
            raise ConfigError(f"{opt.name.replace('_', '-')}: {exc}") from None
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError(
            "tls-cert, tls-key: set both (certificate and private key) or neither; "
            f"only {'tls-cert' if settings.tls_key is None else 'tls-key'} is set"
        )
    if not settings.secret:
        settings = replace(settings, secret=secrets.token_urlsafe(32), secret_generated=True)
    if not settings.node_id:
        settings = replace(settings, node_id="n-" + secrets.token_hex(4))
    return settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context when ``tls_cert`` is set; loads the files now, so a bad
    certificate or a key that does not match stops the node before it listens."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"tls-cert, tls-key: cannot use {settings.tls_cert} with {settings.tls_key}: {exc}"
        ) from None
    return context


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in escaped)
    return f'"{escaped}"'


_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*:(?://)?[^:@/]*:)[^@/]+@", re.IGNORECASE)


def mask_password(url: str) -> str:
    """``redis://:pw@host`` -> ``redis://:****@host``; also ``turn:user:pw@host``."""
    return _URL_PASSWORD.sub(r"\1****@", url)


def render(settings: Settings, sources: Mapping[str, str] | None = None) -> str:
    """The effective settings as TOML, each with its source.

    The secret, and passwords inside the Redis and TURN URLs, are masked: this
    output is meant to be pasted into tickets and chats.
    """
    sources = sources or {}
    lines: list[str] = []
    for opt in OPTIONS:
        value = getattr(settings, opt.name)
        if opt.name == "redis":
            value = mask_password(value)
        elif opt.name == "ice_server":
            value = tuple(mask_password(url) for url in value)
        where = f"  # {sources[opt.name]}" if opt.name in sources else ""
        if opt.name == "secret":
            if settings.secret_generated:
                lines.append("# secret: not set; a random one is made at each start")
            else:
                lines.append(f'secret = "********"{where}')
        elif opt.name == "node_id" and opt.name not in sources:
            lines.append("# node_id: not set; a random one is made at each start")
        elif value is None:
            lines.append(f"# {opt.name}: not set")
        else:
            lines.append(f"{opt.name} = {_toml_value(value)}{where}")
    return "\n".join(lines)


def describe(options: Sequence[Option] = OPTIONS) -> str:
    """A Markdown table of every setting, for the operations guide."""
    lines = ["| flag | variable | meaning |", "|---|---|---|"]
    lines += [f"| `{o.flag}` | `{o.env}` | {o.help} |" for o in options]
    return "\n".join(lines)
