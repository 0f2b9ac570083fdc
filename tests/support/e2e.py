"""For the end-to-end tests (tests/e2e): real clients, real HTTP, one simulator per test, loopback only.

Pieces:

* :data:`E2E_SCENARIO` — scripts whose first step comes ~1 s after create (so a client that
  subscribes right after the create is in place), plus fast and failing variants;
* :class:`World` — one test's world: an asyncio loop in a thread that runs aiohttp clients and
  webhook receivers, so that tests stay synchronous while the Node client blocks in ``wait``;
* :class:`Rest` — the REST API over aiohttp (sync facade);
* :class:`WebhookReceiver` — an aiohttp endpoint keeping every request's exact bytes;
* helpers that turn each channel's view of a task into comparable ``(kind, value)`` steps.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from contract_tests.waiting import wait_until
from simulator.scenarios import parse_scenario
from simulator.security import control_headers
from tests.interop.node_client import ROOT, NodeSignalRClient
from tests.support.simulator import TEST_KEY

T = TypeVar("T")

IMAGE_HUB = "/hubs/image-generation"
VIDEO_HUB = "/hubs/video-generation"
IMAGE_EVENTS = ["TaskProgress", "TaskCompleted", "TaskFailed"]
VIDEO_EVENTS = ["RequestProgress", "RequestCompleted", "RequestFailed"]
HUB_OF = {"image": IMAGE_HUB, "video": VIDEO_HUB}
EVENTS_OF = {"image": IMAGE_EVENTS, "video": VIDEO_EVENTS}
SUBSCRIBE_OF = {"image": "SubscribeToTask", "video": "SubscribeToRequest"}

SECRET = "whsec_e2e_0123456789abcdef"
FIRST_STEP = 1.0  # s: the first event of every script that a SignalR client follows
STEP = 0.3  # s between later steps

# standard: 10 → 50 → 90 → completed;  failing: 20 → failed;  cancellable: 10, then 50 and the
# end long enough later for a cancel to come first;  fast (prompt "fast"): the standard steps
# 50 ms apart, for tests that do not subscribe (webhooks, polling).
E2E_SCENARIO = parse_scenario({
    "name": "e2e",
    "description": "end-to-end tests: the first step 1 s after create",
    "scripts": {
        "standard": {"steps": [
            {"after": FIRST_STEP, "progress": 10}, {"after": STEP, "progress": 50},
            {"after": STEP, "progress": 90}, {"after": STEP, "status": "completed"}]},
        "failing": {"steps": [
            {"after": FIRST_STEP, "progress": 20},
            {"after": STEP, "status": "failed", "error": "provider exploded: out of GPUs"}]},
        "cancellable": {"steps": [
            {"after": FIRST_STEP, "progress": 10}, {"after": 1.2, "progress": 50},
            {"after": 0.3, "status": "completed"}]},
        "fast": {"steps": [
            {"after": 0.05, "progress": 10}, {"after": 0.05, "progress": 50},
            {"after": 0.05, "progress": 90}, {"after": 0.05, "status": "completed"}]},
    },
    "rules": [
        {"match": {"prompt_contains": "fail"}, "script": "failing"},
        {"match": {"prompt_contains": "cancel"}, "script": "cancellable"},
        {"match": {"prompt_contains": "fast"}, "script": "fast"},
    ],
    "default": "standard",
}, "tests/e2e")

CREATE_BODY = {
    "image": {"prompt": "a lighthouse at dusk", "model": "dall-e-3"},
    "video": {"prompt": "waves on a beach", "model": "veo-2", "duration": 4},
}
TERMINAL = {"completed", "failed", "cancelled", "timedout"}

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "@microsoft" / "signalr").exists(),
    reason="needs node and @microsoft/signalr (`npm ci`)")


def verify(body: bytes, signature: str | None, secret: str = SECRET) -> bool:
    """The receiver's check: HMAC-SHA256 over the exact received bytes, lowercase hex."""
    if signature is None:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


