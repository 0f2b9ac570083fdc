"""What the benchmark scripts share: where reports go, the run's context, and the worker processes.

Process layout (every script): the script's own process only orchestrates (and, for webhooks,
sends); the server under test runs in a spawned **server process**; the WebSocket clients run in
one or more spawned **client processes**, so clients never share the server's interpreter (on a
2-core machine the OS can give the server a core of its own). Workers talk to the orchestrator
over a ``multiprocessing`` pipe, one request → one reply.

Servers (``kind``):

- ``signalr``: the simulator (:class:`simulator.app.Simulator`) with its normal recorder;
- ``signalr-norec``: the same with a recorder that keeps nothing (the recorder's cost is the
  difference between the two);
- ``bare``: a bare aiohttp WebSocket server (``GET /ws``) that sends the same bytes: the baseline.

Any server can also measure its own event loop's lateness (``loop_watch`` in its spec,
:class:`LoopWatch`), the same way whatever its kind.

Clients are raw aiohttp WebSockets (``signalr``: negotiate, WebSocket, JSON handshake; ``bare``:
a WebSocket to ``/ws``), in one of three modes: ``count`` (count invocations received inside a
time window), ``latency`` (emit → receive latency from the ``x-conduit-emit-time`` header) and
``idle`` (hold the connection, send a Ping every ``ping_interval`` s, note the Pings received).

Every loop is bounded: each worker has a ``max_life_s`` after which it exits whatever happens,
every pipe call has a timeout, every emission loop a duration.

To benchmark another copy of the simulator (e.g. a scratch copy with a proposed fix), set
``CONDUIT_BENCH_SIM_ROOT=/tmp/scratch`` (or pass ``--sim-root``); the report names the
``simulator`` package actually imported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORT_DIR = ROOT / "reports" / "bench"
SIM_ROOT_ENV = "CONDUIT_BENCH_SIM_ROOT"
HUB = "/hubs/image-generation"
BENCH_KEY = "vk_benchmarkkey0123456789abcdef"
TASK_ID = "task_bench0123456789abcdef"
EMIT_HEADER = "x-conduit-emit-time"
HANDSHAKE = '{"protocol":"json","version":1}\x1e'
PING = '{"type":6}\x1e'
INVOCATION_MARK = '{"type":1,'


def _apply_sim_root() -> None:
    root = os.environ.get(SIM_ROOT_ENV)
    if root:
        path = str(Path(root).resolve())
        if path not in sys.path[:1]:
            sys.path.insert(0, path)


_apply_sim_root()  # before anything imports ``simulator`` (also runs in spawned workers)


# ---------------------------------------------------------------------------------------------
# Arguments, context, reports
# ---------------------------------------------------------------------------------------------
def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="small smoke size (seconds, a few dozen connections)")
    parser.add_argument("--sim-root", type=Path, default=None,
                        help=f"import `simulator` from this checkout (also ${SIM_ROOT_ENV})")
    parser.add_argument("--out", type=Path, default=None, help="report path (default reports/bench/)")
    parser.add_argument("--candidate-root", type=Path, default=None,
                        help="also run each simulator variant with `simulator` imported from this "
                             "checkout (e.g. a scratch copy with a proposed fix), as <variant>+candidate, "
                             "interleaved with the others in the same run")
    parser.add_argument("--profile", action="store_true",
                        help="run the simulator's server process under cProfile while it is "
                             "measured; top functions go to reports/bench/<name>-<variant>.prof.txt")
    return parser


def apply_sim_root(path: Path | None) -> None:
    if path is not None:
        os.environ[SIM_ROOT_ENV] = str(path.resolve())
        _apply_sim_root()


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """The run's context: when, which code, which machine, and how busy it was."""
    import aiohttp

    import simulator

    sim_root = Path(simulator.__file__).resolve().parent.parent
    dirty = _git(["status", "--porcelain", "--", "simulator"], sim_root)
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": _git(["rev-parse", "HEAD"], sim_root),
        "simulator_path": str(sim_root),
        "simulator_modified": bool(dirty) if dirty is not None else None,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_report(name: str, data: dict[str, Any], out: Path | None = None) -> Path:
    path = out or REPORT_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return round(value / baseline, 3)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def percentiles(samples: list[float], points: Iterable[float] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Exact (nearest-rank) percentiles, plus min/max/mean and the sample count."""
    # Imported here, not at the top: ``_apply_sim_root`` must run before ``conduit_core`` is imported.
    from conduit_core.percentiles import nearest_rank

    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    n = len(ordered)
    out: dict[str, float] = {"count": n}
    for p in points:
        out[f"p{p:g}"] = round(ordered[nearest_rank(n, p) - 1], 3)
    out["min"] = round(ordered[0], 3)
    out["max"] = round(ordered[-1], 3)
    out["mean"] = round(sum(ordered) / n, 3)
    return out


def rss(pid: int | None = None) -> int:
    """Resident set size in bytes (from /proc, no psutil needed in workers)."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def local_addresses(count: int) -> list[str]:
    """Distinct loopback source addresses (127.0.0.2, .3, ...) so that no client process runs
    short of ephemeral ports (about 28k per source address)."""
    return [f"127.0.0.{2 + i}" for i in range(count)]


def split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


# ---------------------------------------------------------------------------------------------
# The message both servers send: a TaskProgress invocation with the emit-time header
# ---------------------------------------------------------------------------------------------
def bare_invocation(progress: int, task_id: str = TASK_ID) -> str:
    """Exactly the text the simulator's JSON codec writes for ``send_*("TaskProgress",
    [task_id, progress])`` (same keys, same order, same separators), from plain ``json.dumps``."""
    emitted = f"{time.time() * 1000:.3f}"
    return json.dumps({"type": 1, "headers": {EMIT_HEADER: emitted}, "target": "TaskProgress",
                       "arguments": [task_id, progress]},
                      separators=(",", ":"), ensure_ascii=False) + "\x1e"


class NullRecorder:
    """Stands in for :class:`simulator.recorder.Recorder` and keeps nothing: the difference
    between a run with it and one with the real recorder is the recorder's cost."""

    def record(self, kind: str, /, **fields: Any) -> None:
        return None

    def records(self, kind: str | None = None, *, since: int = 0, **match: Any) -> list[Any]:
        return []

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


# ---------------------------------------------------------------------------------------------
# Worker plumbing
# ---------------------------------------------------------------------------------------------
async def pipe_recv(pipe: Any) -> Any:
    """Await the next object on a multiprocessing pipe without blocking the event loop."""
    loop = asyncio.get_running_loop()
    while not pipe.poll():
        ready = loop.create_future()

        def wake(ready: asyncio.Future[None] = ready) -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(pipe.fileno(), wake)
        try:
            await ready
        finally:
            loop.remove_reader(pipe.fileno())
    return pipe.recv()


class Worker:
    """A spawned process and its pipe; ``call`` sends one command and waits for the reply."""

    CTX = multiprocessing.get_context("spawn")

    def __init__(self, target: Callable[..., None], spec: dict[str, Any], name: str) -> None:
        self.spec = spec
        self.pipe, child = self.CTX.Pipe()
        self.process = self.CTX.Process(target=target, args=(spec, child), name=name, daemon=True)
        self.process.start()
        child.close()
        self.hello: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def wait_hello(self, timeout: float) -> dict[str, Any]:
        self.hello = self.recv(timeout)
        return self.hello

    def send(self, command: str, **args: Any) -> None:
        self.pipe.send((command, args))

    def recv(self, timeout: float) -> Any:
        if not self.pipe.poll(timeout):
            raise TimeoutError(f"{self.process.name}: no answer within {timeout:g} s")
        reply = self.pipe.recv()
        if isinstance(reply, dict) and reply.get("error"):
            raise RuntimeError(f"{self.process.name}: {reply['error']}")
        return reply

    def call(self, command: str, timeout: float = 60.0, **args: Any) -> Any:
        self.send(command, **args)
        return self.recv(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the worker to finish; terminate it (this process only) if it does not."""
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self.send("stop")
                self.recv(timeout)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def call_all(workers: list[Worker], command: str, timeout: float = 60.0, **args: Any) -> list[Any]:
    """Send one command to every worker, then collect every reply (they work in parallel)."""
    for w in workers:
        w.send(command, **args)
    deadline = time.monotonic() + timeout
    return [w.recv(max(0.1, deadline - time.monotonic())) for w in workers]


def stop_all(workers: Iterable[Worker]) -> None:
    workers = list(workers)
    for w in workers:
        if w.process.is_alive():
            with contextlib.suppress(Exception):
                w.send("stop")
    for w in workers:
        with contextlib.suppress(Exception):
            if w.process.is_alive():
                w.recv(15)
        w.stop(5)


async def _serve_commands(handler: Any, pipe: Any, hello: dict[str, Any]) -> None:
    """The worker's command loop: ``handler.cmd_<name>(**args)`` per command until ``stop``."""
    pipe.send(hello)
    while True:
        command, args = await pipe_recv(pipe)
        if command == "stop":
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handler.close(), 20)
            pipe.send({"stopped": True})
            return
        try:
            reply = await getattr(handler, f"cmd_{command}")(**args)
        except Exception as exc:  # report, keep serving
            reply = {"error": f"{command}: {type(exc).__name__}: {exc}"}
        pipe.send(reply)


def _run_worker(make: Callable[[dict[str, Any]], Any], spec: dict[str, Any], pipe: Any) -> None:
    if spec.get("sim_root"):  # this server imports the simulator from another checkout
        sys.path.insert(0, str(spec["sim_root"]))
    raise_fd_limit()
    if spec.get("cpu") is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {spec["cpu"]})

    async def main() -> None:
        handler = make(spec)
        hello = await handler.start()
        await _serve_commands(handler, pipe, {**hello, "pid": os.getpid()})

    try:
        asyncio.run(asyncio.wait_for(main(), spec.get("max_life_s", 600)))
    except TimeoutError:
        with contextlib.suppress(Exception):
            pipe.send({"error": "worker reached its max_life_s"})


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------
class _Profiled:
    """cProfile around the measured part of a server process, when ``spec["profile"]`` names a file."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.path = spec.get("profile")
        self._profile: Any = None

    def __enter__(self) -> _Profiled:
        if self.path:
            import cProfile

            self._profile = cProfile.Profile()
            self._profile.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._profile is None:
            return
        import io
        import pstats

        self._profile.disable()
        text = io.StringIO()
        stats = pstats.Stats(self._profile, stream=text)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(40)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).write_text(text.getvalue(), encoding="utf-8")
        self._profile.dump_stats(str(self.path).removesuffix(".txt"))
        self._profile = None


class GcWatch:
    """Times the garbage collector's pauses in this process (``gc.callbacks``)."""

    def __init__(self) -> None:
        import gc

        self._started = 0.0
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.max_ms = [0.0, 0.0, 0.0]
        self.total_ms = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000
        gen = info.get("generation", 0)
        self.count[gen] += 1
        self.max_ms[gen] = max(self.max_ms[gen], ms)
        self.total_ms += ms

    def report(self) -> dict[str, Any]:
        return {"collections": list(self.count), "max_pause_ms": [round(x, 2) for x in self.max_ms],
                "total_pause_ms": round(self.total_ms, 1)}


