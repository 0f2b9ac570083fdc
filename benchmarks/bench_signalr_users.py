"""Cost per SignalR user: can one Locust process keep N SignalRUsers connected and receiving?

    nice -n 10 .venv/bin/python benchmarks/bench_signalr_users.py          # 5,000 users, 30 s
    .venv/bin/python benchmarks/bench_signalr_users.py --users 200 --hold 5
    git archive main | tar -x -C /tmp/main && \
        .venv/bin/python benchmarks/bench_signalr_users.py --compare-root /tmp/main

A script, not a test. It raises RLIMIT_NOFILE to its hard limit (the Locust process inherits
it), starts the simulator in a thread of this process (127.0.0.1, port 0) and one headless
Locust process (a local run: the same code path as one worker) with N ``SignalRUser`` in
``--conduit-signalr-mode listen`` (connect, stay connected, measure every event). Once every user
is connected (or the ramp budget is spent) it measures ``--idle`` seconds without events, then
the simulator sends a ``TaskProgress`` invocation to all of them every ``--event-interval``
seconds for ``--hold`` seconds; then Locust is stopped. With ``--compare-root`` the same run is
repeated with the load users of another tree (a same-run baseline; variants alternate over
``--rounds``). Figures go to ``reports/bench/signalr_users.json``, per run:

- connected: peak users in the hub (server side) and handshakes that succeeded (client side);
- events: expected (broadcasts x users), sent by the server (recipients summed), received by the
  users (Locust samples), delivery ratio, emit -> receive latency (exact percentiles). A
  broadcast reaches all N at once, so the latency includes the time the one Locust process needs
  to work through N events: about N x the CPU per event;
- Locust process: CPU from its CPU times (100 % = one core) while idle and while events flow,
  CPU per event (and above idle), RSS idle / connected / at the end, RSS per user (slope of RSS
  against connected users during the ramp, and growth above the idle process / N);
- the simulator's CPU and RSS, for context (same process as this script);
- ``sustained``: every criterion (all connected, >= 99.9 % received, p95 under a bound, CPU under
  90 %) and whether it held.

The machine is shared: CPU figures include whatever else ran; say so when you quote them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.app import Simulator  # noqa: E402
from simulator.auth import make_key  # noqa: E402
from simulator.background import BackgroundSimulator  # noqa: E402

HUB = "/hubs/image-generation"
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000,
                        help="SignalRUsers to connect (default %(default)s)")
    parser.add_argument("--spawn-rate", type=float, default=200.0, help="users started per second")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds between the last connection and the first broadcast")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds of events once all are connected")
    parser.add_argument("--event-interval", type=float, default=1.0,
                        help="seconds between broadcasts (each reaches every user)")
    parser.add_argument("--ramp-budget", type=float, default=None,
                        help="seconds to wait for every user to connect (default users/rate + 30)")
    parser.add_argument("--protocol", choices=("json", "messagepack"), default="json")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "signalr_users.json")
    parser.add_argument("--max-p95-ms", type=float, default=1000.0,
                        help="latency p95 above this means the users are not keeping up")
    parser.add_argument("--min-delivery", type=float, default=0.999,
                        help="fraction of sent events that must be received (default %(default)s)")
    parser.add_argument("--compare-root", type=Path, action="append", default=[],
                        help="a copy of the tree (e.g. `git archive <commit>`) whose loadtests run as a "
                             "same-run baseline named after the directory, alternating with the current "
                             "code (repeatable)")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds of CPU measured while connected, before the first broadcast")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each variant (alternated)")
    return parser.parse_args(argv)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y against x."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def run_variant(args: argparse.Namespace, label: str, root: Path, background: BackgroundSimulator,
                key: str) -> dict[str, Any]:
    """One Locust process with ``args.users`` listening SignalRUsers from the code at ``root``."""
    hub = background.simulator.hub(HUB)
    group = f"vkey-{key}"
    ramp_budget = args.ramp_budget if args.ramp_budget is not None else args.users / args.spawn_rate + 30
    report_dir = Path(tempfile.mkdtemp(prefix=f"bench-signalr-{label}-"))
    me = psutil.Process()
    sim_rss_start = me.memory_info().rss

    def in_hub() -> int:
        return background.call(lambda: len(hub.groups.get(group, ())))

    run_time = int(ramp_budget + args.hold + 60)  # an upper bound: we stop Locust ourselves
    cmd = [sys.executable, "-m", "locust", "-f", str(root / "loadtests" / "locustfile.py"), "--headless",
           "-u", str(args.users), "-r", f"{args.spawn_rate:g}", "-t", f"{run_time}s",
           "--host", background.url,
           "--only-summary", "--csv", str(report_dir / "locust"), "--exit-code-on-error", "0",
           "--conduit-report-dir", str(report_dir),
           "--conduit-signalr-mode", "listen", "--conduit-protocol", args.protocol,
           "--conduit-request-timeout", "60", "SignalRUser"]
    env = {**os.environ, "CONDUIT_VIRTUAL_KEY": key, "PYTHONPATH": str(root)}
    env.pop("CONDUIT_LOAD_SHAPE", None)
    log_path = report_dir / "locust.log"
    print(f"[{label}] simulator {background.url}; code {root}; Locust log {log_path}", flush=True)
    load_start = os.getloadavg()
    started = time.monotonic()
    with log_path.open("w") as log:
        locust = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc = psutil.Process(locust.pid)
    proc.cpu_percent(None)
    me.cpu_percent(None)
    samples: list[dict[str, Any]] = []

    def sample(phase: str) -> dict[str, Any]:
        point = {"t": round(time.monotonic() - started, 2), "phase": phase, "connected": in_hub(),
                 "locust_rss": proc.memory_info().rss, "locust_cpu": proc.cpu_percent(None),
                 "sim_rss": me.memory_info().rss, "sim_cpu": me.cpu_percent(None)}
        samples.append(point)
        return point

    # -- ramp -------------------------------------------------------------------------------------
    peak = 0
    idle_rss = None
    ramp_end = started + ramp_budget
    while time.monotonic() < ramp_end and locust.poll() is None:
        time.sleep(0.5)
        point = sample("ramp")
        peak = max(peak, point["connected"])
        if idle_rss is None and point["connected"] == 0:
            idle_rss = point["locust_rss"]  # Locust started, no user connected yet (best effort)
        print(f"  t={point['t']:6.1f}s connected={point['connected']:5d} "
              f"locust cpu={point['locust_cpu']:5.1f}% rss={point['locust_rss'] / 2**20:6.1f} MiB",
              flush=True)
        if point["connected"] >= args.users:
            break
    ramp_seconds = time.monotonic() - started
    time.sleep(args.settle)  # the last users' first wait; Locust's ramp book-keeping
    rss_connected = proc.memory_info().rss
    # -- idle: connected, no events (keep-alive Pings, the users' own loops, Locust's book-keeping) --
    idle_cpu_start, idle_start = cpu_seconds(proc), time.monotonic()
    time.sleep(args.idle)
    idle_s = time.monotonic() - idle_start
    idle_cpu_s = cpu_seconds(proc) - idle_cpu_start
    connected_at_hold = in_hub()

    # -- events -----------------------------------------------------------------------------------
    sent = 0
    broadcasts = 0
    hold_start = time.monotonic()
    cpu_hold_start = cpu_seconds(proc)
    sim_cpu_hold_start = cpu_seconds(me)
    next_emit = hold_start
    next_sample = hold_start + 1.0
    while time.monotonic() < hold_start + args.hold and locust.poll() is None:
        now = time.monotonic()
        if now >= next_emit:
            broadcasts += 1
            sent += background.call(hub.send_group, group, "TaskProgress", ["bench", broadcasts])
            next_emit += args.event_interval
        if now >= next_sample:
            point = sample("hold")
            peak = max(peak, point["connected"])
            next_sample += 1.0
        time.sleep(max(0.0, min(next_emit, next_sample) - time.monotonic()))
    time.sleep(min(2.0, args.event_interval))  # let the last broadcast arrive
    hold_seconds = time.monotonic() - hold_start
    hold_cpu_s = cpu_seconds(proc) - cpu_hold_start
    sim_hold_cpu_s = cpu_seconds(me) - sim_cpu_hold_start
    end_point = sample("end")
    load_end = os.getloadavg()

    # -- stop Locust (SIGTERM: it writes its reports) -------------------------------------------
    if locust.poll() is None:
        locust.send_signal(signal.SIGTERM)
    try:
        locust.wait(180)
    except subprocess.TimeoutExpired:
        locust.kill()
        locust.wait()
    deadline = time.monotonic() + 30
    while in_hub() and time.monotonic() < deadline:  # the next variant starts from an empty hub
        time.sleep(0.5)

    summary_path = report_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"entries": []}
    entries = {e["name"]: e for e in summary.get("entries", []) if e["type"] == "SignalR"}
    latency = entries.get("latency TaskProgress", {})
    handshake = entries.get(f"handshake {args.protocol}", {})
    connect_failures = sum(entries.get(n, {}).get("failures", 0)
                           for n in ("negotiate", "connect", f"handshake {args.protocol}"))
    received = latency.get("count", 0)
    ramp_points = [(p["connected"], p["locust_rss"]) for p in samples
                   if p["phase"] == "ramp" and p["connected"] >= args.users * 0.1]
    sim_points = [(p["connected"], p["sim_rss"]) for p in samples
                  if p["phase"] == "ramp" and p["connected"] >= args.users * 0.1]
    rss_slope = slope(ramp_points)
    sim_slope = slope(sim_points)
    users = max(connected_at_hold, 1)
    cpu_percent = 100.0 * hold_cpu_s / hold_seconds if hold_seconds else None
    idle_percent = 100.0 * idle_cpu_s / idle_s if idle_s > 0 else None
    event_cpu_s = hold_cpu_s - (idle_cpu_s / idle_s) * hold_seconds if idle_s > 0 else None
    delivery = received / sent if sent else None
    criteria = {
        f"all {args.users} users connected (server side)": peak >= args.users,
        f"{args.users} handshakes without failures (client side)":
            handshake.get("count", 0) - handshake.get("failures", 0) >= args.users and connect_failures == 0,
        f"at least {args.min_delivery:.1%} of sent events received":
            delivery is not None and delivery >= args.min_delivery,
        f"latency p95 below {args.max_p95_ms:g} ms": (latency.get("p95") or float("inf")) < args.max_p95_ms,
        "Locust CPU below 90% of one core while events flow": cpu_percent is not None and cpu_percent < 90,
    }
    return {
        "variant": label, "code": str(root),
        "load_average_1min": {"start": load_start[0], "end": load_end[0]},
        "connected": {"peak_in_hub": peak, "at_hold_start": connected_at_hold,
                      "at_end": end_point["connected"],
                      "handshakes_ok": handshake.get("count", 0) - handshake.get("failures", 0),
                      "connect_failures": connect_failures, "ramp_s": round(ramp_seconds, 1)},
        "events": {"broadcasts": broadcasts, "expected": broadcasts * args.users, "sent": sent,
                   "received": received, "delivery_ratio": delivery, "hold_s": round(hold_seconds, 1),
                   "received_per_s": received / hold_seconds if hold_seconds else None,
                   "latency_ms": {k: latency.get(k) for k in ("p50", "p90", "p95", "p99", "max")}},
        "locust_process": {
            "cpu_percent_during_events": round(cpu_percent, 1) if cpu_percent is not None else None,
            "cpu_percent_max_sample": max((p["locust_cpu"] for p in samples if p["phase"] == "hold"),
                                          default=None),
            "cpu_us_per_event": round(1e6 * hold_cpu_s / received, 1) if received else None,
            "cpu_percent_idle": round(idle_percent, 1) if idle_percent is not None else None,
            "cpu_us_per_event_above_idle":
                round(1e6 * event_cpu_s / received, 1) if received and event_cpu_s is not None else None,
            "cpu_percent_per_1000_users": round(cpu_percent * 1000 / users, 2) if cpu_percent else None,
            "rss_mib_idle": round(idle_rss / 2**20, 1) if idle_rss else None,
            "rss_mib_connected": round(rss_connected / 2**20, 1),
            "rss_mib_end": round(end_point["locust_rss"] / 2**20, 1),
            "rss_kib_per_user_slope": round(rss_slope / 1024, 1) if rss_slope is not None else None,
            "rss_kib_per_user_above_idle":
                round((end_point["locust_rss"] - idle_rss) / 1024 / users, 1) if idle_rss else None,
            "rss_kib_per_user_total": round(end_point["locust_rss"] / 1024 / users, 1),
            "exit_code": locust.returncode,
        },
        "simulator_process": {
            "cpu_percent_during_events":
                round(100.0 * sim_hold_cpu_s / hold_seconds, 1) if hold_seconds else None,
            "rss_kib_per_connection_slope": round(sim_slope / 1024, 1) if sim_slope is not None else None,
            "rss_growth_mib": round((end_point["sim_rss"] - sim_rss_start) / 2**20, 1),
        },
        "sustained": all(criteria.values()),
        "criteria": criteria,
        "timeline": samples,
        "locust_report_dir": str(report_dir),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fd_limit = raise_fd_limit()
    if fd_limit < args.users + 200:
        print(f"RLIMIT_NOFILE is {fd_limit}: too few descriptors for {args.users} users", file=sys.stderr)
        return 2
    key = make_key()
    variants: list[tuple[str, Path]] = [("current", ROOT)]
    variants += [(root.resolve().name, root.resolve()) for root in args.compare_root]
    background = BackgroundSimulator(Simulator(keys=[key], scenario="happy-path"))
    background.start()
    runs: list[dict[str, Any]] = []
    try:
        for round_index in range(args.rounds):
            order = variants if round_index % 2 == 0 else variants[::-1]
            for label, root in order:
                run = run_variant(args, label, root, background, key)
                run["round"] = round_index
                runs.append(run)
                brief = {k: run[k] for k in ("variant", "load_average_1min", "connected", "events",
                                             "locust_process", "sustained")}
                print(json.dumps(brief, indent=2, default=str), flush=True)
    finally:
        background.stop()
    result = {
        "benchmark": "signalr_users",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "fd_limit": fd_limit},
        "config": {"users": args.users, "spawn_rate": args.spawn_rate, "hold_s": args.hold,
                   "event_interval_s": args.event_interval, "protocol": args.protocol,
                   "offered_events_per_s": args.users / args.event_interval, "rounds": args.rounds,
                   "compare_roots": [str(root) for root in args.compare_root],
                   "min_delivery": args.min_delivery},
        "sustained": all(run["sustained"] for run in runs if run["variant"] == "current"),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print(f"written to {args.out}")
    return 0 if result["sustained"] else 1


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
