"""``roomserver serve``, ``roomserver token`` and ``roomserver config check``.

Exit codes: 0 on success, 2 when a setting or the command line is wrong (the
message on stderr names the flag, variable or file key). Logging is set up
before anything else runs, so no record is ever written unredacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from roomserver import config, gcstats, logs, verify_draw
from roomserver.app import HANDSHAKE_TIMEOUT_S, LISTEN_BACKLOG, build_app
from roomserver.auth import DEFAULT_TTL_S, mint_token
from roomserver.config import ConfigError, Settings
from roomserver.ids import Role
from roomserver.netaddr import networks
from roomserver.room import RoomInfo
from signaling.lean import front_runner
from signaling.server import NODE_KEY

DEMO_ROOM = "demo"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomserver", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a node")
    config.add_arguments(serve)
    serve.add_argument("--demo", action="store_true", help="create a demo room and print links")

    token = commands.add_parser("token", help="print a signed room token")
    token.add_argument("--room", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--name", required=True)
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, help="seconds of validity")
    token.add_argument("--secret", default=None, help="[ROOMSERVER_SECRET]")

    check = commands.add_parser("config", help="work with a configuration file")
    check_commands = check.add_subparsers(dest="config_command", required=True)
    check_file = check_commands.add_parser(
        "check", help="validate a TOML file and print the effective settings (file + env)"
    )
    check_file.add_argument("file", type=Path, help="the TOML file")

    verify = commands.add_parser("verify-draw", help="recompute a published lucky draw")
    verify.add_argument("file", help="JSON of a draw.result event, its draw, or its webhook")

    args = parser.parse_args(argv)
    if args.command == "verify-draw":
        return verify_draw.run(args.file)
    try:
        if args.command == "token":
            return _token(args)
        if args.command == "config":
            return _config_check(args.file)
        settings = config.load(vars(args), demo=args.demo)
        context = config.ssl_context(settings)
    except ConfigError as exc:
        print(f"roomserver: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_format, [settings.secret])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(settings, context))
    return 0


def _config_check(path: Path) -> int:
    """Validate ``path`` with the environment applied, as ``serve --config`` would read it."""
    try:
        values, sources = config.gather({"config": str(path)})
        settings = config.finish(config.Settings(**values))
        config.ssl_context(settings)
    except ConfigError as exc:
        print(f"roomserver: {exc}", file=sys.stderr)
        return 2
    print(f"# {path}: valid; effective settings (file < environment), secret masked")
    print(config.render(settings, sources))
    return 0


def _token(args: argparse.Namespace) -> int:
    settings = config.load({"secret": args.secret})
    if settings.secret_generated:
        raise ConfigError("secret: set --secret or ROOMSERVER_SECRET to mint tokens")
    print(
        mint_token(
            settings.secret,
            room=args.room,
            user=args.user,
            name=args.name,
            role=args.role,
            ttl_s=args.ttl,
        )
    )
    return 0


async def serve_forever(settings: Settings, context: ssl.SSLContext | None = None) -> None:
    """Serve until SIGTERM or SIGINT, over TLS when ``context`` is given."""
    app = build_app(settings)
    runner = front_runner(
        app,
        access_log=logging.getLogger(logs.ACCESS_LOGGER) if settings.access_log else None,
        access_log_class=logs.access_logger_class(networks(settings.trusted_proxy)),
        handle_signals=False,
        shutdown_timeout=5.0,
        keepalive_timeout=HANDSHAKE_TIMEOUT_S,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        settings.host,
        settings.port,
        reuse_address=True,
        ssl_context=context,
        backlog=LISTEN_BACKLOG,
    )
    await site.start()
    port = _bound_port(site, settings.port)
    settings = app[NODE_KEY].settings = _with_port(settings, port)
    out = sys.stdout
    print(f"roomserver node={settings.node_id} listening on {settings.url()}", file=out)
    if settings.secret_generated:
        print(f"generated secret (set ROOMSERVER_SECRET to keep it): {settings.secret}", file=out)
    if settings.demo:
        await _demo(app, settings)
    out.flush()
    gcstats.freeze_startup_objects()  # start-up is over: full collections skip it all
    node = app[NODE_KEY]
    full_collections = gcstats.FullCollections(lambda: node.last_join_at)
    full_collections.start()  # and they wait for a moment without joins
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    full_collections.stop()
    await runner.cleanup()


def _bound_port(site: web.TCPSite, fallback: int) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    for sock in sockets:
        return int(sock.getsockname()[1])
    return fallback


def _with_port(settings: Settings, port: int) -> Settings:
    return replace(settings, port=port)


async def _demo(app: web.Application, settings: Settings) -> None:
    node = app[NODE_KEY]
    await node.create_room(
        RoomInfo(
            id=DEMO_ROOM,
            title="Demo product review",
            welcome="Welcome to the demo room! Say hello in the chat.",
            created_at=node.clock.now_ms(),
        )
    )
    base = settings.url()
    host = mint_token(settings.secret, room=DEMO_ROOM, user="host", name="Host", role="host")
    viewer = mint_token(
        settings.secret, room=DEMO_ROOM, user="viewer-1", name="Viewer 1", role="member"
    )
    print(f"host link:   {base}/host.html#room={DEMO_ROOM}&token={host}")
    print(f"viewer link: {base}/viewer.html#room={DEMO_ROOM}&token={viewer}")


if __name__ == "__main__":
    raise SystemExit(main())