class LoopWatch:
    """The server loop's own lateness, measured alike in every server process (``spec["loop_watch"]``:
    the least lateness recorded, in seconds; absent: not measured).

    One method for all: the simulator's ticker (:func:`simulator.loop_watch.watch_loop`, a wake-up
    every 10 ms, a ``loop_stall`` record when the loop woke it ``threshold`` late or more). The
    simulator runs it on its own timeline; a server without a timeline that keeps records (``bare``,
    ``signalr-norec``) runs the same ticker on a small recorder of its own. So every variant pays
    the ticker's cost alike, and a pause is seen the same way in each. A simulator checkout too old
    to have the ticker is not watched (``stalls`` answers None)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import importlib.util

        self.threshold: float | None = spec.get("loop_watch")
        if self.threshold is not None and importlib.util.find_spec("simulator.loop_watch") is None:
            self.threshold = None
        self.recorder: Any = None  # where the loop_stall records go
        self._task: asyncio.Task[None] | None = None

    def start_own(self) -> None:
        """Run the ticker here, on a recorder of its own (for a server with no timeline)."""
        from simulator.loop_watch import watch_loop
        from simulator.recorder import Recorder

        self.recorder = Recorder()
        self._task = asyncio.create_task(watch_loop(self.recorder, self.threshold))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def stalls(self, since: float) -> dict[str, Any]:
        """The ``loop_stall`` records stamped at or after ``since`` (wall clock): ``wall`` = when
        the late wake-up came, ``late_ms`` = how late it was."""
        if self.threshold is None or self.recorder is None:
            return {"threshold_ms": None, "stalls": None}
        from simulator.recorder import RecordKind

        return {"threshold_ms": round(self.threshold * 1000, 3),
                "stalls": [{"wall": r.wall, "late_ms": r.get("late_ms")}
                           for r in self.recorder.records(RecordKind.LOOP_STALL) if r.wall >= since]}


class SignalRServer:
    """The simulator in this process; the hub is the image-generation hub."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.gc = GcWatch()
        self.loop_watch = LoopWatch(spec)

    async def start(self) -> dict[str, Any]:
        from simulator.app import Simulator
        from simulator.recorder import Recorder

        keys = self.spec.get("keys") or [BENCH_KEY]
        norec = self.spec["kind"] == "signalr-norec"
        recorder = NullRecorder() if norec else Recorder()
        watch: dict[str, Any] = {}
        if self.loop_watch.threshold is not None:  # the simulator's ticker, unless it keeps nothing
            watch["stall_threshold"] = None if norec else self.loop_watch.threshold
        self.sim = Simulator(keys=keys, hub_options=self.spec.get("hub_options") or None,
                             recorder=recorder, **watch)  # type: ignore[arg-type]
        url = await self.sim.start()
        if self.loop_watch.threshold is not None:
            if norec:
                self.loop_watch.start_own()
            else:
                self.loop_watch.recorder = self.sim.recorder
        self.hub = self.sim.hub(HUB)
        self.groups = [f"vkey-{k}" for k in keys]
        import simulator

        return {"url": url, "ws_path": HUB, "rss": rss(), "simulator": simulator.__file__}

    async def close(self) -> None:
        await self.loop_watch.stop()
        await self.sim.stop()

    def _open(self) -> int:
        from conduit_core.signalr import State

        return sum(1 for c in self.hub.by_id.values()
                   if c.protocol.state is State.OPEN and c.closing is None)

    async def cmd_status(self) -> dict[str, Any]:
        return {"open": self._open(), "rss": rss(), "records": len(self.sim.recorder),
                "groups": len(self.hub.groups), "gc": self.gc.report()}

    async def cmd_gc_reset(self) -> dict[str, Any]:
        self.gc.reset()
        return {"ok": True}

    async def cmd_loop_stalls(self, since: float) -> dict[str, Any]:
        return self.loop_watch.stalls(since)

    async def cmd_saturate(self, duration: float, t0: float, t1: float) -> dict[str, Any]:
        """Broadcast to every connection as fast as the loop allows (one broadcast per loop
        turn, so the writers run between broadcasts) for ``duration`` s."""
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        broadcasts = sent = sent_in_window = 0
        with _Profiled(self.spec):
            while loop.time() < end:
                n = self.hub.send_all("TaskProgress", [TASK_ID, broadcasts])
                broadcasts += 1
                sent += n
                if t0 <= time.time() < t1:
                    sent_in_window += n
                await asyncio.sleep(0)
        return {"broadcasts": broadcasts, "sent": sent, "sent_in_window": sent_in_window}

    async def cmd_rate(self, rate: float, duration: float) -> dict[str, Any]:
        """``rate`` events/s in total, each to the next group round-robin (one member each)."""
        groups = self.groups
        loop = asyncio.get_running_loop()
        interval = 1.0 / rate
        start = due = loop.time()
        end = start + duration
        emitted = delivered = 0
        worst_lag = 0.0
        with _Profiled(self.spec):
            while True:
                now = loop.time()
                if now >= end:
                    break
                worst_lag = max(worst_lag, now - due)
                while due <= now:
                    delivered += self.hub.send_group(groups[emitted % len(groups)], "TaskProgress",
                                                     [TASK_ID, emitted])
                    emitted += 1
                    due += interval
                await asyncio.sleep(max(0.0, due - loop.time()))
        return {"emitted": emitted, "enqueued": delivered, "worst_timer_lag_ms": round(worst_lag * 1000, 3)}


