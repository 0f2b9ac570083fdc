"""Signed webhook deliveries/s from ``WebhookDispatcher`` against a bare aiohttp POST loop.

    .venv/bin/python -m benchmarks.bench_webhooks            # 5,000 deliveries x 3 rounds
    .venv/bin/python -m benchmarks.bench_webhooks --quick    # smoke size

The receiver is a local aiohttp server in a process of its own (``POST /hook``: reads the body,
checks ``X-Conduit-Signature`` against the shared secret, answers 200 with no body). Each run's
sender is a fresh process too:

- ``dispatcher``: the simulator's :class:`WebhookDispatcher` (documented profile's body, a real
  :class:`Recorder` and :class:`FaultController` with nothing armed). N progress events spread
  over ``--tasks`` tasks are handed to it as a steady stream (the next one as soon as fewer than
  8 x concurrency deliveries are pending); the clock stops when ``drain()`` returns.
  Concurrency is its per-receiver limit (``--concurrency``, default 8 = the dispatcher's default);
- ``dispatcher-norec``: the same with a recorder that keeps nothing (the recorder's share);
- ``bare`` (baseline): ``--concurrency`` workers POST the same bodies (serialised beforehand) with
  the same headers, signing each with ``hmac.new(...).hexdigest()``, on one aiohttp session;
- ``bare-http1`` (for information): the same loop on the dispatcher's own HTTP/1.1 connection
  (:class:`Http1Connection`, one per worker), so ``dispatcher`` / ``bare-http1`` is the cost of
  the dispatcher's machinery and recording alone, without the choice of HTTP client.

deliveries/s = bodies the receiver accepted (each counted and signature-checked there) / seconds.
Variants alternate within each round; ``ratio`` = median dispatcher / median bare and
``cpu_efficiency`` = median bare / median dispatcher sender CPU per delivery; the target (issue
12) is both ≥ 1.0. Writes ``reports/bench/webhooks.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import sys
import time
from typing import Any

from benchmarks.common import (
    BENCH_KEY,
    REPORT_DIR,
    NullRecorder,
    Worker,
    _Profiled,
    _run_worker,
    apply_sim_root,
    base_parser,
    cpu_percent,
    cpu_sample,
    environment,
    load_average,
    median,
    ratio,
    write_report,
)

VARIANTS = ("bare", "dispatcher", "dispatcher-norec", "bare-http1")
TARGET = 1.0  # deliveries/s and CPU per delivery, each against bare
SECRET = "whsec_benchmarksecret0123456789abcdef"
# The dispatcher is fed while fewer than this many deliveries per concurrency slot are pending.
BACKLOG_PER_SLOT = 8


def parse_args(argv: list[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=None, help="per variant and round (default 5000)")
    parser.add_argument("--tasks", type=int, default=None, help="tasks the events belong to (default 1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every variant (default 3)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    args = parser.parse_args(argv)
    quick = args.quick
    args.deliveries = args.deliveries or (200 if quick else 5000)
    args.tasks = args.tasks or (50 if quick else 1000)
    args.rounds = args.rounds or (1 if quick else 3)
    variants = [v for v in args.variants.split(",") if v]
    if args.candidate_root is not None:
        variants += [f"{v}+candidate" for v in variants if v.startswith("dispatcher")]
    args.variants = variants
    return args


# ---------------------------------------------------------------------------------------------
# The receiver (its own process)
# ---------------------------------------------------------------------------------------------
class Receiver:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.secret = spec["secret"].encode("utf-8")
        self.count = 0
        self.bad = 0
        self.peers: set[Any] = set()

    async def start(self) -> dict[str, Any]:
        from aiohttp import web

        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            expected = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("X-Conduit-Signature", ""), expected):
                self.bad += 1
            self.count += 1
            if request.transport is not None:
                self.peers.add(request.transport.get_extra_info("peername"))
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return {"url": f"http://127.0.0.1:{port}/hook"}

    async def close(self) -> None:
        await self.runner.cleanup()

    async def cmd_reset(self) -> dict[str, Any]:
        self.count = self.bad = 0
        self.peers.clear()
        return {"ok": True}

    async def cmd_status(self) -> dict[str, Any]:
        return {"count": self.count, "bad_signatures": self.bad, "connections": len(self.peers)}


def receiver_process(spec: dict[str, Any], pipe: Any) -> None:
    _run_worker(Receiver, spec, pipe)


# ---------------------------------------------------------------------------------------------
# The senders (this process)
# ---------------------------------------------------------------------------------------------
def make_events(url: str, deliveries: int, tasks: int) -> list[tuple[Any, Any]]:
    from simulator.tasks.model import EventKind, Task, TaskEvent, TaskRequest, TaskStatus

    owners = [Task(task_id=f"task_bench{i:06d}", script="bench",
                   request=TaskRequest(kind="image", prompt="a benchmark", model="bench-model",
                                       key=BENCH_KEY, webhook_url=url))
              for i in range(tasks)]
    now = time.time()
    out = []
    for j in range(deliveries):
        task = owners[j % tasks]
        seq = j // tasks + 1
        out.append((task, TaskEvent(task_id=task.task_id, kind=EventKind.PROGRESS, seq=seq,
                                    status=TaskStatus.PROCESSING, progress=min(99, seq), wall=now,
                                    global_seq=j + 1)))
    return out


async def run_dispatcher(events: list[tuple[Any, Any]], args: Any, pids: list[int], *, keep_records: bool,
                         profile: str | None) -> dict[str, Any]:
    from simulator.channels.webhooks import WebhookDispatcher
    from simulator.faults import FaultController
    from simulator.profiles import load_profile
    from simulator.recorder import Recorder

    recorder = Recorder() if keep_records else NullRecorder()
    dispatcher = WebhookDispatcher(
        secret=SECRET, recorder=recorder, faults=FaultController(recorder=recorder),  # type: ignore[arg-type]
        body_for=load_profile("documented").webhook_body, per_receiver_limit=args.concurrency,
    )
    await dispatcher.start()
    try:
        with _Profiled({"profile": profile}):
            cpu0 = cpu_sample(pids)
            started = time.perf_counter()
            deadline = started + 120 + len(events) / 50
            backlog = BACKLOG_PER_SLOT * args.concurrency
            for task, event in events:
                # A steady stream, as task events arrive: hand over the next event once fewer than
                # ``backlog`` deliveries are pending (bounded in time like every loop here).
                while dispatcher.pending >= backlog and time.perf_counter() < deadline:
                    await asyncio.sleep(0.001)
                dispatcher(task, event)
            await dispatcher.drain(timeout=max(1.0, deadline - time.perf_counter()))
            elapsed = time.perf_counter() - started
            cpu = [cpu_percent([pid], elapsed, cpu0) for pid in pids]
    finally:
        await dispatcher.stop()
    outcomes: dict[str, int] = {}
    if keep_records:
        for rec in recorder.records("webhook_delivery"):
            outcomes[rec.get("outcome")] = outcomes.get(rec.get("outcome"), 0) + 1
    return {"seconds": elapsed, "outcomes": outcomes or None, "cpu": cpu}


async def run_bare(events: list[tuple[Any, Any]], args: Any, pids: list[int]) -> dict[str, Any]:
    import aiohttp

    from simulator.profiles import load_profile

    body_for = load_profile("documented").webhook_body
    url = events[0][0].request.webhook_url
    bodies = [json.dumps(body_for(t, e), separators=(",", ":"), ensure_ascii=False).encode()
              for t, e in events]
    key = SECRET.encode("utf-8")
    timestamp = str(int(time.time()))
    statuses: dict[int, int] = {}
    next_index = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < len(bodies):
            body = bodies[next_index]
            next_index += 1
            headers = {"Content-Type": "application/json", "User-Agent": "Conduit-LLM/1.0",
                       "X-Webhook-Timestamp": timestamp,
                       "X-Conduit-Signature": hmac.new(key, body, hashlib.sha256).hexdigest()}
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        cpu0 = cpu_sample(pids)
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(session) for _ in range(args.concurrency))),
                               timeout=120 + len(bodies) / 50)
        elapsed = time.perf_counter() - started
        cpu = [cpu_percent([pid], elapsed, cpu0) for pid in pids]
    return {"seconds": elapsed, "outcomes": {str(k): v for k, v in statuses.items()}, "cpu": cpu}


async def run_bare_http1(events: list[tuple[Any, Any]], args: Any, pids: list[int]) -> dict[str, Any]:
    from simulator.channels.webhook_http import Http1Connection
    from simulator.channels.webhooks import _endpoint
    from simulator.profiles import load_profile

    body_for = load_profile("documented").webhook_body
    url = events[0][0].request.webhook_url
    endpoint = _endpoint(url)
    bodies = [json.dumps(body_for(t, e), separators=(",", ":"), ensure_ascii=False).encode()
              for t, e in events]
    key = SECRET.encode("utf-8")
    timestamp = str(int(time.time()))
    statuses: dict[int, int] = {}
    next_index = 0
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        nonlocal next_index
        connection = await Http1Connection.open(endpoint, None)
        try:
            while next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                head = (f"POST {endpoint.target} HTTP/1.1\r\nHost: {endpoint.host_header}\r\n"
                        "Content-Type: application/json\r\nUser-Agent: Conduit-LLM/1.0\r\n"
                        f"X-Webhook-Timestamp: {timestamp}\r\n"
                        f"X-Conduit-Signature: {hmac.new(key, body, hashlib.sha256).hexdigest()}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n")
                status = await connection.request(head.encode() + body, loop.time() + 30, loop)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            connection.close()

    cpu0 = cpu_sample(pids)
    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(args.concurrency))),
                           timeout=120 + len(bodies) / 50)
    elapsed = time.perf_counter() - started
    cpu = [cpu_percent([pid], elapsed, cpu0) for pid in pids]
    return {"seconds": elapsed, "outcomes": {str(k): v for k, v in statuses.items()}, "cpu": cpu}


class Sender:
    """The sending side of one run, in a process of its own (so each variant starts afresh and
    ``+candidate`` variants can import another checkout of the simulator)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    async def start(self) -> dict[str, Any]:
        import simulator

        return {"simulator": simulator.__file__}

    async def close(self) -> None:
        return None

    async def cmd_run(self, variant: str, url: str, receiver_pid: int, deliveries: int, tasks: int,
                      concurrency: int, profile: str | None) -> dict[str, Any]:
        args = argparse.Namespace(concurrency=concurrency)
        events = make_events(url, deliveries, tasks)
        pids = [os.getpid(), receiver_pid]
        kind = variant.partition("+")[0]
        if kind == "bare":
            return await run_bare(events, args, pids)
        if kind == "bare-http1":
            return await run_bare_http1(events, args, pids)
        return await run_dispatcher(events, args, pids, keep_records=kind == "dispatcher", profile=profile)


