"""Typed settings, read once from command-line flags and ``ROOMSERVER_*`` variables.

Every setting is declared once in :data:`OPTIONS`; the argument parser, the
environment lookup and the documentation all come from that table, so a flag
and its variable can never drift apart. Precedence: flag, then environment,
then the default.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "ROOMSERVER_"
MIN_SECRET_LENGTH = 32
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web"


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


def _words(value: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in value.split(",") if w.strip())


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


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
    member_events_below: int = 200
    demo: bool = False
    log_level: str = "info"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def url(self) -> str:
        """The base URL people should open: ``public_url``, or else the bound address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


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
    Option("member_events_below", int, "rooms this small get member.joined/left events", True),
    Option("log_level", str, "debug, info, warning or error"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; defaults stay None so the environment can fill in."""
    for opt in OPTIONS:
        help_text = f"{opt.help} [{opt.env}]"
        if opt.repeat:
            parser.add_argument(opt.flag, dest=opt.name, action="append", help=help_text)
        else:
            parser.add_argument(opt.flag, dest=opt.name, default=None, help=help_text)


def load(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from flags (already parsed or raw strings) and the environment."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = flags.get(opt.name)
        source = opt.flag
        if raw is None and opt.env in environ:
            raw, source = environ[opt.env], opt.env
        if raw is None:
            continue
        if isinstance(raw, list):
            raw = ",".join(raw)
        try:
            value = opt.parse(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if opt.positive and not value > 0:  # also refuses NaN
            raise ConfigError(f"{source}: must be greater than 0")
        values[opt.name] = value
    values.update(overrides)
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    settings = Settings(**values)
    return finish(settings)


def finish(settings: Settings) -> Settings:
    """Fill in generated values and check the ones that depend on each other."""
    if not settings.secret:
        settings = replace(settings, secret=secrets.token_urlsafe(32), secret_generated=True)
    elif len(settings.secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"secret: must be at least {MIN_SECRET_LENGTH} characters")
    if not settings.node_id:
        settings = replace(settings, node_id="n-" + secrets.token_hex(4))
    if not 0 <= settings.port <= 65535:
        raise ConfigError("port: must be 0-65535")
    if settings.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log-level: must be debug, info, warning or error")
    return settings


def describe(options: Sequence[Option] = OPTIONS) -> str:
    """A Markdown table of every setting, for the operations guide."""
    lines = ["| flag | variable | meaning |", "|---|---|---|"]
    lines += [f"| `{o.flag}` | `{o.env}` | {o.help} |" for o in options]
    return "\n".join(lines)
