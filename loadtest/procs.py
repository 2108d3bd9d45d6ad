"""The client processes: started with ``spawn``, one asyncio loop each, always stopped.

Invariants:

- Workers are started with the ``spawn`` method, so none inherits the coordinator's
  event loop, sockets or threads.
- :meth:`Pool.stop` ends every worker: it waits (bounded) for a clean exit, then
  terminates, then kills; it is safe to call twice and is called on every path out
  of a run, errors and Ctrl-C included.
- Commands go to every worker in the same order (:meth:`Pool.broadcast`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import multiprocessing.queues
import queue
from collections.abc import Sequence
from typing import Any

from loadtest.plan import WorkerSpec
from loadtest.worker import worker_main

JOIN_TIMEOUT_S = 15.0


class Pool:
    """The running client processes and their queues."""

    def __init__(self, specs: Sequence[WorkerSpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.events: multiprocessing.queues.Queue[Any] = ctx.Queue()
        self._commands: list[multiprocessing.queues.Queue[Any]] = []
        self.processes: list[multiprocessing.context.SpawnProcess] = []
        for spec in specs:
            commands: multiprocessing.queues.Queue[Any] = ctx.Queue()
            proc = ctx.Process(
                target=worker_main,
                args=(spec, self.events, commands),
                name=f"loadtest-worker-{spec.index}",
                daemon=True,
            )
            self._commands.append(commands)
            self.processes.append(proc)

    def start(self) -> None:
        for proc in self.processes:
            proc.start()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def broadcast(self, *command: Any) -> None:
        for commands in self._commands:
            with contextlib.suppress(ValueError, OSError):
                commands.put(command)

    def get(self, timeout_s: float) -> tuple[str, int, Any] | None:
        """The next message of any worker, or None after ``timeout_s``."""
        try:
            message: tuple[str, int, Any] = self.events.get(timeout=timeout_s)
            return message
        except queue.Empty:
            return None

    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.processes) if p.is_alive()]

    def stop(self) -> None:
        """Ask, wait, terminate, kill: every worker is gone when this returns."""
        self.broadcast("stop")
        self.broadcast("finish")
        for proc in self.processes:
            if proc.pid is not None:
                proc.join(JOIN_TIMEOUT_S)
        for proc in self.processes:
            if proc.pid is not None and proc.is_alive():
                proc.terminate()
                proc.join(5.0)
            if proc.pid is not None and proc.is_alive():
                proc.kill()
                proc.join(5.0)
        for q in (self.events, *self._commands):
            q.close()
            q.cancel_join_thread()
