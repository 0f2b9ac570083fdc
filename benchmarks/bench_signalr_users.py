"""Cost per SignalR user: can one Locust process keep N SignalRUsers connected and receiving?

    .venv/bin/python benchmarks/bench_signalr_users.py                 # 1000 users
    .venv/bin/python benchmarks/bench_signalr_users.py --users 200 --hold 20

A script, not a test. It starts the simulator in a thread of this process (127.0.0.1, port 0) and
one headless Locust process (a local run: the same code path as one worker) with N
``SignalRUser`` in ``--conduit-signalr-mode listen`` (connect, stay connected, measure every
event). Once every user is connected (or the ramp budget is spent) the simulator sends a
``TaskProgress`` invocation to all of them every ``--event-interval`` seconds for ``--hold``
seconds; then Locust is stopped and the figures are written to ``reports/bench/signalr_users.json``:

- connected: peak users in the hub (server side) and handshakes that succeeded (client side);
- events: sent by the server (recipients summed), received by the users (Locust samples),
  received per second, delivery ratio, emit → receive latency (exact p50/p95/p99);
- Locust process: CPU (100 % = one core; Locust runs on one core) while events flow, RSS at the
  end, RSS per user (slope of RSS against connected users during the ramp, and RSS / N);
- the simulator's RSS growth per connection, for context (same process as this script);
- ``sustained``: every criterion and whether it held.

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
    parser.add_argument("--users", type=int, default=1000,
                        help="SignalRUsers to connect (default %(default)s)")
    parser.add_argument("--spawn-rate", type=float, default=100.0, help="users started per second")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds of events once all are connected")
    parser.add_argument("--event-interval", type=float, default=1.0,
                        help="seconds between broadcasts (each reaches every user)")
    parser.add_argument("--ramp-budget", type=float, default=None,
                        help="seconds to wait for every user to connect (default users/rate + 30)")
    parser.add_argument("--protocol", choices=("json", "messagepack"), default="json")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "signalr_users.json")
    parser.add_argument("--max-p95-ms", type=float, default=1000.0,
                        help="latency p95 above this means the users are not keeping up")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fd_limit = raise_fd_limit()
    key = make_key()
    group = f"vkey-{key}"
    ramp_budget = args.ramp_budget if args.ramp_budget is not None else args.users / args.spawn_rate + 30
    report_dir = Path(tempfile.mkdtemp(prefix="bench-signalr-"))
    me = psutil.Process()

    background = BackgroundSimulator(Simulator(keys=[key], scenario="happy-path"))
    url = background.start()
    hub = background.simulator.hub(HUB)
    sim_rss_start = me.memory_info().rss

    def in_hub() -> int:
        return background.call(lambda: len(hub.groups.get(group, ())))

    run_time = int(ramp_budget + args.hold + 60)  # an upper bound: we stop Locust ourselves
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(args.users),
           "-r", f"{args.spawn_rate:g}", "-t", f"{run_time}s", "--host", url, "--only-summary",
           "--csv", str(report_dir / "locust"), "--exit-code-on-error", "0",
           "--conduit-report-dir", str(report_dir),
           "--conduit-signalr-mode", "listen", "--conduit-protocol", args.protocol,
           "--conduit-request-timeout", "60", "SignalRUser"]
    env = {**os.environ, "CONDUIT_VIRTUAL_KEY": key, "PYTHONPATH": str(ROOT)}
    env.pop("CONDUIT_LOAD_SHAPE", None)
    log_path = report_dir / "locust.log"
    print(f"simulator {url}; Locust log {log_path}", flush=True)
    started = time.monotonic()
    with log_path.open("w") as log:
        locust = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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
    ramp_end = started + ramp_budget
    while time.monotonic() < ramp_end and locust.poll() is None:
        time.sleep(0.5)
        point = sample("ramp")
        peak = max(peak, point["connected"])
        print(f"  t={point['t']:6.1f}s connected={point['connected']:5d} "
              f"locust cpu={point['locust_cpu']:5.1f}% rss={point['locust_rss'] / 2**20:6.1f} MiB",
              flush=True)
        if point["connected"] >= args.users:
            break
    ramp_seconds = time.monotonic() - started
    connected_at_hold = in_hub()

    # -- events -----------------------------------------------------------------------------------
    sent = 0
    broadcasts = 0
    hold_start = time.monotonic()
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
    hold_seconds = time.monotonic() - hold_start
    time.sleep(2.0)  # let the last broadcast arrive
    end_point = sample("end")

    # -- stop Locust (SIGTERM: it writes its reports) -------------------------------------------
    if locust.poll() is None:
        locust.send_signal(signal.SIGTERM)
    try:
        locust.wait(120)
    except subprocess.TimeoutExpired:
        locust.kill()
        locust.wait()
    background.stop()

    summary_path = report_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"entries": []}
    entries = {e["name"]: e for e in summary.get("entries", []) if e["type"] == "SignalR"}
    latency = entries.get("latency TaskProgress", {})
    handshake = entries.get(f"handshake {args.protocol}", {})
    connect_failures = sum(entries.get(n, {}).get("failures", 0)
                           for n in ("negotiate", "connect", f"handshake {args.protocol}"))
    received = latency.get("count", 0)
    hold_cpu = [p["locust_cpu"] for p in samples if p["phase"] == "hold"]
    hold_sim_cpu = [p["sim_cpu"] for p in samples if p["phase"] == "hold"]
    ramp_points = [(p["connected"], p["locust_rss"]) for p in samples
                   if p["phase"] == "ramp" and p["connected"] >= args.users * 0.1]
    sim_points = [(p["connected"], p["sim_rss"]) for p in samples
                  if p["phase"] == "ramp" and p["connected"] >= args.users * 0.1]
    rss_slope = slope(ramp_points)
    sim_slope = slope(sim_points)
    avg_cpu = sum(hold_cpu) / len(hold_cpu) if hold_cpu else None
    delivery = received / sent if sent else None
    criteria = {
        f"all {args.users} users connected (server side)": peak >= args.users,
        f"{args.users} handshakes without failures (client side)":
            handshake.get("count", 0) - handshake.get("failures", 0) >= args.users and connect_failures == 0,
        "at least 99% of sent events received": delivery is not None and delivery >= 0.99,
        f"latency p95 below {args.max_p95_ms:g} ms": (latency.get("p95") or float("inf")) < args.max_p95_ms,
        "Locust CPU below 90% of one core while events flow": avg_cpu is not None and avg_cpu < 90,
    }
    result = {
        "benchmark": "signalr_users",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "fd_limit": fd_limit,
                    "load_average_at_end": os.getloadavg()},
        "config": {"users": args.users, "spawn_rate": args.spawn_rate, "hold_s": args.hold,
                   "event_interval_s": args.event_interval, "protocol": args.protocol,
                   "offered_events_per_s": args.users / args.event_interval},
        "connected": {"peak_in_hub": peak, "at_hold_start": connected_at_hold,
                      "at_end": end_point["connected"],
                      "handshakes_ok": handshake.get("count", 0) - handshake.get("failures", 0),
                      "connect_failures": connect_failures, "ramp_s": round(ramp_seconds, 1)},
        "events": {"broadcasts": broadcasts, "sent": sent, "received": received,
                   "delivery_ratio": delivery, "hold_s": round(hold_seconds, 1),
                   "received_per_s": received / hold_seconds if hold_seconds else None,
                   "latency_ms": {k: latency.get(k) for k in ("p50", "p90", "p95", "p99", "max")}},
        "locust_process": {
            "cpu_percent_avg_during_events": avg_cpu,
            "cpu_percent_max_during_events": max(hold_cpu) if hold_cpu else None,
            "rss_mib_end": round(end_point["locust_rss"] / 2**20, 1),
            "rss_kib_per_user_slope": round(rss_slope / 1024, 1) if rss_slope is not None else None,
            "rss_kib_per_user_total": round(end_point["locust_rss"] / 1024 / max(peak, 1), 1),
            "exit_code": locust.returncode,
        },
        "simulator_process": {
            "cpu_percent_avg_during_events": sum(hold_sim_cpu) / len(hold_sim_cpu) if hold_sim_cpu else None,
            "rss_kib_per_connection_slope": round(sim_slope / 1024, 1) if sim_slope is not None else None,
            "rss_growth_mib": round((end_point["sim_rss"] - sim_rss_start) / 2**20, 1),
        },
        "sustained": all(criteria.values()),
        "criteria": criteria,
        "timeline": samples,
        "locust_report_dir": str(report_dir),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    printable = {k: v for k, v in result.items() if k != "timeline"}
    print(json.dumps(printable, indent=2, default=str))
    print(f"written to {args.out}")
    return 0 if result["sustained"] else 1


if __name__ == "__main__":
    sys.exit(main())