def sender_process(spec: dict[str, Any], pipe: Any) -> None:
    _run_worker(Sender, spec, pipe)


def run_variant(variant: str, receiver: Worker, args: Any, round_no: int) -> dict[str, Any]:
    receiver.call("reset")
    profile = (str(REPORT_DIR / f"webhooks-{variant}-r{round_no}.prof.txt")
               if args.profile and not variant.startswith("bare") else None)
    spec: dict[str, Any] = {"max_life_s": 300 + args.deliveries / 20}
    if variant.endswith("+candidate"):
        spec["sim_root"] = str(args.candidate_root.resolve())
    sender = Worker(sender_process, spec, name=f"sender-{variant}")
    try:
        sender.wait_hello(60)
        outcome = sender.call("run", timeout=spec["max_life_s"], variant=variant,
                              url=receiver.hello["url"], receiver_pid=receiver.pid,
                              deliveries=args.deliveries, tasks=args.tasks,
                              concurrency=args.concurrency, profile=profile)
    finally:
        sender.stop()
    seconds = outcome["seconds"]
    sender_cpu, receiver_cpu = outcome["cpu"]
    received = receiver.call("status")
    result = {
        "variant": variant,
        "round": round_no,
        "deliveries": args.deliveries,
        "received": received["count"],
        "bad_signatures": received["bad_signatures"],
        "tcp_connections_used": received["connections"],
        "seconds": round(seconds, 3),
        "deliveries_per_s": round(received["count"] / seconds, 1),
        "outcomes": outcome["outcomes"],
        "sender_cpu_percent": sender_cpu,
        "receiver_cpu_percent": receiver_cpu,
        "sender_cpu_us_per_delivery": round(sender_cpu / 100 * seconds / received["count"] * 1e6, 1)
        if received["count"] else None,
        "load_average": load_average(),
    }
    print(f"  round {round_no} {variant:26s} {result['deliveries_per_s']:>8,.0f} deliveries/s "
          f"({received['count']}/{args.deliveries} received, {received['bad_signatures']} bad signatures, "
          f"{received['connections']} TCP connections; "
          f"sender cpu {sender_cpu:.0f}%, receiver cpu {receiver_cpu:.0f}%; "
          f"{result['sender_cpu_us_per_delivery']} us sender cpu/delivery; "
          f"load {result['load_average'][0]})", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_sim_root(args.sim_root)
    env = environment()
    print(f"webhooks: {args.deliveries} deliveries x {args.rounds} round(s), concurrency {args.concurrency}; "
          f"load {env['load_average']}", flush=True)
    life = 300 + args.rounds * len(args.variants) * (60 + args.deliveries / 50)
    receiver = Worker(receiver_process, {"secret": SECRET, "max_life_s": life}, name="receiver")
    receiver.wait_hello(60)
    runs: list[dict[str, Any]] = []
    try:
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(args.variants)
            for variant in args.variants[shift:] + args.variants[:shift]:
                runs.append(run_variant(variant, receiver, args, round_no))
    finally:
        receiver.stop()
    by_variant = {
        v: {"deliveries_per_s_median": median(r["deliveries_per_s"] for r in runs if r["variant"] == v),
            "sender_cpu_us_per_delivery_median": median(r["sender_cpu_us_per_delivery"] for r in runs
                                                        if r["variant"] == v),
            "all_received": all(r["received"] == r["deliveries"] and not r["bad_signatures"]
                                for r in runs if r["variant"] == v)}
        for v in args.variants
    }
    base = by_variant.get("bare", {}).get("deliveries_per_s_median")
    ratios = {f"{v}/bare": ratio(d["deliveries_per_s_median"], base)
              for v, d in by_variant.items() if v != "bare"}
    base_cpu = by_variant.get("bare", {}).get("sender_cpu_us_per_delivery_median")
    efficiency = {f"{v}/bare": ratio(base_cpu, d["sender_cpu_us_per_delivery_median"])
                  for v, d in by_variant.items() if v != "bare"}
    headline = ratios.get("dispatcher/bare")
    headline_cpu = efficiency.get("dispatcher/bare")
    report = {
        "benchmark": "webhooks",
        "environment": env,
        "load_average_end": load_average(),
        "config": {"deliveries": args.deliveries, "tasks": args.tasks, "concurrency": args.concurrency,
                   "rounds": args.rounds, "quick": args.quick, "variants": args.variants,
                   "candidate_root": str(args.candidate_root) if args.candidate_root else None},
        "variants": by_variant,
        "ratios": ratios,
        "cpu_efficiency_ratios": efficiency,
        "target": {"ratio_dispatcher_vs_bare_at_least": TARGET,
                   "cpu_efficiency_dispatcher_vs_bare_at_least": TARGET,
                   "met": headline is not None and headline >= TARGET
                   and headline_cpu is not None and headline_cpu >= TARGET},
        "runs": runs,
    }
    path = write_report("webhooks", report, args.out)
    print(f"cpu efficiency ratios {efficiency}")
    print(f"ratios {ratios}; target ≥ {TARGET} in both: {'met' if report['target']['met'] else 'MISSED'}")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
