"""For the webhook dispatcher tests (tests/webhooks): real HTTP to aiohttp receivers on 127.0.0.1.

Pieces: :class:`Receiver` (a scripted webhook endpoint that keeps every request it got) and
:class:`Harness` (one recorder, one fault controller, tasks, events, dispatchers, and cleanup).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

from contract_tests.waiting import async_wait_until
from simulator.channels.webhooks import WebhookDispatcher
from simulator.faults import FaultController
from simulator.recorder import Recorder
from simulator.tasks.model import EventKind, Task, TaskEvent, TaskRequest, TaskStatus, utc_iso

SECRET = "whsec_test_secret"
KEY = "vk_webhooktests0001"
SCALE = 0.01  # retries 2/4/8 s become 20/40/80 ms
TOLERANCE = 0.005  # how much earlier than its delay an interval may look (timer granularity)

_STATUS_OF = {
    EventKind.PROGRESS: TaskStatus.PROCESSING, EventKind.COMPLETED: TaskStatus.COMPLETED,
    EventKind.FAILED: TaskStatus.FAILED, EventKind.CANCELLED: TaskStatus.CANCELLED,
    EventKind.TIMEDOUT: TaskStatus.TIMEDOUT,
}


def body_of(task: Task, event: TaskEvent) -> dict[str, Any]:
    """The documented payload, plus ``seq`` so a receiver can tell events apart."""
    if event.kind is EventKind.PROGRESS:
        result: Any = {"progress": event.progress}
    else:
        result = event.result
    return {
        "event_type": f"task.{event.kind.value}", "task_id": task.task_id, "status": event.status.value,
        "result": result, "error": event.error, "timestamp": utc_iso(event.wall), "seq": event.seq,
    }


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    index: int
    at: float  # time.monotonic() when the body had been read
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def signature(self) -> str | None:
        return self.headers.get("X-Conduit-Signature")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def seq(self) -> int:
        return self.json()["seq"]

    @property
    def task_id(self) -> str:
        return self.json()["task_id"]


class Receiver:
    """A webhook endpoint on 127.0.0.1 answering from a script.

    ``statuses`` is a list by arrival order, or a mapping path → list by arrival order on that
    path; after the script, ``default``. ``delay`` (seconds, or a function of the arrival index)
    is slept before answering.
    """

    def __init__(self, statuses: Sequence[int] | Mapping[str, Sequence[int]] = (), *, default: int = 200,
                 delay: float | Callable[[int], float] = 0.0) -> None:
        self.statuses = statuses
        self.default = default
        self.delay = delay
        self.received: list[Received] = []
        self.started = 0
        self.completed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._per_path: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a request the dispatcher gave up on stops sleeping here too.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _status(self, index: int, path: str) -> int:
        if isinstance(self.statuses, Mapping):
            script = self.statuses.get(path, ())
            n = self._per_path.get(path, 0)
            self._per_path[path] = n + 1
        else:
            script, n = self.statuses, index
        return script[n] if n < len(script) else self.default

    async def _handle(self, request: web.Request) -> web.Response:
        index = self.started
        self.started += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            self.received.append(Received(index, time.monotonic(), request.path, request.headers, body))
            status = self._status(index, request.path)
            delay = self.delay(index) if callable(self.delay) else self.delay
            if delay:
                await asyncio.sleep(delay)
            self.completed += 1
            # A redirect points elsewhere on this receiver, so following it would show up here.
            headers = {"Location": "/redirected"} if 300 <= status < 400 else None
            return web.Response(status=status, text="ok", headers=headers)
        finally:
            self.in_flight -= 1


class Harness:
    """One test's world: recorder, fault controller, receivers, dispatchers, tasks and events."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        # events_published stays 0, so an Nth-event fault hits the event with global_seq N.
        self.faults = FaultController(recorder=self.recorder, time_scale=SCALE)
        self.receivers: list[Receiver] = []
        self.dispatchers: list[WebhookDispatcher] = []
        self._global_seq = 0
        self._task_ids = 0

    async def receiver(self, *args: Any, **kwargs: Any) -> Receiver:
        receiver = await Receiver(*args, **kwargs).start()
        self.receivers.append(receiver)
        return receiver

    async def dispatcher(self, **kwargs: Any) -> WebhookDispatcher:
        kwargs.setdefault("secret", SECRET)
        kwargs.setdefault("recorder", self.recorder)
        kwargs.setdefault("faults", self.faults)
        kwargs.setdefault("body_for", body_of)
        kwargs.setdefault("time_scale", SCALE)
        dispatcher = WebhookDispatcher(**kwargs)
        await dispatcher.start()
        self.dispatchers.append(dispatcher)
        return dispatcher

    def task(self, url: str | None, *, webhook_headers: dict[str, str] | None = None, key: str = KEY) -> Task:
        self._task_ids += 1
        request = TaskRequest(kind="image", prompt="a lighthouse", model="dall-e-3", key=key,
                              webhook_url=url, webhook_headers=dict(webhook_headers or {}))
        return Task(task_id=f"task_{self._task_ids:032x}", request=request, script="test")

    def event(self, task: Task, kind: EventKind = EventKind.PROGRESS, progress: int | None = None,
              result: Any = None, error: str | None = None) -> TaskEvent:
        """The next event of ``task``, applied to its state as the engine would."""
        self._global_seq += 1
        task.status = _STATUS_OF[kind]
        if progress is not None:
            task.progress = progress
        if kind is EventKind.COMPLETED:
            task.progress = 100
            task.result = result if result is not None else {"images": [{"url": "http://127.0.0.1/i.png"}]}
        event = TaskEvent(
            task_id=task.task_id, kind=kind, seq=len(task.events) + 1, status=task.status,
            progress=task.progress, wall=time.time(),
            result=task.result if kind is EventKind.COMPLETED else None,
            error=None if kind in (EventKind.PROGRESS, EventKind.COMPLETED) else error or f"task {kind}",
            global_seq=self._global_seq,
        )
        task.events.append(event)
        return event

    def publish(self, dispatcher: WebhookDispatcher, task: Task, kind: EventKind = EventKind.PROGRESS,
                progress: int | None = None, **kwargs: Any) -> TaskEvent:
        event = self.event(task, kind, progress, **kwargs)
        dispatcher(task, event)
        return event

    def arm(self, kind: str, **params: Any) -> dict[str, Any]:
        return self.faults.apply(SimpleNamespace(kind=kind, at=None, params=params), "test")

    def kinds(self, kind: str, **match: Any) -> list[Any]:
        return self.recorder.records(kind, **match)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        # Fine-grained: the retry delays here are tens of milliseconds (SCALE).
        return await async_wait_until(predicate, timeout, interval=0.005)

    async def close(self) -> None:
        for dispatcher in self.dispatchers:
            await dispatcher.stop()
        for receiver in self.receivers:
            await receiver.stop()
