"""Parsing of /proc for CPU and memory figures."""

from __future__ import annotations

import os

import pytest

from loadtest import procfs


def test_stat_cpu_survives_a_name_with_spaces_and_parentheses() -> None:
    fields = ["S"] + [str(i) for i in range(4, 53)]
    fields[11], fields[12] = "250", "150"  # utime, stime (fields 14, 15)
    text = "1234 (my (odd) name) " + " ".join(fields)
    assert procfs.parse_stat_cpu(text, ticks_per_s=100) == 4.0


def test_status_rss() -> None:
    text = "Name:\tpython\nVmPeak:\t  9000 kB\nVmRSS:\t  1234 kB\nThreads: 1\n"
    assert procfs.parse_status_rss_kib(text) == 1234
    assert procfs.parse_status_rss_kib("Name: x\n") is None


def test_machine_cpu() -> None:
    cpu = procfs.parse_machine_cpu("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 1 2 3 4\n")
    assert cpu == procfs.MachineCpu(busy=15, total=100)
    with pytest.raises(ValueError):
        procfs.parse_machine_cpu("intr 1\n")


def test_netstat() -> None:
    text = "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 42\nIpExt: InNoRoutes\nIpExt: 0\n"
    assert procfs.parse_netstat(text) == {"SyncookiesSent": 3, "ListenOverflows": 42}


def test_this_process_reads_and_a_gone_one_is_unknown() -> None:
    cpu = procfs.cpu_seconds(os.getpid())
    assert cpu is not None and cpu >= 0
    rss = procfs.rss_kib(os.getpid())
    assert rss is not None and rss > 0
    assert procfs.cpu_seconds(2**22 + 7) is None
    assert procfs.delta({1: 1.0, 2: None}, {1: 3.5, 2: 4.0}) == {1: 2.5, 2: None}
