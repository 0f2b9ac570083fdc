"""signalrcore 1.0.x (threads) against the simulator: WebSockets with JSON and MessagePack, and
Server-Sent Events and Long Polling with JSON.

signalrcore quirks these tests rely on (reference §1, §3, §4, §5):
* it always sends an invocationId, so every invocation needs a Completion; a successful one goes
  to ``on_invocation``, an error one only to the global ``on_error``;
* it negotiates without ``negotiateVersion`` and, when it picks the protocol itself (JSON here),
  sends handshake ``version`` 0;
* on WebSockets it pings only when ``with_automatic_reconnect`` is configured, so without it the
  server must never arm its client timeout;
* with a reconnect handler it reconnects (renegotiating) after any server Close message; without
  one it fires ``on_close``;
* its long-poll GETs carry no ``Authorization`` header, so the key also goes in ``access_token``;
  its binary long-poll client cannot be constructed (``LongPollingBinaryClient`` calls
  ``super(LongPollingTextClient, self)``), and SSE is Text only: no MessagePack on either;
* it matches server-to-client targets case-sensitively.
"""

from __future__ import annotations

import time
from urllib.error import HTTPError

import pytest

from tests.interop.python_clients import IMAGE_HUB, SignalRCoreSession
from tests.support.simulator import TEST_KEY

pytestmark = pytest.mark.interop

COMBINATIONS = [
    ("WebSockets", "json"),
    ("WebSockets", "messagepack"),
    ("ServerSentEvents", "json"),
    ("LongPolling", "json"),  # its handshake POST precedes its first poll: the server buffers it
]
IDS = ["WebSockets-json", "WebSockets-messagepack", "ServerSentEvents-json", "LongPolling-json"]
# Handshake version signalrcore sends: the negotiate version (0) when it builds the protocol
# itself, the class default (1) for the MessagePackHubProtocol() instance we hand it.
HANDSHAKE_VERSION = {"json": 0, "messagepack": 1}


def session(sim, transport: str = "WebSockets", protocol: str = "json", key: str = TEST_KEY,
            **kwargs) -> SignalRCoreSession:
    return SignalRCoreSession(
        sim.url + IMAGE_HUB, key=key, protocol=protocol, transport=transport,
        key_in_query=transport == "LongPolling", **kwargs,
    )


def group_members(sim, group: str) -> set[str]:
    hub = sim.simulator.hub(IMAGE_HUB)
    return sim.call(lambda: set(hub.groups.get(group, ())))


def connection_ids(sim) -> list[str]:
    hub = sim.simulator.hub(IMAGE_HUB)
    return sim.call(lambda: [c.connection_id for c in hub.connections()])


@pytest.mark.parametrize(("transport", "protocol"), COMBINATIONS, ids=IDS)
def test_connect_invoke_receive_and_unknown_method(sim, transport, protocol):
    client = session(sim, transport, protocol)
    hub = sim.simulator.hub(IMAGE_HUB)
    recorder = sim.simulator.recorder
    try:
        client.start()

        subscribed = client.invoke("SubscribeToTask", ["task_x"])
        assert subscribed.error is None and subscribed.result is None
        assert group_members(sim, "image-task_x") == set(connection_ids(sim))

        assert sim.call(hub.send_group, "image-task_x", "TaskProgress", ["task_x", 40]) == 1
        assert client.next_event("TaskProgress") == ["task_x", 40]

        unknown = client.invoke("NoSuchMethod", [1])
        assert "Unknown hub method 'NoSuchMethod'" in unknown.error
        assert client.errors == [unknown]
        assert client.invoke("UnsubscribeFromTask", ["task_x"]).error is None

        [started] = recorder.records("transport_start")
        assert started.get("transport") == transport
        handshakes = recorder.records("handshake", ok=True)
        assert [(h.get("connection_id"), h.get("protocol"), h.get("version"))
                for h in handshakes] == [
            (started.get("connection_id"), protocol, HANDSHAKE_VERSION[protocol])
        ]
        assert [r.get("error") for r in recorder.records("invocation")] == [
            None, "Unknown hub method 'NoSuchMethod'", None,
        ]
        assert client.closed == 0, client.describe()
    finally:
        client.stop()


IDLE_CASES = [
    ("WebSockets", "json", {"keep_alive_interval": 1}),
    ("WebSockets", "messagepack", {"keep_alive_interval": 1}),
    ("WebSockets", "json", None),
    ("WebSockets", "messagepack", None),
    ("ServerSentEvents", "json", None),
    ("LongPolling", "json", None),
]
IDLE_IDS = [
    "WebSockets-json-keepalive1", "WebSockets-messagepack-keepalive1",
    "WebSockets-json-no-reconnect", "WebSockets-messagepack-no-reconnect",
    "ServerSentEvents-json-no-reconnect", "LongPolling-json-no-reconnect",
]


