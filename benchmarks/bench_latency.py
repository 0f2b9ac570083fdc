"""Emit → receive latency at N connections and R events/s, against a bare aiohttp server.

    .venv/bin/python -m benchmarks.bench_latency            # 1,000 connections, 1,000 events/s
    .venv/bin/python -m benchmarks.bench_latency --quick    # smoke size

Each of the N connections is alone in a group of its own (every client uses its own virtual key,
so it is the only member of ``vkey-<key>``). A timer on the server emits R events/s in total,
round-robin over the groups (``send_group``, one TaskProgress invocation each); the clients, raw
aiohttp WebSockets in separate processes, take the time of receipt and subtract the
``x-conduit-emit-time`` header (Unix ms, the same machine clock). Only events emitted inside the
window count; the warm-up before it is dropped.

Baseline (``bare``): a bare aiohttp WebSocket server whose timer sends the same bytes (a
timestamped invocation) round-robin to its connections at the same rate. Variants alternate
within each round. Target: SignalR p99 < 10 ms. Writes ``reports/bench/latency.json``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmarks.common import (
    REPORT_DIR,
    apply_sim_root,
    base_parser,
    call_all,
    connect_all,
    cpu_percent,
    cpu_sample,
    environment,
    load_average,
    percentiles,
    ratio,
    start_clients,
    start_server,
    stop_all,
    with_candidates,
    write_report,
)

VARIANTS = ("bare", "signalr")
TARGET_P99_MS = 10.0


def parse_args(argv: list[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=None, help="connections (default 1000)")
    parser.add_argument("--rate", type=float, default=None, help="events/s in total (default 1000)")
    parser.add_argument("--client-procs", type=int, default=None, help="client processes (default 2)")
    parser.add_argument("--window", type=float, default=None, help="measured seconds (default 20)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the window (default 3)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every variant (default 2)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    args = parser.parse_args(argv)
    quick = args.quick
    args.connections = args.connections or (50 if quick else 1000)
    args.rate = args.rate or (100.0 if quick else 1000.0)
    args.client_procs = args.client_procs or (1 if quick else 2)
    args.window = args.window or (2.0 if quick else 20.0)
    args.warmup = args.warmup or (0.5 if quick else 3.0)
    args.rounds = args.rounds or (1 if quick else 2)
    args.variants = with_candidates([v for v in args.variants.split(",") if v], args.candidate_root)
    return args


def bench_keys(n: int) -> list[str]:
    return [f"vk_latency{i:06d}" for i in range(n)]


def run_variant(variant: str, args: Any, round_no: int) -> tuple[dict[str, Any], list[float]]:
    kind = variant.partition("+")[0]
    keys = bench_keys(args.connections)
    life = 120 + args.connections / 20 + args.warmup + args.window
    profile = str(REPORT_DIR / f"latency-{variant}-r{round_no}.prof.txt") if args.profile else None
    server = start_server(variant, max_life_s=life, profile=profile, candidate_root=args.candidate_root,
                          keys=keys if kind != "bare" else None)
    clients = start_clients(args.client_procs, max_life_s=life)
    try:
        connected = connect_all(clients, server, kind, args.connections, keys=keys,
                                timeout=60 + args.connections / 20)
        call_all(clients, "read", mode="latency")
        status = server.call("status")
        server.call("gc_reset")
        t0 = time.time() + 0.2 + args.warmup
        t1 = t0 + args.window
        call_all(clients, "window", t0=t0, t1=t1)
        server.send("rate", rate=args.rate, duration=0.2 + args.warmup + args.window + 0.3)
        pids_server = [server.pid]
        pids_clients = [w.pid for w in clients]
        time.sleep(max(0.0, t0 - time.time()))
        cpu0 = cpu_sample(pids_server + pids_clients)
        time.sleep(max(0.0, t1 - time.time()))
        server_cpu = cpu_percent(pids_server, args.window, cpu0)
        client_cpu = cpu_percent(pids_clients, args.window, cpu0)
        emitted = server.recv(30 + args.window)
        gc_during = server.call("status")["gc"]
        time.sleep(1.0)
        reports = call_all(clients, "report", with_latencies=True)
    finally:
        stop_all(clients)
        server.stop()
    samples = [x for r in reports for x in r["latencies"]]
    expected = int(args.rate * args.window)
    result = {
        "variant": variant,
        "round": round_no,
        "connections": connected["open"],
        "connect_failures": connected["failures"],
        "groups": status.get("groups"),
        "latency_ms": percentiles(samples),
        "received_in_window": len(samples),
        "expected_in_window": expected,
        "emitted_total": emitted["emitted"],
        "worst_timer_lag_ms": emitted["worst_timer_lag_ms"],
        "server_gc_while_emitting": gc_during,
        "server_cpu_percent": server_cpu,
        "clients_cpu_percent": client_cpu,
        "load_average": load_average(),
    }
    lat = result["latency_ms"]
    print(f"  round {round_no} {variant:18s} p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, "
          f"max {lat.get('max')} ms; {len(samples)}/{expected} received; server cpu {server_cpu:.0f}%, "
          f"clients cpu {client_cpu:.0f}%; server gc max pause {max(gc_during['max_pause_ms'])} ms; "
          f"load {result['load_average'][0]}", flush=True)
    return result, samples


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_sim_root(args.sim_root)
    env = environment()
    print(f"latency: {args.connections} connections, {args.rate:g} events/s, window {args.window:g} s, "
          f"{args.rounds} round(s); load {env['load_average']}", flush=True)
    runs: list[dict[str, Any]] = []
    pooled: dict[str, list[float]] = {v: [] for v in args.variants}
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(args.variants)
        for variant in args.variants[shift:] + args.variants[:shift]:
            result, samples = run_variant(variant, args, round_no)
            runs.append(result)
            pooled[variant].extend(samples)
    by_variant = {v: {"latency_ms": percentiles(s)} for v, s in pooled.items()}
    base = by_variant.get("bare", {}).get("latency_ms", {})
    # bare / variant: 1.0 = as fast as the bare server, 0.5 = twice its latency.
    ratios = {
        f"{v}/bare": {p: ratio(base.get(p), d["latency_ms"].get(p)) for p in ("p50", "p99")}
        for v, d in by_variant.items() if v != "bare"
    }
    p99 = by_variant.get("signalr", {}).get("latency_ms", {}).get("p99")
    report = {
        "benchmark": "latency",
        "environment": env,
        "load_average_end": load_average(),
        "config": {"connections": args.connections, "events_per_s": args.rate,
                   "client_processes": args.client_procs, "window_s": args.window,
                   "warmup_s": args.warmup, "rounds": args.rounds, "protocol": "json",
                   "groups": "one per connection (vkey-<key>)", "quick": args.quick,
                   "variants": args.variants,
                   "candidate_root": str(args.candidate_root) if args.candidate_root else None},
        "variants": by_variant,
        "ratios": ratios,
        "target": {"signalr_p99_ms_below": TARGET_P99_MS, "met": p99 is not None and p99 < TARGET_P99_MS},
        "runs": runs,
    }
    path = write_report("latency", report, args.out)
    for v, d in by_variant.items():
        lat = d["latency_ms"]
        print(f"{v:18s} pooled: p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms "
              f"({lat.get('count')} samples)")
    verdict = "met" if report["target"]["met"] else "MISSED"
    print(f"ratios {ratios}; target p99 < {TARGET_P99_MS:g} ms: {verdict}")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
