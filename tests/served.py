"""A ``roomserver serve`` process whose whole stdout and stderr are kept, always stopped.

For tests that read what a node writes (logs) or that serve HTTPS, which
:mod:`tests.nodes` does not: it discards stderr and expects ``http://``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"listening on (https?://\S+)")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


@dataclass
class Served:
    process: asyncio.subprocess.Process
    url: str = ""
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def ws_url(self) -> str:
        return re.sub(r"^http", "ws", self.url) + "/ws"

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)

    async def stop(self) -> int:
        """SIGTERM (the graceful path), then SIGKILL if it takes too long."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        self.exit_code = self.process.returncode
        return self.exit_code


async def _collect(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    assert stream is not None
    while line := await stream.readline():
        into.append(line.decode(errors="replace").rstrip("\n"))


@contextlib.asynccontextmanager
async def serve(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Served]:
    """Run ``roomserver serve ARGS`` on 127.0.0.1, port 0; yield once it listens."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSERVER_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), clean.get("PYTHONPATH")]))
    clean.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "roomserver.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--media",
        "off",
        *args,
        cwd=ROOT,
        env=clean,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(process)
    readers = [
        asyncio.ensure_future(_collect(process.stdout, served.stdout)),
        asyncio.ensure_future(_collect(process.stderr, served.stderr)),
    ]
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while not served.url:
                if process.returncode is not None or all(r.done() for r in readers):
                    raise AssertionError(f"node exited before listening:\n{served.output}")
                for line in served.stdout:
                    found = LISTENING.search(line)
                    if found:
                        served.url = found.group(1)
                await asyncio.sleep(0.02)
        yield served
    finally:
        await served.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers), STOP_TIMEOUT_S)
        for reader in readers:
            reader.cancel()
