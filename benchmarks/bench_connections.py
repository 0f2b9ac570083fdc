"""Concurrent SignalR connections one simulator process holds, and its memory per connection.

    .venv/bin/python -m benchmarks.bench_connections            # 10,000 connections
    .venv/bin/python -m benchmarks.bench_connections --quick    # smoke size

For each variant a server process starts with a short keep-alive (5 s, so Pings really flow during
the measurement); client processes (each from its own 127.0.0.x source address, RLIMIT_NOFILE
raised on both sides) open N connections in steps — ``signalr``: negotiate, WebSocket, JSON
handshake — and then hold them idle for ``--hold`` seconds while the server pings every
connection every keep-alive interval and every client pings the server as often.

- **held**: connections still open at the end on both sides *and* that received a Ping from the
  server during the last 1.5 keep-alive intervals (so the server still serves them all);
- **memory per connection**: (server RSS after N connections and the hold − RSS before the
  first connection) / N, and the least-squares slope of RSS over the connection steps;
- server CPU during the idle hold (heartbeat ticks and Pings).

Variants: ``bare`` (a bare aiohttp WebSocket server holding the same connections, pinging each
every keep-alive from one ticker: the baseline), ``signalr`` and ``signalr-norec`` (the
recorder's share of the memory: it keeps a negotiate, transport_start and handshake record per
connection). Target: ≥ 10,000 held under 150 KiB each. Writes ``reports/bench/connections.json``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmarks.common import (
    apply_sim_root,
    base_parser,
    call_all,
    connect_all,
    cpu_percent,
    cpu_sample,
    environment,
    load_average,
    ratio,
    split,
    start_clients,
    start_server,
    stop_all,
    with_candidates,
    write_report,
)

VARIANTS = ("bare", "signalr", "signalr-norec")
TARGET_CONNECTIONS = 10_000
TARGET_KIB_PER_CONNECTION = 150.0


def parse_args(argv: list[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=None, help="connections (default 10000)")
    parser.add_argument("--client-procs", type=int, default=None, help="client processes (default 4)")
    parser.add_argument("--steps", type=int, default=None, help="connection steps (default 5)")
    parser.add_argument("--keep-alive", type=float, default=None,
                        help="server keep-alive and client ping interval, s (default 5)")
    parser.add_argument("--hold", type=float, default=None,
                        help="idle seconds once all are connected (default 3 keep-alives)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="connection attempts in flight per client process (default 32)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    args = parser.parse_args(argv)
    quick = args.quick
    args.connections = args.connections or (200 if quick else 10_000)
    args.client_procs = args.client_procs or (1 if quick else 4)
    args.steps = args.steps or (2 if quick else 5)
    args.keep_alive = args.keep_alive or (1.0 if quick else 5.0)
    args.hold = args.hold or 3 * args.keep_alive
    args.concurrency = args.concurrency or 32
    args.variants = with_candidates([v for v in args.variants.split(",") if v], args.candidate_root)
    return args


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y against x."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def run_variant(variant: str, args: Any) -> dict[str, Any]:
    kind = variant.partition("+")[0]
    connect_budget = 120 + args.connections / 50  # s, for all steps
    life = 120 + connect_budget + args.hold
    hub_options = {"keep_alive_interval": args.keep_alive,
                   "heartbeat_interval": min(1.0, args.keep_alive / 4)}
    server = start_server(variant, max_life_s=life, candidate_root=args.candidate_root,
                          hub_options=hub_options, keep_alive=args.keep_alive)
    clients = start_clients(args.client_procs, max_life_s=life)
    steps: list[dict[str, Any]] = []
    try:
        rss_before = server.call("status")["rss"]
        failures: dict[str, int] = {}
        started = time.monotonic()
        for i, n in enumerate(split(args.connections, args.steps), 1):
            connected = connect_all(clients, server, kind, n, concurrency=args.concurrency,
                                    timeout=connect_budget / args.steps)
            call_all(clients, "read", mode="idle", ping_interval=args.keep_alive)
            failures = connected["failures"]
            status = server.call("status")
            steps.append({"step": i, "client_open": connected["open"], "server_open": status["open"],
                          "rss": status["rss"], "t": round(time.monotonic() - started, 1)})
            print(f"    step {i}: {status['open']:6d} open, rss {status['rss'] / 2**20:7.1f} MiB, "
                  f"{steps[-1]['t']} s", flush=True)
        connect_seconds = time.monotonic() - started
        hold_start = time.time()
        cpu0 = cpu_sample([server.pid])
        time.sleep(args.hold)
        server_cpu = cpu_percent([server.pid], args.hold, cpu0)
        status = server.call("status")
        pinged_since = time.time() - 1.5 * args.keep_alive
        reports = call_all(clients, "report", pinged_since=pinged_since)
    finally:
        stop_all(clients)
        server.stop(30)
    client_open = sum(r["open"] for r in reports)
    alive = sum(r["pinged_since"] for r in reports)
    held = min(status["open"], client_open, alive)
    growth = status["rss"] - rss_before
    per_conn = growth / status["open"] / 1024 if status["open"] else None
    slope_b = slope([(s["server_open"], s["rss"]) for s in steps])
    result = {
        "variant": variant,
        "requested": args.connections,
        "held": held,
        "server_open": status["open"],
        "client_open": client_open,
        "client_pinged_recently": alive,
        "pings_received_by_clients": sum(r["pings"] for r in reports),
        "closed_by_server": sum(r["closed"] for r in reports),
        "connect_failures": failures,
        "connect_seconds": round(connect_seconds, 1),
        "connects_per_s": round(args.connections / connect_seconds, 1) if connect_seconds else None,
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_after_mib": round(status["rss"] / 2**20, 1),
        "kib_per_connection": round(per_conn, 1) if per_conn is not None else None,
        "kib_per_connection_slope": round(slope_b / 1024, 1) if slope_b is not None else None,
        "hold_s": args.hold,
        "hold_started": hold_start,
        "server_cpu_percent_idle_hold": server_cpu,
        "recorder_records": status.get("records"),
        "steps": steps,
        "load_average": load_average(),
    }
    print(f"  {variant:18s} held {held:,} of {args.connections:,} "
          f"(server open {status['open']:,}, clients open {client_open:,}, pinged {alive:,}); "
          f"{result['kib_per_connection']} KiB/connection (slope {result['kib_per_connection_slope']}); "
          f"idle cpu {server_cpu:.0f}%; load {result['load_average'][0]}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_sim_root(args.sim_root)
    env = environment()
    print(f"connections: {args.connections} in {args.client_procs} client processes, keep-alive "
          f"{args.keep_alive:g} s, hold {args.hold:g} s; load {env['load_average']}", flush=True)
    runs = {v: run_variant(v, args) for v in args.variants}
    base = runs.get("bare", {}).get("kib_per_connection")
    # variant KiB / bare KiB: the simulator's memory per connection as a multiple of bare aiohttp's.
    memory_ratios = {f"{v}/bare": ratio(r["kib_per_connection"], base)
                     for v, r in runs.items() if v != "bare"}
    signalr = runs.get("signalr", {})
    met: bool | None = (signalr.get("held", 0) >= TARGET_CONNECTIONS
                        and (signalr.get("kib_per_connection") or float("inf")) < TARGET_KIB_PER_CONNECTION)
    if args.connections < TARGET_CONNECTIONS:
        met = None  # a smaller run cannot say
    report = {
        "benchmark": "connections",
        "environment": env,
        "load_average_end": load_average(),
        "config": {"connections": args.connections, "client_processes": args.client_procs,
                   "steps": args.steps, "keep_alive_s": args.keep_alive, "hold_s": args.hold,
                   "client_ping_interval_s": args.keep_alive, "concurrency_per_process": args.concurrency,
                   "quick": args.quick, "variants": args.variants,
                   "candidate_root": str(args.candidate_root) if args.candidate_root else None},
        "variants": runs,
        "memory_ratios": memory_ratios,
        "target": {"connections_at_least": TARGET_CONNECTIONS,
                   "kib_per_connection_below": TARGET_KIB_PER_CONNECTION, "met": met,
                   "note": None if args.connections >= TARGET_CONNECTIONS
                   else f"only {args.connections} requested (quick run)"},
    }
    path = write_report("connections", report, args.out)
    verdict = "not assessed" if met is None else "met" if met else "MISSED"
    print(f"memory ratios {memory_ratios}; target ≥ {TARGET_CONNECTIONS:,} held under "
          f"{TARGET_KIB_PER_CONNECTION:g} KiB: {verdict}")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
