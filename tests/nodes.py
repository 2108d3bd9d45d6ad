"""Node processes for tests: real ``roomserver serve`` on 127.0.0.1, always stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from signaling.client import RoomClient
from tests.harness import SECRET

_LISTENING = re.compile(rb"listening on (http://\S+)")


@dataclass
class NodeProcess:
    process: asyncio.subprocess.Process
    url: str
    node_id: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    async def connect(self) -> RoomClient:
        return await RoomClient.connect(self.ws_url)

    def kill(self) -> None:
        """SIGKILL: the node dies without a chance to clean anything up."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_node(node_id: str, *args: str, prefix: Sequence[str] = ()) -> NodeProcess:
    """``roomserver serve`` with ``args``, run through ``prefix`` (e.g. ``nsenter ...``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSERVER_")}
    process = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "roomserver.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--secret",
        SECRET,
        "--node-id",
        node_id,
        "--media",
        "off",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(20):
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError(f"node {node_id} exited before listening")
                found = _LISTENING.search(line)
                if found:
                    break
    except BaseException:
        process.kill()
        await process.wait()
        raise
    # Keep draining stdout so the node never blocks on a full pipe.
    asyncio.get_running_loop().create_task(_drain(process))
    return NodeProcess(process, found.group(1).decode(), node_id)


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    with contextlib.suppress(Exception):
        while await process.stdout.readline():
            pass


@contextlib.asynccontextmanager
async def nodes(count: int, *args: str) -> AsyncIterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    try:
        for index in range(count):
            started.append(await start_node(f"node{index}", *args))
        yield started
    finally:
        for node in started:
            await node.stop()