@pytest.mark.parametrize(("transport", "protocol", "reconnect"), IDLE_CASES, ids=IDLE_IDS)
def test_stays_connected_through_idle_longer_than_server_timeouts(sim, transport, protocol,
                                                                  reconnect):
    # Server keep-alive 0.5 s, client timeout 3 s (armed only by the client's first Ping),
    # long-poll timeout 2 s, disconnect timeout 2 s. Idle for 4.5 s: longer than all of them.
    if reconnect is not None:
        reconnect = {"type": "raw", "reconnect_interval": 1, "max_attempts": 3, **reconnect}
    client = session(sim, transport, protocol, reconnect=reconnect)
    hub = sim.simulator.hub(IMAGE_HUB)
    try:
        client.start()
        time.sleep(4.5)
        assert not sim.simulator.recorder.records("disconnect")
        pinged = sim.call(lambda: [c.client_pinged for c in hub.connections()])
        if reconnect is not None:
            assert pinged == [True]  # keep_alive_interval 1 pings: the client timeout is armed
        elif transport == "WebSockets":
            assert pinged == [False]  # no pings at all, and the server must not drop it
        assert client.closed == 0 and client.reconnected == 0, client.describe()
        assert client.invoke("SubscribeToTask", ["task_idle"]).error is None
        assert not sim.simulator.recorder.records("disconnect")
        assert len(sim.simulator.recorder.records("negotiate")) == 1
    finally:
        client.stop()


def test_wrong_key_gets_401(sim):
    client = session(sim, key="vk_notarealkey")
    # signalrcore's negotiate uses urllib, whose HTTPError escapes start().
    with pytest.raises(HTTPError) as failure:
        client.connection.start()
    assert failure.value.code == 401
    rejected = sim.simulator.recorder.records("auth_rejected")
    assert [(r.get("stage"), r.get("reason")) for r in rejected] == [("negotiate", "unknown key")]
    assert not sim.simulator.recorder.records("negotiate")
    assert client.opened == 0


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_reconnects_after_close_with_allow_reconnect(sim, protocol):
    client = session(sim, protocol=protocol, reconnect={
        "type": "raw", "keep_alive_interval": 1, "reconnect_interval": 1, "max_attempts": 3,
    })
    hub = sim.simulator.hub(IMAGE_HUB)
    recorder = sim.simulator.recorder
    try:
        client.start()
        assert client.invoke("SubscribeToTask", ["task_r"]).error is None
        [first] = connection_ids(sim)

        sim.call(lambda: [hub.close_connection(c, error="maintenance", allow_reconnect=True)
                          for c in hub.connections()])
        client.until(lambda: client.reconnected >= 1, 8, "on_reconnect")

        [second] = connection_ids(sim)
        assert second != first
        handshakes = recorder.records("handshake", ok=True)
        assert [(h.get("connection_id"), h.get("protocol")) for h in handshakes] == [
            (first, protocol), (second, protocol),
        ]
        assert len(recorder.records("negotiate")) == 2
        assert client.opened == 1

        # Groups do not survive a reconnect: subscribe again, then events flow.
        assert client.invoke("SubscribeToTask", ["task_r"]).error is None
        assert group_members(sim, "image-task_r") == {second}
        assert sim.call(hub.send_group, "image-task_r", "TaskProgress", ["task_r", 75]) == 1
        assert client.next_event("TaskProgress") == ["task_r", 75]
    finally:
        client.stop()


def test_close_without_reconnect_handler_fires_on_close(sim):
    client = session(sim)
    hub = sim.simulator.hub(IMAGE_HUB)
    try:
        client.start()
        sim.call(lambda: [hub.close_connection(c, error="go away") for c in hub.connections()])
        client.until(lambda: client.closed >= 1, 5, "on_close")
        time.sleep(0.5)
        assert client.reconnected == 0
        assert len(sim.simulator.recorder.records("negotiate")) == 1
        assert not connection_ids(sim)
    finally:
        client.stop()


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_event_target_is_delivered_with_exact_case(sim, protocol):
    client = session(sim, protocol=protocol,
                     events=("TaskProgress", "taskprogress", "TaskCompleted"))
    hub = sim.simulator.hub(IMAGE_HUB)
    try:
        client.start()
        assert client.invoke("SubscribeToTask", ["task_c"]).error is None

        sim.call(hub.send_group, "image-task_c", "TaskProgress", ["task_c", 10])
        sim.call(hub.send_group, "image-task_c", "TaskCompleted",
                 ["task_c", {"images": ["https://cdn.example/a.png"], "seed": 7}])
        assert client.next_event("TaskCompleted") == [
            "task_c", {"images": ["https://cdn.example/a.png"], "seed": 7},
        ]
        # Order is preserved and signalrcore matched the exact-case handler only.
        assert [name for name, _ in client.events] == ["TaskProgress", "TaskCompleted"]
        assert client.events[0] == ("TaskProgress", ["task_c", 10])
    finally:
        client.stop()


def test_method_names_are_resolved_case_insensitively(sim):
    client = session(sim)
    try:
        client.start()
        assert client.invoke("subscribetotask", ["task_lc"]).error is None
        assert group_members(sim, "image-task_lc") == set(connection_ids(sim))
    finally:
        client.stop()
