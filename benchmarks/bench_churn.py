"""Memory and descriptors under churn, and a client that stops reading: the server stays bounded.

    .venv/bin/python -m benchmarks.bench_churn            # 20,000 cycles, 7,000 tasks
    .venv/bin/python -m benchmarks.bench_churn --quick    # smoke size

A server process runs the simulator with a short task retention (``--retention``, default 10 s)
and a recorder that keeps nothing (the recorder has its own cap; this measures everything
else). This process is the client; it runs ``--concurrency`` loops of **cycles**: negotiate,
WebSocket, JSON handshake, ``SubscribeToTask`` on a task of its own, wait for the completion,
close. Every ``cycles / tasks`` cycles a loop first creates a task over REST (the scenario
finishes it in about 0.2 s), so the run sees ``--tasks`` tasks finish and be forgotten.

Reported:

- **churn**, in two rounds of half the cycles and tasks each, each round followed by the
  retention period with no traffic: the server's RSS, open file descriptors and tasks held every
  1,000 cycles and after the retention period. The headline is the RSS growth per 1,000 cycles
  of the second round (after retention against after retention): the first round grows the heap
  to a retention window's worth of tasks (CPython keeps freed memory for reuse), a second round
  that adds nothing shows that nothing accumulates;
- **stop-reading**: one raw WebSocket that handshakes and then never reads, while the server
  emits 1 KiB events to it as fast as it can for up to ``--flood-seconds``: when it was
  disconnected, and the server's peak RSS growth against the documented bound (twice the outbox
  limit plus the socket buffers, see :class:`simulator.hubs.options.HubOptions`).

Writes ``reports/bench/churn.json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
from typing import Any

import aiohttp

from benchmarks.common import (
    BENCH_KEY,
    HANDSHAKE,
    HUB,
    NullRecorder,
    Worker,
    _run_worker,
    apply_sim_root,
    base_parser,
    environment,
    load_average,
    rss,
    write_report,
)

CYCLES = 20_000
TASKS = 7_000
RETENTION = 10.0
CONCURRENCY = 8
# The cycles and tasks are split over rounds, each followed by the retention period: the first
# round warms the allocator up to the retention window's worth of tasks, later ones must add ~0.
ROUNDS = 2
FLOOD_SECONDS = 30.0
EVENT_SIZE = 1024
# Socket buffers the kernel may hold for one stuck client on loopback (tcp_wmem's maximum).
SOCKET_SLACK = 4 * 1024 * 1024
SUBSCRIBE = '{"type":1,"invocationId":"1","target":"SubscribeToTask","arguments":["%s"]}\x1e'
FAST_SCENARIO = {
    "name": "churn",
    "description": "tasks finish 0.2 s after create",
    "scripts": {"fast": {"steps": [{"after": 0.1, "progress": 50}, {"after": 0.1, "status": "completed"}]}},
}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class ChurnServer:
    """The simulator in the server process, with commands to read its footprint and to flood."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    async def start(self) -> dict[str, Any]:
        from simulator.app import Simulator
        from simulator.scenarios import parse_scenario

        self.sim = Simulator(keys=[BENCH_KEY], recorder=NullRecorder(),  # type: ignore[arg-type]
                             scenario=parse_scenario(FAST_SCENARIO, "bench_churn"),
                             task_retention=self.spec["retention"])
        url = await self.sim.start()
        self.hub = self.sim.hub(HUB)
        return {"url": url, "rss": rss()}

    async def close(self) -> None:
        await self.sim.stop()

    async def cmd_status(self) -> dict[str, Any]:
        return {"rss": rss(), "fds": open_fds(), "tasks": len(self.sim.tasks.tasks),
                "connections": len(self.hub.by_id), "groups": len(self.hub.groups)}

    async def cmd_flood(self, task_id: str, seconds: float, size: int) -> dict[str, Any]:
        """Emit ``size``-byte events to the only connection left (the stuck client) until it is
        gone or ``seconds`` have passed."""
        if len(self.hub.by_id) != 1:
            raise RuntimeError(f"expected only the stuck client, found {len(self.hub.by_id)} connections")
        member = next(iter(self.hub.by_id))
        loop = asyncio.get_running_loop()
        started = loop.time()
        before = peak = rss()
        emitted = 0
        filler = "x" * size
        while member in self.hub.by_id and loop.time() - started < seconds:
            for _ in range(50):
                self.hub.send_connection(member, "TaskProgress", [task_id, filler])
                emitted += 1
            peak = max(peak, rss())
            await asyncio.sleep(0)
        gone = member not in self.hub.by_id
        return {"disconnected": gone, "after_s": round(loop.time() - started, 3) if gone else None,
                "emitted": emitted, "emitted_bytes": emitted * size, "rss_before": before,
                "rss_peak": peak, "outbox_limit": self.hub.options.max_outbox_bytes}


