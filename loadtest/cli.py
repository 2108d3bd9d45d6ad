"""``python -m loadtest <scenario> [options]``: parse, start nodes if asked, run, report.

Invariants:

- Options are read once into a :class:`~loadtest.plan.RunConfig`; a bad option exits
  with status 2 and a message naming it, before anything is started.
- Nodes started with ``--spawn`` are stopped on every way out (``with Nodes()``).
- ``--target socketio`` changes only what is started and the wire dialect: the same
  scenarios, checks and figures run against the Node Socket.IO baseline, and the
  scenarios it cannot serve are refused before anything starts.
- Exit status: 0 when every check passed, 1 when a check failed or the run failed,
  130 when it was interrupted (Ctrl-C) or a phase timed out.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest import report
from loadtest.client import ENCODINGS
from loadtest.plan import TARGETS, RunConfig
from loadtest.runner import Runner
from loadtest.scenarios import SCENARIOS
from loadtest.scenarios.base import Plan
from loadtest.scenarios.core import positive_float, positive_int
from loadtest.servers import Nodes, SpawnError, server_command
from loadtest.socketio import SCENARIOS as SOCKETIO_SCENARIOS
from loadtest.worker import raise_open_files_limit

#: Members one client process holds before another is worth starting.
MEMBERS_PER_PROC = 2500
#: Received messages per second one client process handles well below a full core.
EVENTS_PER_PROC = 30000
#: File descriptors a process needs beyond its sockets.
FD_MARGIN = 200


def default_procs(plan: Plan, cpus: int | None = None) -> int:
    """Enough client processes that none saturates a core, but no more than the cores."""
    cpus = cpus or os.cpu_count() or 1
    wanted = max(
        1,
        math.ceil(plan.members / MEMBERS_PER_PROC),
        math.ceil(plan.events_per_s / EVENTS_PER_PROC),
        math.ceil(plan.members / int(plan.params.get("viewers_per_proc") or plan.members or 1)),
    )
    if plan.mix is not None and plan.params.get("viewers"):
        wanted += 1  # a mix's WebRTC viewers (launch --viewers) decode on top of its members
    return max(1, min(cpus, wanted))


def _common(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target")
    target.add_argument(
        "--target",
        choices=TARGETS,
        default="roomserver",
        help="what to measure: roomserver nodes (default), or the Node Socket.IO 4 + "
        "Redis adapter baseline in loadtest/baselines/socketio (join and chat only)",
    )
    target.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="URL",
        help="a node's base URL, e.g. http://127.0.0.1:8080 (repeat for "
        "several nodes; members are spread round-robin)",
    )
    target.add_argument(
        "--secret",
        default=None,
        help="the nodes' secret [ROOMSERVER_SECRET]; generated with --spawn",
    )
    target.add_argument(
        "--spawn",
        type=positive_int,
        metavar="N",
        help="start N local nodes on 127.0.0.1 (memory broker when N=1)",
    )
    target.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="with --spawn: the Redis URL passed to every node (needed for N>1)",
    )
    target.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="with --spawn: an extra `roomserver serve` argument (server.js with "
        "--target socketio), written --server-arg=--history-size=5000 (repeat)",
    )
    target.add_argument(
        "--server-pid",
        action="append",
        type=int,
        default=[],
        metavar="PID",
        help="a server process to measure CPU and memory of (repeat)",
    )
    target.add_argument(
        "--watch-pid",
        action="append",
        type=int,
        default=[],
        metavar="PID",
        help="another process whose CPU to report, e.g. a redis-server (repeat); "
        "its work per second of CPU is reported beside the server's",
    )
    client = parser.add_argument_group("client")
    client.add_argument("--encoding", choices=sorted(ENCODINGS), default="json")
    client.add_argument(
        "--procs",
        "-P",
        type=positive_int,
        default=None,
        help="client processes (default: enough that none saturates a core)",
    )
    client.add_argument("--join-timeout", type=positive_float, default=30.0, metavar="S")
    client.add_argument("--request-timeout", type=positive_float, default=30.0, metavar="S")
    client.add_argument(
        "--drain-timeout",
        type=positive_float,
        default=15.0,
        metavar="S",
        help="how long to wait for the last deliveries (default 15)",
    )
    client.add_argument("--setup-timeout", type=positive_float, default=180.0, metavar="S")
    client.add_argument("--seed", type=int, default=1)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        default="loadtest-results",
        metavar="DIR",
        help="where the JSON and PNG go (default loadtest-results/)",
    )
    output.add_argument("--no-plot", action="store_true", help="skip the PNG")
    output.add_argument("--quiet", "-q", action="store_true", help="no live progress line")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="Load scenarios for roomserver, measured from the client side.",
    )
    sub = top.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for scenario in SCENARIOS.values():
        p = sub.add_parser(scenario.name, help=scenario.help, description=scenario.help)
        scenario.add_arguments(p)
        _common(p)
    return top


def _fail(message: str) -> int:
    print(f"loadtest: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    try:
        plan = scenario.plan(args)
    except ValueError as exc:
        return _fail(str(exc))
    if bool(args.spawn) == bool(args.url):
        return _fail("give either --url (one or more) or --spawn N")
    if args.redis and not args.spawn:
        return _fail("--redis goes with --spawn (nodes given with --url bring their own)")
    if args.target == "socketio":
        if scenario.name not in SOCKETIO_SCENARIOS:
            return _fail(
                f"--target socketio runs {' and '.join(SOCKETIO_SCENARIOS)} only: "
                f"the Node Socket.IO baseline has no polls, likes or media ({scenario.name})"
            )
        if args.encoding != "json":
            return _fail("--target socketio speaks JSON only (--encoding json)")
    secret = args.secret or os.environ.get("ROOMSERVER_SECRET") or ""
    if args.spawn and not secret:
        secret = secrets.token_urlsafe(32)
    if not secret:
        return _fail("--secret (or ROOMSERVER_SECRET) is needed to create rooms and tokens")
    procs = args.procs or default_procs(plan)
    limit = raise_open_files_limit()
    needed = math.ceil(plan.members / procs) + FD_MARGIN
    if limit < needed:
        print(
            f"loadtest: warning: open-files limit {limit} < {needed} needed per process",
            file=sys.stderr,
        )
    run_id = secrets.token_hex(3)
    # e.g. viewers: spawned nodes serve media on 127.0.0.1 only
    spawn_args = getattr(scenario, "spawn_args", ()) if args.target == "roomserver" else ()
    server_args = [*spawn_args, *args.server_arg]
    out_dir = Path(args.out)
    with Nodes() as nodes:
        server: dict[str, Any] = {}
        if args.spawn:
            try:
                nodes.start(
                    args.spawn,
                    secret,
                    out_dir / "logs",
                    run_id,
                    args.redis,
                    server_args,
                    target=args.target,
                )
            except SpawnError as exc:
                return _fail(str(exc))
            urls = nodes.urls
            cmd = server_command(args.target, "<secret>", args.redis, f"lt-{run_id}", server_args)
            server = {
                "spawned": args.spawn,
                "command": " ".join(cmd[1:]),
                "broker": "redis" if args.redis else "memory",
            }
        else:
            urls = [u.rstrip("/") for u in args.url]
        pids = tuple(nodes.pids) + tuple(args.server_pid)
        server.update({"target": args.target, "urls": urls, "pids": list(pids)})
        config = RunConfig(
            urls=tuple(urls),
            secret=secret,
            encoding=args.encoding,
            procs=procs,
            out_dir=str(out_dir),
            join_timeout_s=args.join_timeout,
            request_timeout_s=args.request_timeout,
            drain_timeout_s=args.drain_timeout,
            setup_timeout_s=args.setup_timeout,
            seed=args.seed,
            run_id=run_id,
            target=args.target,
            server_pids=pids,
            watched_pids=tuple(args.watch_pid),
            plot=not args.no_plot,
            progress=not args.quiet,
        )
        print(
            f"loadtest {scenario.name} against {args.target}: {plan.members} members, "
            f"{procs} client processes, {len(urls)} node(s) {' '.join(urls)}"
            + (f" (spawned, {server['broker']} broker)" if args.spawn else ""),
            file=sys.stderr,
        )
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
        outcome = Runner(scenario, plan, config).run()
        nodes.stop()
        logs = nodes.error_lines()
    command = ["python -m loadtest", *argv]
    doc = report.build(outcome, command, {"servers": server, "server_logs": logs})
    stem = f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}-{run_id}"
    written = report.write(doc, out_dir, stem, plot=config.plot)
    print(report.table(doc))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if doc["ok"]:
        return 0
    return 130 if outcome.interrupted and not outcome.failure else 1
