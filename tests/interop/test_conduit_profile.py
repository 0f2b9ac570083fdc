"""Real clients against ``serve --profile conduit-2025.08``: @microsoft/signalr under Node over every
transport (JSON only, as the real server), pysignalr and signalrcore.

A client subscribes with ``SubscribeToTask`` on ``/hubs/image-generation`` and receives
``ImageGenerationProgress`` / ``ImageGenerationCompleted`` as one camelCase object each; the REST
status route answers the real shape. The profile's 30/60 s timings and the SDK's client defaults
(server timeout 30 s, keep-alive 15 s, reconnect 0/2/10/30 s) are all shrunk by :data:`SCALE`;
clients get twice the shrunk server timeout, because the SDK's own default (equal to the server's
keep-alive, conduit-as-built.md §6.23) races the server's Ping and would make these tests flaky.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from contract_tests.waiting import wait_until
from simulator.background import BackgroundSimulator
from simulator.profiles import load_profile
from simulator.scenarios import parse_scenario
from tests.interop.node_client import ROOT, NodeSignalRClient
from tests.interop.python_clients import PySignalRSession, SignalRCoreSession
from tests.support.simulator import TEST_KEY

pytestmark = pytest.mark.interop
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "@microsoft" / "signalr").exists(),
    reason="node and `npm ci` are needed")

PROFILE = "conduit-2025.08"
IMAGE_HUB = "/hubs/image-generation"
IMAGE_EVENTS = ["ImageGenerationProgress", "ImageGenerationCompleted", "ImageGenerationFailed"]
SCALE = 0.05  # 30 s → 1.5 s
_SERVER = load_profile(PROFILE).hub_options
SERVER_OPTIONS = {"keep_alive_interval": _SERVER.keep_alive_interval * SCALE,
                  "client_timeout": _SERVER.client_timeout * SCALE}
# The SDK's @microsoft/signalr defaults, shrunk the same way.
CLIENT_TIMEOUT_MS = 30_000 * SCALE
CLIENT_KEEP_ALIVE_MS = 15_000 * SCALE
SDK_RECONNECT_MS = [int(ms * SCALE) for ms in (0, 2000, 10000, 30000)]

# The first step comes 1 s after create, so a client that subscribes right after is in place.
SCENARIO = parse_scenario({
    "name": "conduit-interop",
    "scripts": {
        "standard": {"steps": [{"after": 1.0, "progress": 10}, {"after": 0.3, "progress": 50},
                               {"after": 0.3, "status": "completed"}]},
        "failing": {"steps": [{"after": 1.0, "progress": 20},
                              {"after": 0.3, "status": "failed", "error": "provider exploded"}]},
        "paused": {"steps": [{"after": 1.0, "progress": 10}, {"after": 60, "status": "completed"}]},
    },
    "rules": [{"match": {"prompt_contains": "fail"}, "script": "failing"},
              {"match": {"prompt_contains": "pause"}, "script": "paused"}],
    "default": "standard",
}, "tests/interop/test_conduit_profile.py")


@pytest.fixture
def built(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(profile=PROFILE, scenario=SCENARIO, seed=5, hub_options=SERVER_OPTIONS)


@pytest.fixture
def node() -> Iterator[NodeSignalRClient]:
    client = NodeSignalRClient()
    yield client
    client.close()


def rest(sim: BackgroundSimulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(sim.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


def create_image(sim: BackgroundSimulator, prompt: str = "a lighthouse", n: int = 2) -> str:
    status, body = rest(sim, "POST", "/v1/images/generations/async",
                        {"prompt": prompt, "model": "dall-e-3", "n": n})
    assert status == 202 and body["status"] == "queued"
    return body["task_id"]


def start_node(node: NodeSignalRClient, sim: BackgroundSimulator, transport: str = "WebSockets",
               path: str = IMAGE_HUB, **extra: Any) -> dict[str, Any]:
    options = {"url": sim.url + path, "key": TEST_KEY, "keyVia": "factory", "transport": transport,
               "protocol": "json", "events": IMAGE_EVENTS, "serverTimeoutMs": CLIENT_TIMEOUT_MS * 2,
               "keepAliveMs": CLIENT_KEEP_ALIVE_MS, "reconnect": False, **extra}
    return node.start(**options)


def check_progress(payload: dict[str, Any], task_id: str) -> None:
    assert list(payload) == ["taskId", "progressPercentage", "status", "imagesCompleted", "totalImages",
                             "message", "timestamp"]
    assert payload["taskId"] == task_id and payload["totalImages"] == 2


def check_completed(payload: dict[str, Any], task_id: str) -> None:
    assert list(payload) == ["taskId", "imageUrls", "durationSeconds", "cost", "completedAt"]
    assert payload["taskId"] == task_id and len(payload["imageUrls"]) == 2
    assert all(url.startswith("https://cdn.example.test/images/") for url in payload["imageUrls"])


# -- @microsoft/signalr under Node ----------------------------------------------------------------
@needs_node
@pytest.mark.parametrize("transport", ["WebSockets", "ServerSentEvents", "LongPolling"])
def test_node_follows_an_image_task_with_object_events(built, node, transport) -> None:
    assert start_node(node, built, transport)["ev"] == "started"
    task_id = create_image(built)
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"

    started = node.wait("event", target="ImageGenerationProgress")["args"]
    stored = node.wait("event", target="ImageGenerationProgress")["args"]
    completed = node.wait("event", target="ImageGenerationCompleted")["args"]
    for args in (started, stored, completed):
        assert len(args) == 1  # one object, never positional
    check_progress(started[0], task_id)
    assert (started[0]["status"], started[0]["imagesCompleted"]) == ("processing", 0)
    assert started[0]["message"] is None
    check_progress(stored[0], task_id)
    assert (stored[0]["status"], stored[0]["imagesCompleted"], stored[0]["progressPercentage"]) == (
        "storing", 1, 50)
    assert stored[0]["message"] == "Processed 1 of 2 images"
    check_completed(completed[0], task_id)

    status, body = rest(built, "GET", f"/v1/images/generations/{task_id}/status")
    assert status == 200
    assert list(body) == ["task_id", "status", "progress", "created_at", "updated_at", "result", "error"]
    assert body["status"] == "completed" and body["progress"] == 100
    assert [image["Url"] for image in body["result"]["images"]] == completed[0]["imageUrls"]
    assert built.records("handshake", ok=True)[0].get("transport") == transport


@needs_node
def test_node_failure_and_ownership_errors(built, node) -> None:
    assert start_node(node, built)["ev"] == "started"
    task_id = create_image(built, prompt="this will fail")
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"
    [failed] = node.wait("event", target="ImageGenerationFailed")["args"]
    assert failed == {"taskId": task_id, "error": "provider exploded", "isRetryable": False,
                      "failedAt": failed["failedAt"]}
    refused = node.invoke("SubscribeToTask", "task_not_mine")
    assert refused["ev"] == "invoke_error"
    assert "HubException: Unauthorized access to task" in refused["error"]


@needs_node
def test_node_task_hub_negotiates_and_navigation_hub_is_absent(built, node) -> None:
    assert start_node(node, built, path="/hubs/tasks")["ev"] == "started"
    assert node.invoke("SubscribeToTask", "task_unknown")["ev"] == "invoke_error"
    task_id = create_image(built)
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"
    assert node.invoke("SubscribeToTaskType", "image_generation")["ev"] == "invoke_result"
    other = NodeSignalRClient()
    try:
        failed = start_node(other, built, path="/hubs/navigation-state")
        assert failed["ev"] == "start_failed" and (failed["statusCode"] == 404 or "404" in failed["error"])
    finally:
        other.close()


@needs_node
def test_node_messagepack_is_refused_as_by_the_real_server(built, node) -> None:
    failed = node.start(url=built.url + IMAGE_HUB, key=TEST_KEY, keyVia="factory",
                        transport="WebSockets", protocol="messagepack", events=IMAGE_EVENTS,
                        reconnect=False)
    assert failed["ev"] == "start_failed"
    assert "messagepack" in failed["error"].lower()


@needs_node
@pytest.mark.parametrize("transport", ["WebSockets", "ServerSentEvents", "LongPolling"])
def test_node_reconnects_with_shortened_timings_and_must_resubscribe(built, node, transport) -> None:
    """The SDK's reconnect schedule and timeouts, shrunk on both sides. After a reconnect the
    connection id and its groups are new: nothing arrives until the client subscribes again
    (the SDK does not, conduit-as-built.md §4.1)."""
    assert start_node(node, built, transport, reconnect=SDK_RECONNECT_MS)["ev"] == "started"
    task_id = create_image(built, prompt="pause after the first step")
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"
    node.wait("event", target="ImageGenerationProgress")
    hub = built.simulator.hub(IMAGE_HUB)
    first = hub.connections()[0].connection_id

    built.inject("drop_connections", mode="close_reconnect")
    assert node.wait("reconnecting")
    reconnected = node.wait("reconnected")
    assert reconnected["connectionId"] != first
    assert built.call(lambda: hub.groups.get(f"image-{task_id}", set())) == set()

    built.call(built.simulator.tasks.cancel, task_id)  # an event for the task: nobody hears it
    time.sleep(0.3)
    assert [e for e in node.seen("event") if e["args"][0]["status"] == "cancelled"] == []
    assert built.records("event", target="ImageGenerationProgress")[-1].get("recipients") == 0


@needs_node
def test_node_detects_silent_server_with_shortened_timeouts(built, node) -> None:
    assert start_node(node, built, reconnect=SDK_RECONNECT_MS)["ev"] == "started"
    built.inject("stop_pings", duration=CLIENT_TIMEOUT_MS * 2 / 1000 + 1)
    reconnecting = node.wait("reconnecting", timeout=CLIENT_TIMEOUT_MS * 2 / 1000 + 5)
    assert "timeout" in reconnecting["error"].lower()
    assert node.wait("reconnected", timeout=10)


@needs_node
def test_node_stays_connected_idle_beyond_the_servers_client_timeout(built, node) -> None:
    assert start_node(node, built)["ev"] == "started"
    time.sleep(SERVER_OPTIONS["client_timeout"] + 1.0)
    assert not node.seen("reconnecting") and not node.seen("closed"), node.events
    assert not built.records("disconnect")


# -- Python clients -------------------------------------------------------------------------------
async def test_pysignalr_follows_an_image_task(built) -> None:
    client = PySignalRSession(built.url + IMAGE_HUB, key=TEST_KEY, events=tuple(IMAGE_EVENTS),
                              signalr_ping_interval=SERVER_OPTIONS["keep_alive_interval"] / 2)
    try:
        await client.start()
        task_id = await asyncio.to_thread(create_image, built)
        assert (await client.invoke("SubscribeToTask", [task_id])).error is None
        [completed] = await client.next_event("ImageGenerationCompleted", timeout=10)
        check_completed(completed, task_id)
        progress = [args[0] for name, args in client.events if name == "ImageGenerationProgress"]
        assert [p["status"] for p in progress] == ["processing", "storing"]
        for payload in progress:
            check_progress(payload, task_id)
    finally:
        await client.stop()


@pytest.mark.parametrize("transport", ["WebSockets", "ServerSentEvents", "LongPolling"])
def test_signalrcore_follows_an_image_task(built, transport) -> None:
    client = SignalRCoreSession(built.url + IMAGE_HUB, key=TEST_KEY, transport=transport,
                                events=tuple(IMAGE_EVENTS), key_in_query=transport == "LongPolling")
    try:
        client.start()
        task_id = create_image(built)
        assert client.invoke("SubscribeToTask", [task_id]).error is None
        [completed] = client.next_event("ImageGenerationCompleted", timeout=10)
        check_completed(completed, task_id)
        wait_until(lambda: len([e for e in client.events if e[0] == "ImageGenerationProgress"]) == 2)
        refused = client.invoke("SubscribeToTask", ["task_not_mine"])
        assert "Unauthorized access to task" in refused.error
    finally:
        client.stop()