def churn_server_process(spec: dict[str, Any], pipe: Any) -> None:
    """Entry point of the server process (spawned)."""
    _run_worker(ChurnServer, spec, pipe)


async def create_task(session: aiohttp.ClientSession, url: str) -> str:
    body = {"prompt": "churn", "model": "dall-e-3"}
    async with session.post(f"{url}/v1/images/generations/async", json=body,
                            headers={"Authorization": f"Bearer {BENCH_KEY}"}) as response:
        response.raise_for_status()
        return (await response.json())["task_id"]


async def cycle(session: aiohttp.ClientSession, url: str, task_id: str) -> None:
    """Negotiate, connect, handshake, subscribe (wait for the completion), close."""
    async with session.post(f"{url}{HUB}/negotiate?negotiateVersion=1",
                            headers={"Authorization": f"Bearer {BENCH_KEY}"}) as response:
        response.raise_for_status()
        token = (await response.json())["connectionToken"]
    ws_url = "ws" + url[len("http"):] + f"{HUB}?id={token}&access_token={BENCH_KEY}"
    async with session.ws_connect(ws_url, autoping=True, heartbeat=None) as ws:
        await ws.send_str(HANDSHAKE)
        await ws.send_str(SUBSCRIBE % task_id)
        while True:
            msg = await asyncio.wait_for(ws.receive(), 30)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"connection ended early: {msg.type}")
            if '"type":3' in msg.data:  # the Completion of the subscribe
                return


