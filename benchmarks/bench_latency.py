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
within each round. Targets: SignalR p99 < 10 ms, and (issue 12, outcome 3) no pause over 20 ms
in the simulator. Writes ``reports/bench/latency.json``.

Whose pause? A long emit → receive sample may come from the server (its loop held up: a garbage
collection, a slow handler, the process descheduled) or from outside it (a client process held
up, the kernel). So every server process, whatever its kind, measures its own loop's lateness the
same way: the simulator's ticker (``simulator.loop_watch.watch_loop``: a wake-up every 10 ms, a
``loop_stall`` record when it woke :data:`STALL_THRESHOLD_S` late or more), on the simulator's
timeline, or on a small recorder of its own in a server that keeps none (``bare``,
``signalr-norec``). Every variant pays the ticker's cost alike (100 wake-ups a second).

Lateness is a lower bound of a pause: a pause that began just after the ticker went to sleep
shows up to one tick (10 ms) shorter, and one under threshold + tick may not show at all. So the
largest samples (the max, and every one over 20 ms) are matched to the server's stalls with a
margin of one tick: a sample is put down to a **server pause** when a stall's lateness interval
``[wall - late_ms, wall]``, widened by 10 ms on each side, overlaps its emit → receive span; else
to **outside the server** (no lateness of the threshold or more anywhere near it).
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
# Issue 12, outcome 3: no pause over this in the simulator.
PAUSE_LIMIT_MS = 20.0
# The least lateness of a server's loop recorded (fine, so that small pauses are counted too).
STALL_THRESHOLD_S = 0.005
SMALL_PAUSE_MS = STALL_THRESHOLD_S * 1000
# The largest samples listed with their attribution in the report, per round.
LISTED_SAMPLES = 50


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


def stalls_in_window(stalls: list[dict[str, Any]], t0: float, t1: float) -> list[dict[str, Any]]:
    """The stalls whose lateness ``[wall - late_ms, wall]`` overlaps the window ``[t0, t1]``."""
    return [s for s in stalls if s["wall"] >= t0 and s["wall"] - s["late_ms"] / 1000 <= t1]


