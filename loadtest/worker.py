"""The main function of one client process: its own asyncio loop, many connections.

A worker talks to the coordinator through two queues. It sends
``("ready", i, snapshot)``, ``("tick", i, progress)`` every second once measuring,
``("sent", i, report)``, ``("result", i, result)``, or ``("failed", i, traceback)``;
it receives ``("go", t0_ns or None)``, ``("drain", payload)`` and ``("finish",)`` in
that order, and ``("stop",)`` at any time.

Invariants:

- A worker ignores SIGINT: Ctrl-C reaches the whole process group, and it is the
  coordinator that decides how to stop (``stop``), so the figures so far survive.
- ``stop`` may arrive at any time; it ends the current phase early, and the worker
  still reports its result, so an interrupted run prints real figures.
- Every wait for a command is bounded; a worker whose coordinator vanished exits.
- The worker closes every connection it opened before it exits.
- Objects that exist after setup are frozen out of the garbage collector
  (:func:`quiet_gc`), so its pauses do not show up as server latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing.queues
import os
import queue
import resource
import signal
import threading
import time
import traceback
from typing import Any

from loadtest.plan import WorkerSpec
from loadtest.recorder import Recorder
from loadtest.scenarios.base import WorkerRole

TICK_S = 1.0
#: First-generation GC threshold while measuring (the default is 700).
GC_THRESHOLD = 50_000
#: Full collections only after this many second-generation ones (the default is 10).
GC_FULL_THRESHOLD = 1_000
#: How long a worker waits for its next command before it gives up on the coordinator.
COMMAND_TIMEOUT_S = 3600.0

Queue = multiprocessing.queues.Queue


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard limit (5,000 sockets need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def quiet_gc() -> None:
    """Keep the garbage collector from pausing the measurement.

    After setup a worker holds thousands of long-lived connection objects; a full
    collection walks all of them and stalls the loop, which would show up as latency
    that the server never caused. Freezing moves them out of the collector's sight,
    and a larger first-generation threshold makes collections rarer. A join burst
    measured from one worker makes its heap grow fast, and CPython starts a full
    collection at every quarter of growth (each pausing every join in flight, as 2,000
    separate clients never would): full collections wait for :data:`GC_FULL_THRESHOLD`
    second-generation ones. Cycles are still collected, so a long soak does not leak.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, gc.get_threshold()[1], GC_FULL_THRESHOLD)


def worker_main(spec: WorkerSpec, events: Queue[Any], commands: Queue[Any]) -> None:
    """Entry point of a client process (``multiprocessing`` spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_open_files_limit()
    try:
        asyncio.run(_Worker(spec, events, commands).main())
    except BaseException:
        events.put(("failed", spec.index, traceback.format_exc()))


class _Worker:
    def __init__(self, spec: WorkerSpec, events: Queue[Any], commands: Queue[Any]) -> None:
        from loadtest.scenarios import SCENARIOS  # imported here: the registry imports us

        self.spec = spec
        self.events = events
        self.commands = commands
        self.rec = Recorder()
        self.role: WorkerRole = SCENARIOS[spec.scenario].worker(spec, self.rec)
        self.stop = asyncio.Event()
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._quit = threading.Event()
        self.parent = os.getppid()

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """A daemon thread: commands from the coordinator into the loop."""
        while not self._quit.is_set():
            try:
                command = self.commands.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                command = ("stop",)
            loop.call_soon_threadsafe(self._command, tuple(command))

    def _command(self, command: tuple[Any, ...]) -> None:
        if command[0] == "stop":
            self.stop.set()
        else:
            self.inbox.put_nowait(command)

    async def _next(self, expected: str) -> tuple[Any, ...] | None:
        """The next ``expected`` command; None if the coordinator is gone or never sends it.

        The coordinator sends ``go``, ``drain`` and ``finish`` in that order even when
        it stops a run early, so ``stop`` only shortens phases and never skips one.
        """
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while time.monotonic() < deadline and os.getppid() == self.parent:
            try:
                command = await asyncio.wait_for(self.inbox.get(), 1.0)
            except TimeoutError:
                continue
            if command[0] == expected:
                return command
        return None

    def _send(self, kind: str, body: Any) -> None:
        self.events.put((kind, self.spec.index, body))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._progress()

    def _progress(self) -> None:
        self.role.sync()
        self._send("tick", {**self.rec.snapshot(), "windows": self.rec.take_windows()})

    async def _phase(self, work: Any) -> Any:
        """Run one phase; ``stop`` cancels it unless it handles ``stop`` itself."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():
            # the phase got a chance to see stop; give it a moment, then cancel it
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), 3.0)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return None
        return task.result() if not task.cancelled() else None

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._listen, args=(loop,), daemon=True).start()
        ticker: asyncio.Task[None] | None = None
        try:
            await self._phase(self.role.setup())
            quiet_gc()
            self._send("ready", self.rec.snapshot())
            command = await self._next("go")
            if command is None:
                return
            sent: dict[str, Any] = {}
            if command[1] is not None:
                self.rec.t0_ns = int(command[1])
                ticker = loop.create_task(self._ticker())
                sent = await self._phase(self.role.run(self.rec.t0_ns, self.stop)) or {}
            self._send("sent", sent)
            command = await self._next("drain")
            if command is None:
                return
            payload: dict[str, Any] = command[1]
            await self._phase(self.role.drain(payload, self.stop))
            if ticker is not None:
                ticker.cancel()
            self.role.sync()
            self._send(
                "result",
                {
                    **self.rec.snapshot(),
                    "windows": self.rec.take_windows(),
                    "totals": self.rec.totals_json(),
                    "role": self.role.result(),
                },
            )
            await self._next("finish")
        finally:
            if ticker is not None:
                ticker.cancel()
            await self.role.close()
            self._quit.set()