# -- HTTP ------------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Delivery:
    """One webhook request as the receiver got it."""

    at: float  # time.time() when its body had been read
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def signature(self) -> str | None:
        return self.headers.get("X-Conduit-Signature")

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1 that answers 200 and keeps every request."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.received: list[Delivery] = []
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.received.append(Delivery(time.time(), request.path, request.headers, body))
        return web.Response(status=200, text="ok")

    def deliveries(self, task_id: str | None = None) -> list[Delivery]:
        """Every delivery so far (for ``task_id``: those whose body names it, parseable or not)."""
        with self._lock:
            got = list(self.received)
        if task_id is None:
            return got
        return [d for d in got if task_id.encode() in d.body]

    def wait_for(self, predicate: Callable[[list[Delivery]], Any], timeout: float = 10.0,
                 what: str = "") -> list[Delivery]:
        wait_until(lambda: predicate(self.deliveries()), timeout,
                   what or f"webhook deliveries; got {[d.body[:80] for d in self.deliveries()]}")
        return self.deliveries()

    def wait_terminal(self, task_id: str, timeout: float = 10.0) -> list[Delivery]:
        """The task's deliveries once one that parses has a terminal event type."""
        def done() -> bool:
            for d in self.deliveries(task_id):
                try:
                    if d.json().get("event_type") in ("task.completed", "task.failed"):
                        return True
                except ValueError:
                    continue
            return False

        wait_until(done, timeout, f"terminal webhook for {task_id}; got "
                                  f"{[d.body[:100] for d in self.deliveries(task_id)]}")
        return self.deliveries(task_id)


class Rest:
    """The simulator's REST API (and its ``/_sim`` control API) over real aiohttp requests."""

    def __init__(self, world: World, base: str, key: str = TEST_KEY,
                 control_token: str | None = None) -> None:
        self.world = world
        self.base = base
        self.key = key
        self.control_token = control_token  # sent on /_sim/ paths

    async def arequest(self, method: str, path: str, *, key: str | None = ..., json_body: Any = ...,
                       headers: dict[str, str] | None = None) -> Reply:
        session = await self.world.session()
        all_headers = dict(headers or {})
        key = self.key if key is ... else key
        if key is not None and not path.startswith("/_sim"):
            all_headers["Authorization"] = f"Bearer {key}"
        if self.control_token is not None and path.startswith("/_sim"):
            all_headers.update(control_headers(self.control_token))
        kwargs: dict[str, Any] = {}
        if json_body is not ...:
            kwargs["json"] = json_body
        async with session.request(method, self.base + path, headers=all_headers, **kwargs) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        return self.world.run(self.arequest(method, path, **kwargs))

    def create(self, kind: str = "image", *, key: str | None = None, **fields: Any) -> str:
        body = {**CREATE_BODY[kind], **fields}
        reply = self.request("POST", f"/v1/{kind}s/generations/async", json_body=body,
                             key=key or self.key)
        assert reply.status == 202, (reply.status, reply.body)
        data = reply.json()
        return data["task_id"] if kind == "image" else data["taskId"]

    def status(self, task_id: str, key: str | None = None) -> dict[str, Any]:
        reply = self.request("GET", f"/api/tasks/{task_id}/status", key=key or self.key)
        assert reply.status == 200, (reply.status, reply.body)
        return reply.json()

    async def apoll(self, task_id: str, interval: float = 0.05,
                    timeout: float = 15.0) -> list[dict[str, Any]]:
        """Poll the guide's route until a terminal status; every 200 answer, in order."""
        seen: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            reply = await self.arequest("GET", f"/api/tasks/{task_id}/status")
            if reply.status == 200:
                seen.append(reply.json())
                if seen[-1]["status"] in TERMINAL:
                    return seen
            assert loop.time() < deadline, f"{task_id} not terminal after {timeout} s: {seen[-1:]}"
            await asyncio.sleep(interval)

    def poll(self, task_id: str, interval: float = 0.05, timeout: float = 15.0) -> list[dict[str, Any]]:
        return self.world.run(self.apoll(task_id, interval, timeout), timeout + 5)

    def poll_in_background(self, task_id: str, interval: float = 0.05,
                           timeout: float = 15.0) -> Any:
        """Start polling now; ``.result()`` of the returned future is :meth:`poll`'s answer."""
        return asyncio.run_coroutine_threadsafe(self.apoll(task_id, interval, timeout), self.world.loop)

    def fault(self, *faults: dict[str, Any]) -> list[dict[str, Any]]:
        """Arm faults through the control API (in the order given); what was applied."""
        reply = self.request("POST", "/_sim/faults", json_body={"faults": list(faults)})
        assert reply.status == 200, (reply.status, reply.body)
        return reply.json()["applied"]

    def timeline(self, **query: str) -> list[dict[str, Any]]:
        """Every matching record: the control API answers in bounded pages, followed here."""
        from urllib.parse import urlencode

        records: list[dict[str, Any]] = []
        while True:
            reply = self.request("GET", "/_sim/timeline?" + urlencode(query))
            assert reply.status == 200, (reply.status, reply.body)
            page = reply.json()
            records += page["records"]
            if not page["more"]:
                return records
            query = {**query, "since": str(page["last_seq"])}