def loop_summary(stalls: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The server loop's longest lateness (None: never 5 ms late, nothing recorded) and how many
    pauses were at least 5 / over 20 ms."""
    if stalls is None:
        return {"measured": False}
    lates = [s["late_ms"] for s in stalls]
    return {"measured": True, "longest_late_ms": max(lates, default=None),
            "pauses_ge_5ms": sum(1 for x in lates if x >= SMALL_PAUSE_MS),
            "pauses_over_20ms": sum(1 for x in lates if x > PAUSE_LIMIT_MS)}


def attribute(latency_ms: float, emitted_ms: float, stalls: list[dict[str, Any]] | None,
              margin_ms: float, t0: float) -> dict[str, Any]:
    """Where one sample's delay came from: a server pause near its emit → receive span, or not."""
    out: dict[str, Any] = {"latency_ms": round(latency_ms, 3), "emitted_unix_ms": round(emitted_ms, 3),
                           "emitted_into_window_s": round(emitted_ms / 1000 - t0, 3)}
    if stalls is None:
        return {**out, "where": "not measured", "server_late_ms": None}
    start, end = emitted_ms, emitted_ms + latency_ms
    near = [s["late_ms"] for s in stalls
            if s["wall"] * 1000 - s["late_ms"] - margin_ms <= end and s["wall"] * 1000 + margin_ms >= start]
    if near:
        return {**out, "where": "server pause", "server_late_ms": max(near)}
    # With no record near it, the server may still have paused up to threshold + tick unseen.
    unseen_ms = SMALL_PAUSE_MS + margin_ms
    where = "outside the server" if latency_ms > unseen_ms else "too small to place"
    return {**out, "where": where, "server_late_ms": None}


def describe(sample: dict[str, Any], margin_ms: float) -> str:
    where = sample["where"]
    unseen = f"the ticker can miss a server pause under {SMALL_PAUSE_MS + margin_ms:g} ms"
    quiet = f"server loop never {SMALL_PAUSE_MS:g} ms late within ±{margin_ms:g} ms of it"
    if where == "server pause":
        late = sample["server_late_ms"]
        why = (f"server loop late {late} ms within ±{margin_ms:g} ms of it → a pause in the server "
               f"(of {late:g}-{late + margin_ms:g} ms)")
    elif where == "outside the server":
        why = f"{quiet} → outside the server (client processes or kernel; {unseen})"
    elif where == "too small to place":
        why = f"{quiet}, but {unseen} → too small to place"
    else:
        why = "server loop not measured"
    return f"{sample['latency_ms']} ms at +{sample['emitted_into_window_s']} s: {why}"


def slow_samples(samples: list[tuple[float, float]], stalls: list[dict[str, Any]] | None,
                 margin_ms: float, t0: float) -> dict[str, Any]:
    """The max sample and every one over 20 ms, largest first, each with where its delay came from."""
    ranked = sorted(samples, reverse=True)
    picked = ranked[:1] + [x for x in ranked[1:] if x[0] > PAUSE_LIMIT_MS]
    attributed = [attribute(lat, emitted, stalls, margin_ms, t0) for lat, emitted in picked]
    over = [a for a in attributed if a["latency_ms"] > PAUSE_LIMIT_MS]
    return {"max": attributed[0] if attributed else None,
            "over_20ms": len(over),
            "over_20ms_server_pause": sum(1 for a in over if a["where"] == "server pause"),
            "over_20ms_outside_server": sum(1 for a in over if a["where"] == "outside the server"),
            "listed": attributed[:LISTED_SAMPLES]}


def run_variant(variant: str, args: Any, round_no: int,
                margin_ms: float) -> tuple[dict[str, Any], list[float], dict[str, Any]]:
    kind = variant.partition("+")[0]
    keys = bench_keys(args.connections)
    life = 120 + args.connections / 20 + args.warmup + args.window
    profile = str(REPORT_DIR / f"latency-{variant}-r{round_no}.prof.txt") if args.profile else None
    server = start_server(variant, max_life_s=life, profile=profile, candidate_root=args.candidate_root,
                          keys=keys if kind != "bare" else None, loop_watch=STALL_THRESHOLD_S)
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
        watched = server.call("loop_stalls", since=t0 - 1.0)
    finally:
        stop_all(clients)
        server.stop()
    samples = [x for r in reports for x in r["latencies"]]
    timed = [x for r in reports for x in zip(r["latencies"], r["emitted_ms"], strict=True)]
    all_stalls = watched["stalls"]
    stalls = None if all_stalls is None else stalls_in_window(all_stalls, t0, t1)
    loop = {**loop_summary(stalls), "threshold_ms": watched["threshold_ms"], "stalls": stalls}
    # Samples are matched against every stall fetched, so one emitted just before t1 still finds a
    # pause just after it.
    slow = slow_samples(timed, all_stalls, margin_ms, t0)
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
        "server_loop": loop,
        "slow_samples": slow,
        "server_cpu_percent": server_cpu,
        "clients_cpu_percent": client_cpu,
        "load_average": load_average(),
    }
    lat = result["latency_ms"]
    print(f"  round {round_no} {variant:18s} p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, "
          f"max {lat.get('max')} ms; {len(samples)}/{expected} received; server cpu {server_cpu:.0f}%, "
          f"clients cpu {client_cpu:.0f}%; server gc max pause {max(gc_during['max_pause_ms'])} ms; "
          f"load {result['load_average'][0]}", flush=True)
    print(f"    server loop: {loop_line(loop)}", flush=True)
    if slow["max"] is not None:
        print(f"    max sample {describe(slow['max'], margin_ms)}", flush=True)
    for sample in slow["listed"][1:6]:
        print(f"    also over {PAUSE_LIMIT_MS:g} ms: {describe(sample, margin_ms)}", flush=True)
    if len(slow["listed"]) > 6:
        print(f"    ... {slow['over_20ms']} over {PAUSE_LIMIT_MS:g} ms in all (in the report)", flush=True)
    return result, samples, slow


def loop_line(loop: dict[str, Any]) -> str:
    if not loop.get("measured"):
        return "not measured (this simulator has no loop_watch)"
    return (f"longest late {late_text(loop['longest_late_ms'])}; pauses ≥ {SMALL_PAUSE_MS:g} ms: "
            f"{loop['pauses_ge_5ms']}, > {PAUSE_LIMIT_MS:g} ms: {loop['pauses_over_20ms']}")


def late_text(late_ms: float | None) -> str:
    return f"under {SMALL_PAUSE_MS:g} ms, nothing recorded" if late_ms is None else f"{late_ms} ms"


