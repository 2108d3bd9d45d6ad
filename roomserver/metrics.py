"""Prometheus text exposition without a global registry.

Each node owns its own :class:`Metrics`, so several nodes in one test process
never share counters. Only what the server needs: labelled counters, gauges
read at scrape time, and one fixed-bucket histogram type.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Counter:
    name: str
    help: str
    label: str = ""
    values: dict[str, float] = field(default_factory=dict)

    def inc(self, label_value: str = "", amount: float = 1.0) -> None:
        self.values[label_value] = self.values.get(label_value, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        if not self.values and not self.label:
            yield f"{self.name} 0"
        for key, value in sorted(self.values.items()):
            labels = f'{{{self.label}="{key}"}}' if self.label else ""
            yield f"{self.name}{labels} {_num(value)}"


@dataclass(slots=True)
class Gauge:
    """A value read at scrape time; ``kind`` "counter" for one that only grows."""

    name: str
    help: str
    read: Callable[[], float]
    kind: str = "gauge"

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        yield f"{self.name} {_num(self.read())}"


@dataclass(slots=True)
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            yield f'{self.name}_bucket{{le="{_num(bound)}"}} {running}'
        yield f'{self.name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{self.name}_sum {_num(self.total)}"
        yield f"{self.name}_count {self.count}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """The node's metrics; gauges are bound to live state by the node."""

    def __init__(self) -> None:
        self.messages_accepted = Counter(
            "roomserver_chat_messages_accepted_total", "chat messages sequenced by this node"
        )
        self.events_sent = Counter(
            "roomserver_events_sent_total", "events written to member connections"
        )
        self.errors = Counter(
            "roomserver_errors_total", "error answers sent, by protocol code", label="code"
        )
        self.requests = Counter("roomserver_requests_total", "requests handled, by type", "type")
        self.slow_disconnects = Counter(
            "roomserver_slow_client_disconnects_total", "connections dropped for falling behind"
        )
        self.join_seconds = Histogram(
            "roomserver_join_seconds",
            "time from join request to snapshot written",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help, read))

    def counter(self, name: str, help: str, read: Callable[[], float]) -> None:
        """A counter kept elsewhere (it must only grow), read at scrape time."""
        self.gauges.append(Gauge(name, help, read, "counter"))

    def render(self) -> str:
        parts: list[Iterable[str]] = [g.render() for g in self.gauges]
        parts += [
            self.messages_accepted.render(),
            self.events_sent.render(),
            self.errors.render(),
            self.requests.render(),
            self.slow_disconnects.render(),
            self.join_seconds.render(),
        ]
        return "\n".join(line for part in parts for line in part) + "\n"
