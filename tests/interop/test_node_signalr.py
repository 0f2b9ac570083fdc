"""@microsoft/signalr (the official TS client) under Node against the simulator.

Every transport and protocol the client supports: WebSockets, Server-Sent Events and Long
Polling, with JSON and MessagePack (SSE carries Text only, so it has no MessagePack case).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from simulator.background import BackgroundSimulator
from tests.interop.node_client import ROOT, NodeSignalRClient
from tests.support.simulator import OTHER_KEY, TEST_KEY

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(not (ROOT / "node_modules" / "@microsoft" / "signalr").exists(),
                       reason="run `npm ci` first"),
]

IMAGE_HUB = "/hubs/image-generation"
EVENTS = ["TaskProgress", "TaskCompleted", "TaskFailed"]

COMBINATIONS = [
    ("WebSockets", "json"),
    ("WebSockets", "messagepack"),
    ("ServerSentEvents", "json"),
    ("LongPolling", "json"),
    ("LongPolling", "messagepack"),
]
IDS = [f"{t}-{p}" for t, p in COMBINATIONS]


@pytest.fixture
def node() -> Iterator[NodeSignalRClient]:
    client = NodeSignalRClient()
    yield client
    client.close()


def start(node: NodeSignalRClient, sim: BackgroundSimulator, transport: str = "WebSockets",
          protocol: str = "json", **extra: object) -> dict:
    options = {
        "url": sim.url + IMAGE_HUB, "key": TEST_KEY, "keyVia": "factory",
        "transport": transport, "protocol": protocol, "events": EVENTS,
        "serverTimeoutMs": 2000, "keepAliveMs": 500, "reconnect": False, **extra,
    }
    return node.start(**options)


@pytest.mark.parametrize(("transport", "protocol"), COMBINATIONS, ids=IDS)
def test_connect_invoke_receive_and_unknown_method(sim, node, transport, protocol):
    started = start(node, sim, transport, protocol)
    assert started["ev"] == "started", started
    hub = sim.simulator.hub(IMAGE_HUB)

    assert node.invoke("SubscribeToTask", "task_abc")["ev"] == "invoke_result"
    sim.call(hub.send_group, "image-task_abc", "TaskProgress", ["task_abc", 40])
    event = node.wait("event", target="TaskProgress")
    assert event["args"] == ["task_abc", 40]

    sim.call(hub.send_group, "image-task_abc", "TaskCompleted", ["task_abc", {"images": ["u"]}])
    assert node.wait("event", target="TaskCompleted")["args"] == ["task_abc", {"images": ["u"]}]

    unknown = node.invoke("NoSuchMethod", 1)
    assert unknown["ev"] == "invoke_error"
    assert "Unknown hub method 'NoSuchMethod'" in unknown["error"]

    handshakes = sim.simulator.recorder.records("handshake", ok=True)
    assert [(h.get("transport"), h.get("protocol")) for h in handshakes] == [(transport, protocol)]


def test_method_names_are_case_insensitive(sim, node):
    assert start(node, sim)["ev"] == "started"
    assert node.invoke("subscribetotask", "task_x")["ev"] == "invoke_result"
    assert sim.simulator.hub(IMAGE_HUB).groups.get("image-task_x")


@pytest.mark.parametrize(("transport", "protocol"), COMBINATIONS, ids=IDS)
def test_stays_connected_through_idle_longer_than_server_timeout(sim, node, transport, protocol):
    # Client server timeout 2 s, client keep-alive 0.5 s; server keep-alive 0.5 s, client timeout
    # 3 s, long-poll timeout 2 s. Idle for 4.5 s: longer than every one of them.
    assert start(node, sim, transport, protocol)["ev"] == "started"
    time.sleep(4.5)
    assert not node.seen("closed") and not node.seen("reconnecting"), node.events
    assert node.invoke("SubscribeToTask", "task_idle")["ev"] == "invoke_result"
    assert not sim.simulator.recorder.records("disconnect")


@pytest.mark.parametrize("transport", ["WebSockets", "ServerSentEvents", "LongPolling"])
def test_reconnects_after_close_with_allow_reconnect(sim, node, transport):
    assert start(node, sim, transport, reconnect=[0, 100, 200])["ev"] == "started"
    hub = sim.simulator.hub(IMAGE_HUB)
    first = hub.connections()[0].connection_id

    sim.call(lambda: [hub.close_connection(c, error="maintenance", allow_reconnect=True)
                      for c in hub.connections()])
    reconnecting = node.wait("reconnecting")
    assert "maintenance" in reconnecting["error"]
    reconnected = node.wait("reconnected")
    assert reconnected["connectionId"] and reconnected["connectionId"] != first
    assert node.invoke("SubscribeToTask", "task_after")["ev"] == "invoke_result"


@pytest.mark.parametrize("transport", ["WebSockets", "ServerSentEvents", "LongPolling"])
def test_does_not_reconnect_after_close_without_allow_reconnect(sim, node, transport):
    assert start(node, sim, transport, reconnect=[0, 100, 200])["ev"] == "started"
    hub = sim.simulator.hub(IMAGE_HUB)
    sim.call(lambda: [hub.close_connection(c, error="go away") for c in hub.connections()])
    closed = node.wait("closed")
    assert "go away" in (closed["error"] or "")
    time.sleep(1.0)
    assert not node.seen("reconnecting")
    assert len(sim.simulator.recorder.records("negotiate")) == 1


def test_wrong_key_gets_401(sim, node):
    failed = start(node, sim, key="vk_notarealkey")
    assert failed["ev"] == "start_failed"
    assert failed["statusCode"] == 401 or "401" in failed["error"]
    assert sim.simulator.recorder.records("auth_rejected", stage="negotiate")


def test_key_in_query_string(sim, node):
    assert start(node, sim, keyVia="query")["ev"] == "started"


def test_skip_negotiation_over_websockets(sim, node):
    assert start(node, sim, skipNegotiation=True)["ev"] == "started"
    assert node.invoke("SubscribeToTask", "task_skip")["ev"] == "invoke_result"
    assert sim.simulator.recorder.records("skip_negotiation")
    assert not sim.simulator.recorder.records("negotiate")


def test_server_event_to_one_key_only(sim, node):
    other = NodeSignalRClient()
    try:
        assert start(node, sim)["ev"] == "started"
        assert start(other, sim, key=OTHER_KEY)["ev"] == "started"
        hub = sim.simulator.hub(IMAGE_HUB)
        sim.call(hub.send_group, f"vkey-{OTHER_KEY}", "TaskFailed", ["task_o", "boom"])
        assert other.wait("event", target="TaskFailed")["args"] == ["task_o", "boom"]
        time.sleep(0.3)
        assert not node.seen("event")
    finally:
        other.close()