class BareServer:
    """The baseline: a bare aiohttp WebSocket server. It sends what it is told to, and for the
    connections benchmark a text Ping to each connection every ``keep_alive`` s from one ticker
    (as the simulator's heartbeat does)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.conns: dict[Any, float] = {}  # ws -> loop time of the last send
        self.order: list[Any] = []
        self.gc = GcWatch()
        self.loop_watch = LoopWatch(spec)

    async def start(self) -> dict[str, Any]:
        from aiohttp import web

        async def handle(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(autoping=True, heartbeat=None)
            await ws.prepare(request)
            self.conns[ws] = asyncio.get_running_loop().time()
            self.order.append(ws)
            try:
                async for _ in ws:
                    pass
            finally:
                self.conns.pop(ws, None)
            return ws

        app = web.Application()
        app.router.add_get("/ws", handle)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ticker = None
        if self.spec.get("keep_alive"):
            self._ticker = asyncio.create_task(self._keep_alive(float(self.spec["keep_alive"])))
        if self.loop_watch.threshold is not None:
            self.loop_watch.start_own()
        return {"url": f"http://127.0.0.1:{port}", "ws_path": "/ws", "rss": rss()}

    async def _keep_alive(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0 if interval >= 4 else interval / 4)
            now = loop.time()
            for ws, last in list(self.conns.items()):
                if now - last >= interval and not ws.closed:
                    self.conns[ws] = now
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_str(PING)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await self.loop_watch.stop()
        await self.runner.cleanup()

    async def cmd_status(self) -> dict[str, Any]:
        return {"open": sum(1 for ws in self.conns if not ws.closed), "rss": rss(), "gc": self.gc.report()}

    async def cmd_gc_reset(self) -> dict[str, Any]:
        self.gc.reset()
        return {"ok": True}

    async def cmd_loop_stalls(self, since: float) -> dict[str, Any]:
        return self.loop_watch.stalls(since)

    async def cmd_saturate(self, duration: float, t0: float, t1: float) -> dict[str, Any]:
        """The textbook broadcast: encode once, ``await ws.send_str`` to each connection."""
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        broadcasts = sent = sent_in_window = 0
        with _Profiled(self.spec):
            while loop.time() < end:
                data = bare_invocation(broadcasts)
                n = 0
                for ws in list(self.conns):
                    try:
                        await ws.send_str(data)
                        n += 1
                    except (ConnectionError, RuntimeError):
                        pass
                broadcasts += 1
                sent += n
                if t0 <= time.time() < t1:
                    sent_in_window += n
                await asyncio.sleep(0)
        return {"broadcasts": broadcasts, "sent": sent, "sent_in_window": sent_in_window}

    async def cmd_rate(self, rate: float, duration: float) -> dict[str, Any]:
        conns = [ws for ws in self.order if not ws.closed]
        loop = asyncio.get_running_loop()
        interval = 1.0 / rate
        start = due = loop.time()
        end = start + duration
        emitted = delivered = 0
        worst_lag = 0.0
        with _Profiled(self.spec):
            while True:
                now = loop.time()
                if now >= end:
                    break
                worst_lag = max(worst_lag, now - due)
                while due <= now:
                    ws = conns[emitted % len(conns)]
                    try:
                        await ws.send_str(bare_invocation(emitted))
                        delivered += 1
                    except (ConnectionError, RuntimeError):
                        pass
                    emitted += 1
                    due += interval
                await asyncio.sleep(max(0.0, due - loop.time()))
        return {"emitted": emitted, "enqueued": delivered, "worst_timer_lag_ms": round(worst_lag * 1000, 3)}


def _make_server(spec: dict[str, Any]) -> Any:
    return BareServer(spec) if spec["kind"] == "bare" else SignalRServer(spec)


def server_process(spec: dict[str, Any], pipe: Any) -> None:
    """Entry point of a server process (spawned)."""
    _run_worker(_make_server, spec, pipe)


def variant_spec(variant: str, candidate_root: Path | None) -> dict[str, Any]:
    """``signalr+candidate`` → kind ``signalr`` served from the candidate checkout."""
    kind, _, tag = variant.partition("+")
    spec: dict[str, Any] = {"kind": kind}
    if tag == "candidate":
        if candidate_root is None:
            raise ValueError(f"{variant} needs --candidate-root")
        spec["sim_root"] = str(candidate_root.resolve())
    return spec


def with_candidates(variants: list[str], candidate_root: Path | None) -> list[str]:
    if candidate_root is None:
        return variants
    return variants + [f"{v}+candidate" for v in variants if v.startswith("signalr")]


def start_server(variant: str, timeout: float = 60.0, candidate_root: Path | None = None,
                 **spec: Any) -> Worker:
    worker = Worker(server_process, {**variant_spec(variant, candidate_root), **spec},
                    name=f"server-{variant}")
    worker.wait_hello(timeout)
    return worker


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------
class _Stats:
    def __init__(self) -> None:
        self.total = 0
        self.in_window = 0
        self.closed = 0
        self.pings = 0
        self.latencies: list[float] = []
        self.emitted_ms: list[float] = []  # the emit time of each latency sample (Unix ms)


class ClientGroup:
    """``count`` raw aiohttp WebSocket clients of one kind in this process."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.ws: list[Any] = []
        self.last_ping: list[float] = []
        self.stats = _Stats()
        self.window = (float("inf"), float("inf"))  # wall-clock [t0, t1)
        self.failures: Counter[str] = Counter()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> dict[str, Any]:
        import aiohttp

        local = self.spec.get("local_addr")
        connector = aiohttp.TCPConnector(limit=0, local_addr=(local, 0) if local else None)
        self.session = aiohttp.ClientSession(connector=connector)
        return {"local_addr": local}

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        sem = asyncio.Semaphore(200)

        async def close_one(ws: Any) -> None:
            async with sem:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 5)

        await asyncio.wait_for(asyncio.gather(*(close_one(ws) for ws in self.ws)), 60)
        await self.session.close()

    # -- connecting -------------------------------------------------------------------------------
    async def _connect_signalr(self, base: str, key: str) -> Any:
        async with self.session.post(f"{base}{HUB}/negotiate?negotiateVersion=1",
                                     headers={"Authorization": f"Bearer {key}"}) as response:
            response.raise_for_status()
            body = await response.json()
        token = body["connectionToken"]
        ws_base = "ws" + base[len("http"):]
        ws = await self.session.ws_connect(f"{ws_base}{HUB}?id={token}&access_token={key}",
                                           autoping=True, heartbeat=None, max_msg_size=0)
        await ws.send_str(HANDSHAKE)
        msg = await asyncio.wait_for(ws.receive(), 30)
        if not (isinstance(msg.data, str) and msg.data.startswith("{}\x1e")):
            await ws.close()
            raise RuntimeError(f"handshake failed: {msg.type} {str(msg.data)[:80]}")
        return ws

    async def _connect_bare(self, base: str) -> Any:
        ws_base = "ws" + base[len("http"):]
        return await self.session.ws_connect(f"{ws_base}/ws", autoping=True, heartbeat=None,
                                             max_msg_size=0)

    async def cmd_connect(self, url: str, kind: str, count: int, keys: list[str] | None = None,
                          concurrency: int = 32, timeout: float = 120.0) -> dict[str, Any]:
        """Open ``count`` more connections; returns how many are open and what failed."""
        sem = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        first = len(self.ws)

        async def one(i: int) -> None:
            async with sem:
                try:
                    if kind == "bare":
                        ws = await self._connect_bare(url)
                    else:
                        key = keys[i % len(keys)] if keys else BENCH_KEY
                        ws = await self._connect_signalr(url, key)
                except Exception as exc:
                    self.failures[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
                    return
                self.ws.append(ws)
                self.last_ping.append(0.0)

        jobs = [asyncio.ensure_future(one(first + i)) for i in range(count)]
        done, pending = await asyncio.wait(jobs, timeout=timeout)
        for job in pending:
            job.cancel()
        if pending:
            self.failures["connect phase timed out"] += len(pending)
        return {"open": len(self.ws), "added": len(self.ws) - first,
                "seconds": round(time.monotonic() - started, 2), "failures": dict(self.failures)}

    # -- reading ----------------------------------------------------------------------------------
    async def cmd_read(self, mode: str, ping_interval: float | None = None) -> dict[str, Any]:
        """Start a reader per connection (``count``/``latency``/``idle``), and in ``idle`` mode
        one pinger for all of them."""
        reader = {"count": self._count_reader, "latency": self._latency_reader,
                  "idle": self._idle_reader}[mode]
        start = len(self.tasks)
        for i, ws in enumerate(self.ws[start:], start):
            self.tasks.append(asyncio.create_task(reader(ws, i)))
        if mode == "idle" and ping_interval and not getattr(self, "_pinger", None):
            self._pinger = asyncio.create_task(self._ping_loop(ping_interval))
        return {"readers": len(self.tasks)}

    async def cmd_window(self, t0: float, t1: float) -> dict[str, Any]:
        self.window = (t0, t1)
        return {"ok": True}

    async def _count_reader(self, ws: Any, i: int) -> None:
        from aiohttp import WSMsgType

        stats = self.stats
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                n = msg.data.count(INVOCATION_MARK)
                if n:
                    stats.total += n
                    t0, t1 = self.window
                    if t0 <= time.time() < t1:
                        stats.in_window += n
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                stats.closed += 1
                return

    async def _latency_reader(self, ws: Any, i: int) -> None:
        from aiohttp import WSMsgType

        stats = self.stats
        loads = json.loads
        while True:
            msg = await ws.receive()
            now = time.time() * 1000.0
            if msg.type is WSMsgType.TEXT:
                for record in msg.data.split("\x1e"):
                    if record.startswith(INVOCATION_MARK):
                        emitted = float(loads(record)["headers"][EMIT_HEADER])
                        stats.total += 1
                        t0, t1 = self.window
                        if t0 * 1000.0 <= emitted < t1 * 1000.0:
                            stats.latencies.append(now - emitted)
                            stats.emitted_ms.append(emitted)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                stats.closed += 1
                return

    async def _idle_reader(self, ws: Any, i: int) -> None:
        from aiohttp import WSMsgType

        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                if '{"type":6}' in msg.data:
                    self.last_ping[i] = time.time()
                    self.stats.pings += 1
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                self.stats.closed += 1
                return

    async def _ping_loop(self, interval: float) -> None:
        """Every connection sends a Ping every ``interval`` s, spread evenly over the interval."""
        slices = 20
        while True:
            conns = list(self.ws)
            step = max(1, -(-len(conns) // slices))
            for lo in range(0, max(len(conns), 1), step):
                for ws in conns[lo:lo + step]:
                    if not ws.closed:
                        with contextlib.suppress(Exception):
                            await ws.send_str(PING)
                await asyncio.sleep(interval / slices)

    async def cmd_report(self, pinged_since: float | None = None,
                         with_latencies: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "open": sum(1 for ws in self.ws if not ws.closed), "total": self.stats.total,
            "in_window": self.stats.in_window, "closed": self.stats.closed, "pings": self.stats.pings,
            "failures": dict(self.failures),
        }
        if pinged_since is not None:
            out["pinged_since"] = sum(1 for ws, t in zip(self.ws, self.last_ping, strict=True)
                                      if not ws.closed and t >= pinged_since)
        if with_latencies:
            out["latencies"] = self.stats.latencies
            out["emitted_ms"] = self.stats.emitted_ms
        return out


def client_process(spec: dict[str, Any], pipe: Any) -> None:
    """Entry point of a client process (spawned)."""
    _run_worker(ClientGroup, spec, pipe)


def start_clients(count: int, timeout: float = 60.0, max_life_s: float = 600.0,
                  cpu: int | None = None) -> list[Worker]:
    addresses = local_addresses(count)
    workers = [Worker(client_process, {"local_addr": addr, "max_life_s": max_life_s, "cpu": cpu},
                      name=f"clients-{i}") for i, addr in enumerate(addresses)]
    for w in workers:
        w.wait_hello(timeout)
    return workers


def connect_all(clients: list[Worker], server: Worker, kind: str, total: int, *,
                keys: list[str] | None = None, concurrency: int = 32,
                timeout: float = 300.0) -> dict[str, Any]:
    """Spread ``total`` connections over the client processes; ``keys`` are dealt out so that
    connection ``i`` (over all processes) uses ``keys[i]``."""
    url = server.hello["url"]
    shares = split(total, len(clients))
    offset = 0
    for w, n in zip(clients, shares, strict=True):
        share_keys = keys[offset:offset + n] if keys else None
        w.send("connect", url=url, kind="bare" if kind == "bare" else "signalr", count=n,
               keys=share_keys, concurrency=concurrency, timeout=timeout)
        offset += n
    replies = [w.recv(timeout + 30) for w in clients]
    failures: Counter[str] = Counter()
    for r in replies:
        failures.update(r["failures"])
    return {"open": sum(r["open"] for r in replies), "seconds": max(r["seconds"] for r in replies),
            "failures": dict(failures)}


def cpu_percent(pids: list[int], seconds: float, before: dict[int, float]) -> float:
    """CPU of ``pids`` (sum; 100 = one core) over ``seconds`` since the ``before`` sample."""
    used = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            used += cpu_seconds(pid) - before.get(pid, 0.0)
    return round(100.0 * used / seconds, 1) if seconds > 0 else 0.0


def cpu_sample(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = cpu_seconds(pid)
    return out