class World:
    """One test's clients: an asyncio loop in a thread (aiohttp session, webhook receivers) and
    Node clients; :meth:`close` ends all of them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="e2e-clients", daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self.receivers: list[WebhookReceiver] = []
        self.nodes: list[NodeSignalRClient] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def rest(self, base: str, key: str = TEST_KEY, control_token: str | None = None) -> Rest:
        return Rest(self, base, key, control_token)

    def receiver(self) -> WebhookReceiver:
        receiver = self.run(WebhookReceiver(self).start())
        self.receivers.append(receiver)
        return receiver

    def node(self, base: str, kind: str = "image", **options: Any) -> NodeSignalRClient:
        """A started @microsoft/signalr client on ``kind``'s hub (JSON over WebSockets, no
        automatic reconnect unless ``reconnect=`` is given)."""
        client = NodeSignalRClient()
        self.nodes.append(client)
        settings = {
            "url": base + HUB_OF[kind], "key": TEST_KEY, "transport": "WebSockets", "protocol": "json",
            "events": EVENTS_OF[kind], "serverTimeoutMs": 5000, "keepAliveMs": 500, "reconnect": False,
            **options,
        }
        started = client.start(**settings)
        assert started["ev"] == "started", (started, client.stderr[-10:])
        return client

    def close(self) -> None:
        for client in self.nodes:
            client.close()

        async def shutdown() -> None:
            for receiver in self.receivers:
                await receiver.stop()
            if self._session is not None:
                await self._session.close()

        try:
            self.run(shutdown(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()


def world() -> Iterator[World]:
    """Body of each test module's ``world`` fixture."""
    w = World()
    try:
        yield w
    finally:
        w.close()


def wait_event(client: NodeSignalRClient, task_id: str, *targets: str,
               timeout: float = 10.0) -> dict[str, Any]:
    """The first hub event for ``task_id`` whose target is one of ``targets`` (already received
    or still to come)."""
    def find() -> dict[str, Any] | None:
        return next((e for e in client.seen("event")
                     if e["target"] in targets and e["args"][0] == task_id), None)

    return wait_until(find, timeout, f"{targets} for {task_id}; events: {client.seen('event')[-8:]}; "
                                     f"stderr: {client.stderr[-5:]}")


# -- one task, as each channel saw it ------------------------------------------------------------
Step = tuple[str, Any]  # ("progress", 50) | ("completed", result) | ("failed", error)


def signalr_steps(client: NodeSignalRClient, task_id: str) -> list[Step]:
    """The task's hub events the Node client received, in arrival order."""
    steps: list[Step] = []
    for event in client.seen("event"):
        target, args = event["target"], event["args"]
        if args[0] != task_id:
            continue
        if target.endswith("Progress"):
            steps.append(("progress", args[1]))
        elif target.endswith("Completed"):
            steps.append(("completed", args[1]))
        elif target.endswith("Failed"):
            steps.append(("failed", args[1]))
    return steps


def webhook_steps(deliveries: list[Delivery]) -> list[Step]:
    steps: list[Step] = []
    for delivery in deliveries:
        body = delivery.json()
        event_type = body["event_type"]
        if event_type == "task.progress":
            steps.append(("progress", body["result"]["progress"]))
        elif event_type == "task.completed":
            steps.append(("completed", body["result"]))
        else:
            steps.append(("failed", body["error"]))
    return steps


def record_steps(records: list[dict[str, Any]]) -> list[Step]:
    """``task_event`` records (as from ``/_sim/timeline``) as steps; cancelled and timed out are
    failures on the documented channels."""
    steps: list[Step] = []
    for record in records:
        event = record["event"]
        if event == "progress":
            steps.append(("progress", record["progress"]))
        elif event == "completed":
            steps.append(("completed", record["result"]))
        else:
            steps.append(("failed", record["error"]))
    return steps