def pool_loop(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The server loop's figures over every round of one variant."""
    gcs = [r["server_gc_while_emitting"] for r in rounds]
    gc = {"rounds": len(rounds),
          "longest_gc_pause_ms": max((max(g["max_pause_ms"]) for g in gcs), default=None),
          "gc_collections": [sum(g["collections"][i] for g in gcs) for i in range(3)]}
    if not rounds or not all(r["server_loop"].get("measured") for r in rounds):
        return {"measured": False, **gc}
    loops = [r["server_loop"] for r in rounds]
    return {"measured": True, **gc,
            "longest_late_ms": max((x["longest_late_ms"] for x in loops if x["longest_late_ms"] is not None),
                                   default=None),
            "pauses_ge_5ms": sum(x["pauses_ge_5ms"] for x in loops),
            "pauses_over_20ms": sum(x["pauses_over_20ms"] for x in loops)}


def pool_slow(slows: list[dict[str, Any]], rounds: list[int]) -> dict[str, Any]:
    """The largest sample over every round (with its round) and the counts over 20 ms."""
    maxima = [(s["max"], r) for s, r in zip(slows, rounds, strict=True) if s["max"] is not None]
    top, top_round = max(maxima, key=lambda x: x[0]["latency_ms"]) if maxima else (None, None)
    return {"max": top and {**top, "round": top_round},
            **{k: sum(s[k] for s in slows)
               for k in ("over_20ms", "over_20ms_server_pause", "over_20ms_outside_server")}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_sim_root(args.sim_root)
    env = environment()
    print(f"latency: {args.connections} connections, {args.rate:g} events/s, window {args.window:g} s, "
          f"{args.rounds} round(s); load {env['load_average']}", flush=True)
    # Imported here, after ``apply_sim_root``: the ticker's period is the attribution's margin.
    from simulator.loop_watch import TICK_S

    margin_ms = TICK_S * 1000
    runs: list[dict[str, Any]] = []
    pooled: dict[str, list[float]] = {v: [] for v in args.variants}
    slows: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(args.variants)
        for variant in args.variants[shift:] + args.variants[:shift]:
            result, samples, slow = run_variant(variant, args, round_no, margin_ms)
            runs.append(result)
            pooled[variant].extend(samples)
            slows[variant].append(slow)
    by_variant = {}
    for v, s in pooled.items():
        mine = [r for r in runs if r["variant"] == v]
        by_variant[v] = {"latency_ms": percentiles(s), "server_loop": pool_loop(mine),
                         "slow_samples": pool_slow(slows[v], [r["round"] for r in mine])}
    base = by_variant.get("bare", {}).get("latency_ms", {})
    # bare / variant: 1.0 = as fast as the bare server, 0.5 = twice its latency.
    ratios = {
        f"{v}/bare": {p: ratio(base.get(p), d["latency_ms"].get(p)) for p in ("p50", "p99")}
        for v, d in by_variant.items() if v != "bare"
    }
    p99 = by_variant.get("signalr", {}).get("latency_ms", {}).get("p99")
    pauses = {v: pause_target(d) for v, d in by_variant.items() if v.startswith("signalr")}
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
        "target": {"signalr_p99_ms_below": TARGET_P99_MS, "met": p99 is not None and p99 < TARGET_P99_MS,
                   "simulator_pauses_over_20ms": pauses},
        "method": {"loop_watch": "simulator.loop_watch.watch_loop in every server process",
                   "tick_ms": margin_ms, "stall_threshold_ms": SMALL_PAUSE_MS,
                   "attribution_margin_ms": margin_ms, "pause_limit_ms": PAUSE_LIMIT_MS},
        "runs": runs,
    }
    path = write_report("latency", report, args.out)
    for v, d in by_variant.items():
        lat = d["latency_ms"]
        print(f"{v:18s} pooled: p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms "
              f"({lat.get('count')} samples)")
        loop, slow = d["server_loop"], d["slow_samples"]
        print(f"{'':18s} server loop over {args.rounds} round(s): {loop_line(loop)}; longest GC pause "
              f"{loop['longest_gc_pause_ms']} ms (collections by generation {loop['gc_collections']})")
        if slow["max"] is not None:
            print(f"{'':18s} max sample (round {slow['max']['round']}) {describe(slow['max'], margin_ms)}")
        print(f"{'':18s} samples > {PAUSE_LIMIT_MS:g} ms: {slow['over_20ms']} "
              f"({slow['over_20ms_server_pause']} with a server pause, "
              f"{slow['over_20ms_outside_server']} outside the server)")
    verdict = "met" if report["target"]["met"] else "MISSED"
    print(f"ratios {ratios}; target p99 < {TARGET_P99_MS:g} ms: {verdict}")
    for v, t in pauses.items():
        print(f"outcome 3 ({v}): {headline(t)}")
    print(f"written to {path}")
    return 0


def pause_target(figures: dict[str, Any]) -> dict[str, Any]:
    """Outcome 3 for one simulator variant: its loop's pauses over 20 ms (the server's own
    measure), beside the largest emit → receive sample pooled (which includes the clients)."""
    loop, slow = figures["server_loop"], figures["slow_samples"]
    top = slow["max"]
    out: dict[str, Any] = {"max_emit_to_receive_ms": figures["latency_ms"].get("max"),
                           "max_sample_where": top["where"] if top else None}
    if not loop.get("measured"):
        return {**out, "pauses_over_20ms": None, "longest_late_ms": None, "met": None}
    return {**out, "pauses_over_20ms": loop["pauses_over_20ms"], "longest_late_ms": loop["longest_late_ms"],
            "met": loop["pauses_over_20ms"] == 0}


def headline(t: dict[str, Any]) -> str:
    if t["met"] is None:
        pauses = "simulator pauses over 20 ms: not measured"
    else:
        pauses = (f"simulator pauses over {PAUSE_LIMIT_MS:g} ms: {t['pauses_over_20ms']} "
                  f"(longest {late_text(t['longest_late_ms'])}): {'met' if t['met'] else 'MISSED'}")
    where = f", {t['max_sample_where']}" if t["max_sample_where"] else ""
    return f"{pauses}; max emit→receive pooled {t['max_emit_to_receive_ms']} ms{where}"


if __name__ == "__main__":
    sys.exit(main())
