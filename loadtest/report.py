"""The results of a run: one JSON document, a table on stdout and a PNG plot.

Invariants:

- :func:`build` is the only place figures are derived; the table, the JSON file and
  the plot all read the document it returns, so they can never disagree.
- Every error code and every close is in the document and in the table; nothing is
  summarised away. Checks that failed are listed first among the warnings and make
  ``ok`` false.
- Rates use the measured interval (t0 to the end of the drain) unless stated; joins
  per second use the span from the first connect to the last ``ok`` of ``join``.
- The plot uses matplotlib's Agg backend (no display needed) and is skipped, with a
  warning, when matplotlib is not installed.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest.aggregate import ordered_kinds
from loadtest.runner import SATURATED_SHARE, Outcome
from loadtest.stats import rate

SCHEMA = 1
ROOT = Path(__file__).resolve().parent.parent


def commit(root: Path = ROOT) -> str:
    """The checked-out commit (short), read from ``.git`` without running git."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            path = git / ref
            if path.exists():
                return path.read_text().strip()[:7]
            packed = (git / "packed-refs").read_text().splitlines()
            for line in packed:
                if line.endswith(" " + ref):
                    return line.split()[0][:7]
            return "unknown"
        return head[:7]
    except OSError:
        return "unknown"


def build(
    outcome: Outcome, command: list[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run's document (see the module docstring)."""
    agg = outcome.aggregate
    counters = agg.counter_sum()
    errors = agg.error_sum()
    results = [agg.results[w] for w in sorted(agg.results)]
    latency = {k: agg.totals[k].summary() for k in ordered_kinds(list(agg.totals))}
    first = min(
        (int(r.get("first_join_start_ns", 0)) for r in results if r.get("first_join_start_ns")),
        default=0,
    )
    last = max((int(r.get("last_join_ns", 0)) for r in results), default=0)
    join_span = (last - first) / 1e9 if first and last > first else 0.0
    chat = outcome.figures.get("chat_deliveries", {})
    delivered = int(chat.get("delivered", counters.get("deliveries", 0)))
    rates: dict[str, Any] = {
        "joins_per_s": round(rate(counters.get("joined", 0), join_span), 1),
        "join_span_s": round(join_span, 3),
    }
    cpu = dict(outcome.cpu)
    server_s = cpu.get("server_s")
    mix = outcome.plan.mix
    if chat:
        rates["deliveries_per_s"] = round(rate(delivered, outcome.measured_s), 1)
    # Work per server CPU-second only means something when the run did one kind of work.
    activities = {
        "deliveries": delivered if chat else 0,
        "joins": counters.get("joined", 0) - mix.initial
        if mix and mix.initial < mix.members
        else 0,
        "votes": counters.get("vote_accepted", 0),
        "likes": counters.get("like_accepted", 0),
    }
    active = {k: v for k, v in activities.items() if v}
    watched_s = cpu.get("watched_s")
    if len(active) == 1:
        ((what, count),) = active.items()
        if server_s:
            rates[f"{what}_per_server_cpu_s"] = round(count / server_s, 1)
        if watched_s:
            rates[f"{what}_per_watched_cpu_s"] = round(count / watched_s, 1)
    if chat and watched_s and active.keys() == {"deliveries"}:
        # A Redis broker's work is per message (one script), not per delivery.
        messages = counters.get("chat_accepted", 0)
        rates["chat_messages_per_watched_cpu_s"] = round(messages / watched_s, 1)
    stale: dict[str, int] = {}
    for r in results:
        for k, v in r.get("stale", {}).items():
            stale[k] = stale.get(k, 0) + int(v)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "tool": "python -m loadtest",
        "scenario": outcome.scenario,
        "target": outcome.config.target,
        "command": " ".join(command),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {k: v for k, v in asdict(outcome.config).items() if k != "secret"},
        "plan": _plan(outcome),
        "notes": list(outcome.plan.notes),
        "interrupted": outcome.interrupted,
        "failure": outcome.failure,
        "phases": {"setup_s": outcome.setup_s, "measured_s": outcome.measured_s, **outcome.phases},
        "counters": counters,
        "errors": errors,
        "latency_ms": latency,
        "rates": rates,
        "figures": outcome.figures,
        "drain": stale,
        "cpu": cpu,
        "memory": outcome.memory,
        "checks": [c.to_json() for c in outcome.checks],
        "series": agg.series(),
        "histograms": {k: agg.totals[k].to_json() for k in ordered_kinds(list(agg.totals))},
        **(extra or {}),
    }
    doc["warnings"] = warnings(doc)
    doc["ok"] = (
        not outcome.interrupted
        and not outcome.failure
        and bool(outcome.checks)
        and all(c.ok for c in outcome.checks)
    )
    return doc


def _plan(outcome: Outcome) -> dict[str, Any]:
    plan = outcome.plan
    out: dict[str, Any] = {
        "members": plan.members,
        "duration_s": plan.duration_s,
        "estimated_events_per_s": round(plan.events_per_s, 1),
        **plan.params,
    }
    if plan.mix is not None:
        mix = asdict(plan.mix)
        mix["arrivals"] = plan.mix.arrivals.describe()
        out["mix"] = mix
    return out


def warnings(doc: dict[str, Any]) -> list[str]:
    """What a reader must know before trusting the figures."""
    out = [f"check failed: {c['name']} ({c['detail']})" for c in doc["checks"] if not c["ok"]]
    if doc["failure"]:
        out.append("run failed: " + doc["failure"].splitlines()[0])
    if doc["interrupted"]:
        out.append("run was interrupted or timed out: figures are partial")
    cpu = doc["cpu"]
    share = cpu.get("client_busiest_share", 0.0)
    if share >= SATURATED_SHARE:
        out.append(
            f"a client process used {share:.0%} of a core: the load generator's own CPU "
            "may limit these figures (more --procs, or another machine)"
        )
    cores, busy = cpu.get("machine_cores"), cpu.get("machine_busy_cores")
    if cores and busy is not None and busy >= 0.9 * cores:
        out.append(
            f"the machine was CPU-bound ({busy:g} of {cores} cores busy, "
            f"{cpu.get('other_busy_cores', 0):g} by other processes): server and load "
            "generator compete for the cores"
        )
    if cpu and cpu.get("server_s") is None:
        out.append("server CPU unknown: give --server-pid to measure it")
    overflows = cpu.get("listen_overflows")
    if overflows:
        out.append(
            f"{overflows} TCP connections were dropped by a full accept queue on this "
            "machine (TcpExt ListenOverflows): each waited for a SYN retransmit (>= 1 s); "
            "the server's listen backlog is too small for this arrival rate"
        )
    for log, lines in doc.get("server_logs", {}).items():
        if lines:
            out.append(f"server log has {lines} error lines: {log}")
    return out


def _ms(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def _per_process(cpu: dict[str, Any]) -> str:
    """Each client process's share of a core, when there are several."""
    shares = [
        f"{v / cpu['interval_s']:.0%}"
        for v in cpu.get("client_processes", {}).values()
        if isinstance(v, int | float) and cpu.get("interval_s")
    ]
    return f"; each {' '.join(shares)}" if len(shares) > 1 else ""


def table(doc: dict[str, Any]) -> str:
    """The human summary printed on stdout at the end of a run."""
    lines = [
        f"scenario {doc['scenario']}  target {doc.get('target', 'roomserver')}  "
        f"commit {doc['commit']}  {doc['date']}",
        f"command  {doc['command']}",
    ]
    lines += [f"note     {n}" for n in doc["notes"]]
    lines.append(
        f"setup {doc['phases']['setup_s']:.1f}s  measured {doc['phases']['measured_s']:.1f}s"
        + ("  INTERRUPTED" if doc["interrupted"] else "")
    )
    lines.append("")
    lines.append(f"{'latency (ms)':<14}{'count':>9}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}")
    for kind, s in doc["latency_ms"].items():
        lines.append(
            f"{kind:<14}{s['count']:>9}{_ms(s['p50_ms']):>10}{_ms(s['p95_ms']):>10}"
            f"{_ms(s['p99_ms']):>10}{_ms(s['max_ms']):>10}"
        )
    lines.append("")
    rates = doc["rates"]
    rows: list[tuple[str, Any]] = [
        (
            "joins/s",
            f"{rates['joins_per_s']:g} (first connect to last join ok, {rates['join_span_s']:g}s)",
        ),
    ]
    labels = {
        "deliveries_per_s": "deliveries/s (measured interval)",
        "deliveries_per_server_cpu_s": "deliveries per server CPU-s",
        "joins_per_server_cpu_s": "joins per server CPU-s",
        "votes_per_server_cpu_s": "votes per server CPU-s",
        "likes_per_server_cpu_s": "likes per server CPU-s",
        "deliveries_per_watched_cpu_s": "deliveries per watched-process CPU-s",
        "chat_messages_per_watched_cpu_s": "chat messages per watched-process CPU-s",
        "joins_per_watched_cpu_s": "joins per watched-process CPU-s",
        "votes_per_watched_cpu_s": "votes per watched-process CPU-s",
        "likes_per_watched_cpu_s": "likes per watched-process CPU-s",
    }
    rows += [(label, rates[key]) for key, label in labels.items() if key in rates]
    chat = doc["figures"].get("chat_deliveries")
    if chat:
        rows.append(
            (
                "chat deliveries",
                f"expected {chat['expected']} delivered {chat['delivered']} lost {chat['lost']} "
                f"duplicated {chat['duplicated']} out-of-order {chat['out_of_order']} "
                f"unacknowledged {chat['unacknowledged']}",
            )
        )
    votes = doc["figures"].get("votes")
    if votes:
        rows.append(("votes", f"accepted {votes['accepted']} final tally {votes['final_tally']}"))
    likes = doc["figures"].get("likes")
    if likes:
        rows.append(("likes", f"accepted {likes['accepted']} room total {likes['room_total']}"))
    viewers = doc["figures"].get("viewers")
    if viewers:
        fps = viewers["fps_per_viewer"]
        rows.append(
            (
                "viewers",
                f"{viewers['with_first_frame']} of {viewers['viewers']} decoded a first frame; "
                f"frames/s per viewer min {fps['min']:g} median {fps['p50']:g} "
                f"mean {fps['mean']:g} max {fps['max']:g}; second half of each watch "
                f"min {viewers['steady_fps_per_viewer']['min']:g} "
                f"median {viewers['steady_fps_per_viewer']['p50']:g}"
                + (
                    f" (published {viewers['published_fps']:g})"
                    if "published_fps" in viewers
                    else ""
                ),
            )
        )
    counters = doc["counters"]
    rows.append(("counters", " ".join(f"{k}={v}" for k, v in counters.items()) or "-"))
    errors = doc["errors"]
    rows.append(("errors", " ".join(f"{k}={v}" for k, v in errors.items()) or "none"))
    cpu = doc["cpu"]
    if cpu:
        rows.append(
            (
                "client CPU",
                f"{cpu['client_s']:g}s user+sys over {cpu['interval_s']:g}s "
                f"(busiest process {cpu['client_busiest_share']:.0%} of a core"
                + _per_process(cpu)
                + ")",
            )
        )
        server = cpu.get("server_s")
        rows.append(("server CPU", f"{server:g}s user+sys" if server is not None else "unknown"))
        if "watched_s" in cpu:
            watched = cpu["watched_s"]
            rows.append(
                (
                    "watched CPU",
                    f"{watched:g}s user+sys" if watched is not None else "unknown (gone?)",
                )
            )
        if "machine_busy_cores" in cpu:
            busy_text = (
                f"{cpu['machine_busy_cores']:g} of {cpu['machine_cores']} cores busy, "
                f"{cpu.get('other_busy_cores', 0):g} of them by other processes"
            )
            rows.append(("machine", busy_text))
    for pid, m in doc["memory"].get("server_rss", {}).items():
        growth = m.get("growth_after_warm_kib")
        rows.append(
            (
                f"server {pid} RSS",
                f"start {m['start_kib'] / 1024:.1f} MiB, end {m['end_kib'] / 1024:.1f} MiB, "
                f"max {m['max_kib'] / 1024:.1f} MiB"
                + (f", after warm-up {growth / 1024:+.1f} MiB" if growth is not None else ""),
            )
        )
    width = max(len(k) for k, _ in rows)
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    for check in doc["checks"]:
        lines.append(f"[{'PASS' if check['ok'] else 'FAIL'}] {check['name']}: {check['detail']}")
    for warning in doc["warnings"]:
        lines.append(f"WARNING {warning}")
    return "\n".join(lines)


def write(doc: dict[str, Any], out_dir: Path, stem: str, plot: bool = True) -> list[Path]:
    """Write ``<stem>.json`` (and ``<stem>.png``) under ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{stem}.json"]
    written[0].write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    if plot and doc["series"]:
        png = out_dir / f"{stem}.png"
        if plot_series(doc, png):
            written.append(png)
    return written


def plot_series(doc: dict[str, Any], path: Path) -> bool:
    """Latency percentiles per second, one panel per kind; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        doc["warnings"].append("matplotlib is not installed: no plot")
        return False
    kinds = [k for k in doc["series"] if doc["series"][k]]
    fig, axes = plt.subplots(
        len(kinds), 1, figsize=(10, 2.8 * len(kinds)), squeeze=False, sharex=True
    )
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        rows = doc["series"][kind]
        t = [r["t"] for r in rows]
        for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", "-."), ("max_ms", ":")):
            ax.plot(t, [r[key] for r in rows], style, marker=".", label=key.removesuffix("_ms"))
        ax.set_title(f"{kind} latency (ms) per second, n/s on the right axis", fontsize=9)
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
        counts = ax.twinx()
        counts.bar(t, [r["count"] for r in rows], alpha=0.15, color="gray", width=0.9)
        counts.set_ylabel("n/s", fontsize=8)
    axes[-1, 0].set_xlabel("seconds since t0")
    fig.suptitle(
        f"loadtest {doc['scenario']} @ {doc['commit']}: {doc['command']}"[:150], fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
