"""CPU time and memory of processes, read from Linux ``/proc``.

Invariants:

- CPU time is ``utime + stime`` of ``/proc/<pid>/stat`` (fields 14 and 15, in clock
  ticks), converted to seconds; the parsers are pure and split the ``stat`` line after
  the last ``)`` because a process name may itself contain spaces and parentheses.
- RSS is ``VmRSS`` of ``/proc/<pid>/status`` in KiB.
- A process that has gone away reads as ``None``, never as zero, so a report can say
  "unknown" instead of a figure that looks like an idle process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat_cpu(text: str, ticks_per_s: int = CLOCK_TICKS) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat``."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def parse_status_rss_kib(text: str) -> int | None:
    """``VmRSS`` in KiB from the text of ``/proc/<pid>/status``; None if absent."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """Whole-machine jiffies from ``/proc/stat``: busy and total."""

    busy: int
    total: int


def parse_machine_cpu(text: str) -> MachineCpu:
    """The first ``cpu`` line of ``/proc/stat``; idle and iowait count as not busy."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            # guest time is already included in user time
            total = sum(values[:8])
            return MachineCpu(busy=total - idle, total=total)
    raise ValueError("no cpu line in /proc/stat")


def parse_netstat(text: str) -> dict[str, int]:
    """``TcpExt`` counters of ``/proc/net/netstat`` (pairs of header and value lines)."""
    lines = text.splitlines()
    out: dict[str, int] = {}
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        names, numbers = header.split(), values.split()
        if names and names[0] == "TcpExt:" and numbers and numbers[0] == "TcpExt:":
            out.update({k: int(v) for k, v in zip(names[1:], numbers[1:], strict=False)})
    return out


def listen_overflows() -> int | None:
    """Machine-wide count of connections dropped because an accept queue was full.

    Each one costs its client a SYN retransmit (1 s at first), which shows up as a
    join latency of a second or more; the tool reports the change over a run.
    """
    text = _read("/proc/net/netstat")
    if not text:
        return None
    return parse_netstat(text).get("ListenOverflows")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid``; None if it is gone."""
    text = _read(f"/proc/{pid}/stat")
    return parse_stat_cpu(text) if text else None


def rss_kib(pid: int) -> int | None:
    """Resident memory of ``pid`` in KiB; None if it is gone."""
    text = _read(f"/proc/{pid}/status")
    return parse_status_rss_kib(text) if text else None


def machine_cpu() -> MachineCpu | None:
    text = _read("/proc/stat")
    return parse_machine_cpu(text) if text else None


def cpu_of(pids: list[int]) -> dict[int, float | None]:
    return {pid: cpu_seconds(pid) for pid in pids}


def delta(start: dict[int, float | None], end: dict[int, float | None]) -> dict[int, float | None]:
    """CPU seconds used by each pid between two readings; None when either is unknown."""
    out: dict[int, float | None] = {}
    for pid, before in start.items():
        after = end.get(pid)
        out[pid] = None if before is None or after is None else round(after - before, 3)
    return out
