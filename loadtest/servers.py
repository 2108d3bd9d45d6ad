"""Local servers started by the tool (``--spawn N``), always stopped: ``roomserver serve``
nodes, or with ``--target socketio`` the Node Socket.IO baseline
(``loadtest/baselines/socketio/server.js``), measured the same way.

Invariants:

- Nodes listen on 127.0.0.1 only, on a port the OS picks (``--port 0``); the URL is
  read from the node's own "listening on" line, so there is no race for a port.
- Load comes from one address, so each node gets per-address limits far above the
  defaults (1,000 connections, 100 joins/s per address), which would otherwise turn a
  5,000-member run into a rate-limit test.
- One node uses the memory broker; several need ``--redis`` (passed through), since
  the memory broker is single-node.
- Each node runs in its own session, so the Ctrl-C meant for the tool does not stop
  it before the tool has its figures; :meth:`Nodes.stop` ends every node (SIGTERM,
  then SIGKILL) on every path out of a run.
- A node's stdout and stderr go to a log file (never a pipe that could fill up and
  block it); the report counts its error lines.
- The Socket.IO baseline runs only from its locked dependencies: when its
  ``node_modules`` is missing, ``npm ci`` runs once (bounded); if that fails, the
  error names the command to run by hand, and no server is started.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PER_ADDRESS_LIMIT = "100000"
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
ROOT = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).resolve().parent / "baselines" / "socketio"
#: What ``npm ci`` installs for the baseline; all must be there to skip it.
BASELINE_MODULES = ("socket.io", "@socket.io/redis-adapter", "redis")
NPM_TIMEOUT_S = 600.0
NPM_CI = "npm ci --prefix loadtest/baselines/socketio"


class SpawnError(RuntimeError):
    """A node did not start; the message carries the end of its log."""


@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def node_command(secret: str, redis: str | None, prefix: str, extra: list[str]) -> list[str]:
    """The command line of one node (see the module docstring for the limits)."""
    cmd = [
        sys.executable, "-m", "roomserver.cli", "serve",
        "--host", "127.0.0.1", "--port", "0", f"--secret={secret}",  # it may start with "-"
        "--max-connections-per-ip", PER_ADDRESS_LIMIT,
        "--joins-per-ip-rate", PER_ADDRESS_LIMIT,
        "--log-level", "warning",
    ]  # fmt: skip
    if redis:
        cmd += [f"--redis={redis}", f"--redis-prefix={prefix}"]
    return cmd + extra


def socketio_command(redis: str | None, prefix: str, extra: list[str]) -> list[str]:
    """The command line of one Node Socket.IO server (its secret goes in ``SIO_SECRET``)."""
    node = shutil.which("node") or "node"
    cmd = [node, str(BASELINE / "server.js"), "--port=0"]
    if redis:
        cmd += [f"--redis={redis}", f"--prefix={prefix}"]
    return cmd + extra


def server_command(
    target: str, secret: str, redis: str | None, prefix: str, extra: list[str]
) -> list[str]:
    """The command line of one server of ``target`` (see :data:`loadtest.plan.TARGETS`)."""
    if target == "socketio":
        return socketio_command(redis, prefix, extra)
    return node_command(secret, redis, prefix, extra)


def ensure_baseline(say: Callable[[str], None] = print) -> None:
    """Install the baseline's locked dependencies if they are missing (``npm ci``, once)."""
    if shutil.which("node") is None:
        raise SpawnError("--target socketio needs Node.js (node) on PATH")
    modules = BASELINE / "node_modules"
    if all((modules / name / "package.json").exists() for name in BASELINE_MODULES):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SpawnError(f"{modules} is missing and npm is not on PATH: install npm, run {NPM_CI}")
    say(f"loadtest: {modules} is missing: running npm ci (once)")
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=BASELINE, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=NPM_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SpawnError(f"npm ci took over {NPM_TIMEOUT_S:g}s; run it by hand: {NPM_CI}") from None
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-2000:]
        raise SpawnError(f"npm ci failed ({done.returncode}); run it by hand: {NPM_CI}\n{tail}")


class Nodes:
    """Nodes started by the tool; use :meth:`stop` (or ``with``) to end them."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def __enter__(self) -> Nodes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    def start(
        self,
        count: int,
        secret: str,
        log_dir: Path,
        run_id: str,
        redis: str | None = None,
        extra: list[str] | None = None,
        target: str = "roomserver",
    ) -> None:
        if count > 1 and not redis:
            raise SpawnError("--spawn N>1 needs --redis URL: the memory broker is single-node")
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSERVER_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        if target == "socketio":
            ensure_baseline(lambda line: print(line, file=sys.stderr, flush=True))
            env["SIO_SECRET"] = secret
            env["NODE_ENV"] = "production"
        cmd = server_command(target, secret, redis, f"lt-{run_id}", list(extra or []))
        for i in range(count):
            log = log_dir / f"node-{run_id}-{i}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            self.nodes.append(Node(proc, "", log))
        for node in self.nodes:
            node.url = _wait_listening(node)

    def error_lines(self) -> dict[str, int]:
        """Per node log: lines that look like errors (ERROR, CRITICAL, Traceback)."""
        out: dict[str, int] = {}
        for node in self.nodes:
            text = node.log.read_text(errors="replace") if node.log.exists() else ""
            out[str(node.log)] = sum(
                1
                for line in text.splitlines()
                if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
            )
        return out

    def stop(self) -> None:
        """SIGTERM every node, wait (bounded), SIGKILL what is left."""
        for node in self.nodes:
            if node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for node in self.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            if node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.kill()
                node.proc.wait(5.0)


def _wait_listening(node: Node) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = node.log.read_text(errors="replace")
        found = LISTENING.search(text)
        if found:
            return found.group(1)
        if node.proc.poll() is not None:
            raise SpawnError(f"node exited with {node.proc.returncode}:\n{text[-2000:]}")
        time.sleep(0.05)
    raise SpawnError(f"node did not listen within {START_TIMEOUT_S:g}s:\n{text[-2000:]}")
