"""The fan-out send path's Python cost per recipient, without the socket: in-process, steady.

The full fan-out benchmark needs both cores and its figures move with the machine's load (the
same code measured 4.3-7.5 µs of server CPU per event in one run on a shared machine). Most of
that is the ``send()`` system call, which the simulator and the bare server pay alike. This
measures what differs: everything a broadcast does per recipient in Python, with a transport
whose ``write`` only counts bytes (the stand-in replaces the socket, nothing of ours):

* ``bare``: ``await ws.send_str(data)`` on aiohttp's own ``WebSocketWriter`` per connection;
* ``signalr``: ``HubLifetime.send_all`` over 1,000 handshaken connections with the WebSocket
  transport's direct sender, recording with a real :class:`~simulator.recorder.Recorder`;
* ``signalr-norec``: the same with a recorder that keeps nothing.

``record_us_per_broadcast`` is the time ``signalr`` spent inside ``Recorder.record`` per broadcast
(its one ``event`` record, naming all 1,000 recipients), timed around each call: the recorder's
share of the send path, measured rather than inferred from the difference of two variants.

Run by :mod:`benchmarks.bench_fanout` (``send_path`` in its report); alone:
``python -m benchmarks.fanout_send_path``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from benchmarks.common import TASK_ID, NullRecorder, bare_invocation, median


class _CountingTransport:
    """Stands in for the socket transport: takes every write, never pushes back."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        return None


class _TimedRecorder:
    """Passes every record on to a real recorder and adds up the time spent in it."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.seconds = 0.0
        self.calls = 0

    def record(self, kind: Any, /, **fields: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.recorder.record(kind, **fields)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


class _Request:
    def __init__(self, transport: _CountingTransport) -> None:
        self.transport = transport


class _Protocol:
    _paused = False


async def _bare(clients: int, broadcasts: int) -> float:
    from aiohttp import web
    from aiohttp._websocket.writer import WebSocketWriter

    conns = []
    for _ in range(clients):
        ws = web.WebSocketResponse()
        ws._writer = WebSocketWriter(_Protocol(), _CountingTransport())  # type: ignore[arg-type]
        conns.append(ws)
    started = time.perf_counter()
    for i in range(broadcasts):
        data = bare_invocation(i)
        for ws in list(conns):
            try:  # noqa: SIM105 - the same loop as BareServer.cmd_saturate
                await ws.send_str(data)
            except (ConnectionError, RuntimeError):
                pass
    return (time.perf_counter() - started) / broadcasts / clients * 1e6


def _signalr(clients: int, broadcasts: int, record: bool) -> tuple[float, float]:
    """µs per recipient of the whole broadcast, and µs per broadcast spent recording it."""
    from aiohttp import web

    from conduit_core.signalr import HandshakeResponse
    from simulator.hubs.connection import ServerHubConnection
    from simulator.hubs.definition import HubDefinition
    from simulator.hubs.lifetime import HubLifetime
    from simulator.hubs.options import HubOptions
    from simulator.recorder import Recorder
    from simulator.transports.websocket import _direct_sender

    options = HubOptions()
    recorder = _TimedRecorder(Recorder() if record else NullRecorder())
    hub = HubLifetime(HubDefinition(name="bench", path="/hubs/bench"), options, recorder)
    for i in range(clients):
        conn = ServerHubConnection(connection_id=f"c{i:021d}", token=f"t{i}", key="k",
                                   negotiate_version=1, options=options)
        conn.protocol.receive_data(b'{"protocol":"json","version":1}\x1e')
        conn.protocol.send(HandshakeResponse())
        ws = web.WebSocketResponse()
        conn.direct_send = _direct_sender(ws, _Request(_CountingTransport()), conn)  # type: ignore[arg-type]
        hub.add(conn)
    started = time.perf_counter()
    for i in range(broadcasts):
        hub.send_all("TaskProgress", [TASK_ID, i])
    elapsed = time.perf_counter() - started
    if record:
        recorder.recorder.close()
    return elapsed / broadcasts / clients * 1e6, recorder.seconds / broadcasts * 1e6


def measure(clients: int = 1000, broadcasts: int = 200, rounds: int = 5) -> dict[str, Any]:
    """Median µs per recipient of each variant over ``rounds`` alternated rounds (GC off while
    timing, as the collector's pauses are measured elsewhere)."""
    samples: dict[str, list[float]] = {"bare": [], "signalr": [], "signalr-norec": []}
    recording: list[float] = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            samples["bare"].append(asyncio.run(_bare(clients, broadcasts)))
            per_recipient, per_broadcast = _signalr(clients, broadcasts, record=True)
            samples["signalr"].append(per_recipient)
            recording.append(per_broadcast)
            samples["signalr-norec"].append(_signalr(clients, broadcasts, record=False)[0])
            gc.collect()
    finally:
        if enabled:
            gc.enable()
    result: dict[str, Any] = {
        "clients": clients, "broadcasts": broadcasts, "rounds": rounds,
        "us_per_recipient": {k: round(median(v) or 0.0, 3) for k, v in samples.items()},
        "samples": {k: [round(x, 3) for x in v] for k, v in samples.items()},
        "record_us_per_broadcast": round(median(recording) or 0.0, 1),
        "record_us_per_broadcast_samples": [round(x, 1) for x in recording],
    }
    per = result["us_per_recipient"]
    result["ratio_bare_over_signalr"] = round(per["bare"] / per["signalr"], 3)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
