"""A null client that only uses SignalR: whatever ``via`` says, it subscribes on the task's hub
(one connection per hub, reconnecting by ``CONDUIT_RECONNECT_DELAYS_MS`` and subscribing again
after a reconnect) and reports the hub's events; it never polls.

It may pass the SignalR rules; every rule about polling must come out INCONCLUSIVE or FAIL.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from typing import Any

from contract_tests.clients.hub_client import HubConnection, HubConnectionState
from simulator.profiles.documented import CLIENT_HUBS

BASE = os.environ["CONDUIT_BASE_URL"].rstrip("/")
KEY = os.environ["CONDUIT_VIRTUAL_KEY"]
DELAYS = [float(d) / 1000
          for d in os.environ.get("CONDUIT_RECONNECT_DELAYS_MS", "0,2000,10000,30000").split(",")]


def emit(obs: str, **fields: Any) -> None:
    print(json.dumps({"obs": obs, **fields}), flush=True)


class Hub:
    def __init__(self, kind: str) -> None:
        self.spec = CLIENT_HUBS[kind]
        self.tasks: dict[str, Any] = {}  # task id → highest progress reported
        self.connection = HubConnection(BASE + self.spec.path, access_token_factory=lambda: KEY,
                                        reconnect_policy=DELAYS)
        self.connection.on(self.spec.progress, self.on_progress)
        self.connection.on(self.spec.completed, lambda task_id, result: self.end(task_id, "completed",
                                                                                  result=result))
        self.connection.on(self.spec.failed, lambda task_id, error: self.end(task_id, "failed", error=error))
        self.connection.on_reconnected(self.resubscribe)
        self.lock = asyncio.Lock()

    async def follow(self, task_id: str) -> None:
        async with self.lock:
            if self.connection.state is HubConnectionState.DISCONNECTED:
                await self.connection.start()
        self.tasks[task_id] = None
        await self.connection.invoke(self.spec.subscribe, task_id)

    def on_progress(self, task_id: str, value: Any) -> None:
        if task_id in self.tasks and (self.tasks[task_id] is None or value > self.tasks[task_id]):
            self.tasks[task_id] = value
            emit("progress", task_id=task_id, progress=value)

    def end(self, task_id: str, obs: str, **fields: Any) -> None:
        if self.tasks.pop(task_id, "gone") != "gone":
            emit(obs, task_id=task_id, **fields)
            asyncio.ensure_future(self.connection.invoke(self.spec.unsubscribe, task_id))

    def resubscribe(self, _connection_id: Any = None) -> None:
        for task_id in list(self.tasks):
            asyncio.ensure_future(self.connection.invoke(self.spec.subscribe, task_id))


async def run() -> int:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    hubs: dict[str, Hub] = {}
    emit("ready", name="null-signalr-only", roles=["signalr", "polling"])
    keep: set[asyncio.Task[None]] = set()
    while (line := await lines.get()) is not None:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("cmd") == "shutdown":
            break
        if command.get("cmd") == "track":
            kind = command.get("kind", "image")
            hub = hubs.setdefault(kind, Hub(kind))
            task = asyncio.ensure_future(hub.follow(command["task_id"]))
            keep.add(task)
            task.add_done_callback(keep.discard)
    for hub in hubs.values():
        await hub.connection.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