async def churn(server: Worker, url: str, cycles: int, tasks: int, concurrency: int) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    done = 0
    errors = 0
    created = 0
    every = max(1, cycles // max(tasks, 1))
    sample_every = max(1, min(1000, cycles // 10))
    next_sample = sample_every

    async def loop(session: aiohttp.ClientSession, share: int) -> None:
        nonlocal done, errors, created, next_sample
        task_id = await create_task(session, url)
        created += 1
        for i in range(share):
            if i and i % every == 0 and created < tasks:
                created += 1
                task_id = await create_task(session, url)
            try:
                await cycle(session, url, task_id)
            except (aiohttp.ClientError, RuntimeError, TimeoutError):
                errors += 1
            done += 1
            if done >= next_sample:
                next_sample += sample_every
                status = server.call("status")  # blocks this loop a few ms, once per 1,000 cycles
                samples.append({"cycles": done, "tasks_created": created, **status})

    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        shares = [cycles // concurrency + (1 if i < cycles % concurrency else 0) for i in range(concurrency)]
        await asyncio.gather(*(loop(session, share) for share in shares))
    elapsed = time.monotonic() - started
    if not samples or samples[-1]["cycles"] != done:
        samples.append({"cycles": done, "tasks_created": created, **server.call("status")})
    return {"cycles": done, "errors": errors, "tasks_created": created, "seconds": round(elapsed, 1),
            "samples": samples}


def masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    header = bytes((0x81, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def stuck_client(url: str, task_id: str) -> socket.socket:
    """A WebSocket that handshakes and subscribes, then is never read again."""
    host, port = url.split("//")[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {HUB}?access_token={BENCH_KEY} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1024)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {head[:80]!r}")
    sock.sendall(masked_text(HANDSHAKE.encode()) + masked_text((SUBSCRIBE % task_id).encode()))
    return sock


async def stop_reading(server: Worker, url: str, seconds: float) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        task_id = await create_task(session, url)
    sock = stuck_client(url, task_id)
    try:
        await asyncio.sleep(1.0)  # the handshake and the subscribe have been handled
        result = server.call("flood", timeout=seconds + 60, task_id=task_id, seconds=seconds, size=EVENT_SIZE)
    finally:
        sock.close()
    growth = result["rss_peak"] - result["rss_before"]
    bound = 2 * result["outbox_limit"] + SOCKET_SLACK
    return {**result, "rss_growth": growth, "documented_bound": bound, "within_bound": growth <= bound}


def parse_args(argv: list[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=None, help=f"connect/close cycles (default {CYCLES})")
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks created (default {TASKS})")
    parser.add_argument("--retention", type=float, default=RETENTION,
                        help="the server's task retention, s (default %(default)g)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help="concurrent cycle loops (default %(default)d)")
    parser.add_argument("--flood-seconds", type=float, default=FLOOD_SECONDS,
                        help="longest the stop-reading flood runs (default %(default)g)")
    args = parser.parse_args(argv)
    args.cycles = args.cycles or (2_000 if args.quick else CYCLES)
    args.tasks = args.tasks or (700 if args.quick else TASKS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_sim_root(args.sim_root)
    load_before = load_average()
    server = Worker(churn_server_process, {"retention": args.retention, "max_life_s": 3600},
                    name="server-churn")
    rounds: list[dict[str, Any]] = []
    try:
        hello = server.wait_hello(60)
        url = hello["url"]
        baseline = server.call("status")
        for _ in range(ROUNDS):
            churned = asyncio.run(churn(server, url, args.cycles // ROUNDS, args.tasks // ROUNDS,
                                        args.concurrency))
            time.sleep(args.retention + 3)  # let every finished task pass its retention
            rounds.append({**churned, "after_retention": server.call("status"),
                           "load_average": load_average()})
        stuck = asyncio.run(stop_reading(server, url, args.flood_seconds))
        after = server.call("status")
    finally:
        server.stop()
    first, last = rounds[0]["after_retention"], rounds[-1]["after_retention"]
    later_cycles = sum(r["cycles"] for r in rounds[1:])
    growth = (last["rss"] - first["rss"]) / (later_cycles / 1000) if later_cycles else None
    report = {
        "environment": environment(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "settings": {"cycles": args.cycles, "tasks": args.tasks, "rounds": ROUNDS,
                     "retention_s": args.retention, "concurrency": args.concurrency, "quick": args.quick},
        "baseline": baseline,
        "rounds": rounds,
        # The headline: what the rounds after the first added, once the retention had passed.
        "rss_growth_per_1000_cycles_after_first_round": round(growth) if growth is not None else None,
        "stop_reading": stuck,
        "after": after,
    }
    path = write_report("churn", report, args.out)
    mib = 2**20
    summary = {
        "rounds": [{
            "cycles": r["cycles"], "errors": r["errors"], "tasks": r["tasks_created"],
            "seconds": r["seconds"],
            "rss_MiB_peak": round(max(x["rss"] for x in r["samples"]) / mib, 1),
            "rss_MiB_after_retention": round(r["after_retention"]["rss"] / mib, 1),
            "fds_max": max(x["fds"] for x in r["samples"]),
            "fds_after_retention": r["after_retention"]["fds"],
            "tasks_held_peak": max(x["tasks"] for x in r["samples"]),
            "tasks_held_after_retention": r["after_retention"]["tasks"],
        } for r in rounds],
        "rss_MiB_start": round(baseline["rss"] / mib, 1), "fds_start": baseline["fds"],
        "rss_KiB_growth_per_1000_cycles_after_first_round":
            round(growth / 1024, 1) if growth is not None else None,
        "stop_reading": {k: stuck[k] for k in ("disconnected", "after_s", "emitted_bytes", "rss_growth",
                                               "documented_bound", "within_bound")},
        "load_average": report["load_average_after"],
    }
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0 if stuck["disconnected"] and stuck["within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
