"""pysignalr 1.3.x (asyncio, WebSockets only) against the simulator, JSON and MessagePack.

pysignalr quirks these tests rely on (reference §1, §4, §5):
* the key must go in ``headers``: ``access_token_factory`` is only read at the handshake, so the
  first negotiate carries no token;
* an ``on_error`` callback is required, or an error Completion raises inside the client;
* it pings on its own clock (``signalr_ping_interval``, 15 s by default), shrunk here below the
  server's 3 s client timeout;
* a bare WebSocket close makes it reconnect to the same URL (old id, HTTP 404) and renegotiate;
  a Close message with an error makes ``run()`` raise ``ServerError``;
* it matches server-to-client targets case-sensitively.
"""

from __future__ import annotations

import asyncio

import pytest
from pysignalr.exceptions import AuthorizationError, ServerError

from simulator.hubs.connection import CloseMode
from tests.interop.python_clients import IMAGE_HUB, PySignalRSession
from tests.support.simulator import TEST_KEY

pytestmark = pytest.mark.interop

PROTOCOLS = ["json", "messagepack"]


def session(sim, protocol: str = "json", key: str | None = TEST_KEY, **kwargs) -> PySignalRSession:
    return PySignalRSession(sim.url + IMAGE_HUB, key=key, protocol=protocol, **kwargs)


def group_members(sim, group: str) -> set[str]:
    hub = sim.simulator.hub(IMAGE_HUB)
    return sim.call(lambda: set(hub.groups.get(group, ())))


def connection_ids(sim) -> list[str]:
    hub = sim.simulator.hub(IMAGE_HUB)
    return sim.call(lambda: [c.connection_id for c in hub.connections()])


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_invoke_receive_and_unknown_method(sim, protocol):
    client = session(sim, protocol)
    hub = sim.simulator.hub(IMAGE_HUB)
    recorder = sim.simulator.recorder
    try:
        await client.start()

        subscribed = await client.invoke("SubscribeToTask", ["task_x"])
        assert subscribed.error is None and subscribed.result is None
        assert group_members(sim, "image-task_x") == set(connection_ids(sim))

        assert sim.call(hub.send_group, "image-task_x", "TaskProgress", ["task_x", 40]) == 1
        assert await client.next_event("TaskProgress") == ["task_x", 40]

        unknown = await client.invoke("NoSuchMethod", [1])
        assert "Unknown hub method 'NoSuchMethod'" in unknown.error
        assert client.errors == [unknown]  # also went to on_error, and the connection lives on
        assert (await client.invoke("UnsubscribeFromTask", ["task_x"])).error is None

        handshakes = recorder.records("handshake", ok=True)
        assert [(h.get("transport"), h.get("protocol"), h.get("version")) for h in handshakes] == [
            ("WebSockets", protocol, 1)
        ]
        assert [r.get("error") for r in recorder.records("invocation")] == [
            None, "Unknown hub method 'NoSuchMethod'", None,
        ]
        assert not client.task.done()
    finally:
        await client.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stays_connected_through_idle_longer_than_server_timeouts(sim, protocol):
    # Server keep-alive 0.5 s, client timeout 3 s (armed by the client's first Ping). pysignalr
    # pings every signalr_ping_interval; 1 s keeps it inside the 3 s window. Idle for 4.5 s.
    client = session(sim, protocol, signalr_ping_interval=1)
    hub = sim.simulator.hub(IMAGE_HUB)
    try:
        await client.start()
        await asyncio.sleep(4.5)
        assert not sim.simulator.recorder.records("disconnect")
        # The client timeout really was armed: the server has seen pysignalr's Pings.
        assert sim.call(lambda: [c.client_pinged for c in hub.connections()]) == [True]
        assert client.opened == 1 and client.closed == 0, client.describe()
        assert (await client.invoke("SubscribeToTask", ["task_idle"])).error is None
        assert not sim.simulator.recorder.records("disconnect")
    finally:
        await client.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_wrong_key_gets_401_and_run_raises_authorization_error(sim, protocol):
    client = session(sim, protocol, key="vk_notarealkey")
    # pysignalr raises AuthorizationError straight out of run() on a 401 negotiate (it is not
    # retried: only NegotiationFailure is).
    with pytest.raises(AuthorizationError):
        await asyncio.wait_for(client.client.run(), 5)
    rejected = sim.simulator.recorder.records("auth_rejected")
    assert [(r.get("stage"), r.get("reason")) for r in rejected] == [("negotiate", "unknown key")]
    assert not sim.simulator.recorder.records("negotiate")
    assert client.opened == 0


async def test_access_token_factory_alone_is_rejected_on_first_negotiate(sim):
    # The documented pysignalr quirk: the factory is read only at the handshake, so the first
    # negotiate goes out with no credential at all and gets 401.
    client = PySignalRSession(sim.url + IMAGE_HUB, key=None,
                              access_token_factory=lambda: TEST_KEY)
    with pytest.raises(AuthorizationError):
        await asyncio.wait_for(client.client.run(), 5)
    rejected = sim.simulator.recorder.records("auth_rejected")
    assert [(r.get("stage"), r.get("reason")) for r in rejected] == [("negotiate", "missing key")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_reconnects_after_bare_websocket_close_and_resubscribes(sim, protocol):
    client = session(sim, protocol, on_open_send=("SubscribeToTask", ["task_r"]))
    hub = sim.simulator.hub(IMAGE_HUB)
    recorder = sim.simulator.recorder
    try:
        await client.start()
        await client.until(lambda: client.on_open_completions, what="first subscribe")
        [first] = connection_ids(sim)
        assert group_members(sim, "image-task_r") == {first}

        # WebSocket close 1000 without a SignalR Close message.
        sim.call(lambda: [hub.close_connection(c, close_message=False)
                          for c in hub.connections()])

        # pysignalr retries the old URL (HTTP 404), sleeps retry_sleep * 1.1, renegotiates.
        await client.until(lambda: client.opened >= 2, 8, "second on_open")
        await client.until(lambda: len(client.on_open_completions) >= 2, what="resubscribe")
        assert all(c.error is None for c in client.on_open_completions)
        [second] = connection_ids(sim)
        assert second != first
        assert group_members(sim, "image-task_r") == {second}

        handshakes = recorder.records("handshake", ok=True)
        assert [(h.get("connection_id"), h.get("protocol")) for h in handshakes] == [
            (first, protocol), (second, protocol),
        ]
        assert len(recorder.records("negotiate")) == 2
        assert [r.get("close_message") for r in recorder.records("server_close")] == [False]

        assert sim.call(hub.send_group, "image-task_r", "TaskProgress", ["task_r", 75]) == 1
        assert await client.next_event("TaskProgress") == ["task_r", 75]
        assert not client.task.done()
    finally:
        await client.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_close_message_with_error_makes_run_raise_server_error(sim, protocol):
    # Even with allowReconnect, pysignalr turns a Close error into ServerError out of run().
    client = session(sim, protocol)
    hub = sim.simulator.hub(IMAGE_HUB)
    try:
        await client.start()
        sim.call(lambda: [hub.close_connection(c, error="maintenance", allow_reconnect=True)
                          for c in hub.connections()])
        done, _ = await asyncio.wait({client.task}, timeout=5)
        assert done, client.describe()
        assert isinstance(client.task.exception(), ServerError)
        assert client.task.exception().message == "maintenance"
        assert len(sim.simulator.recorder.records("negotiate")) == 1
    finally:
        await client.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_event_target_is_delivered_with_exact_case(sim, protocol):
    client = session(sim, protocol, events=("TaskProgress", "taskprogress", "TaskCompleted"))
    hub = sim.simulator.hub(IMAGE_HUB)
    try:
        await client.start()
        assert (await client.invoke("SubscribeToTask", ["task_c"])).error is None

        sim.call(hub.send_group, "image-task_c", "TaskProgress", ["task_c", 10])
        sim.call(hub.send_group, "image-task_c", "TaskCompleted",
                 ["task_c", {"images": ["https://cdn.example/a.png"], "seed": 7}])
        assert await client.next_event("TaskCompleted") == [
            "task_c", {"images": ["https://cdn.example/a.png"], "seed": 7},
        ]
        # Order is preserved and pysignalr matched the exact-case handler only.
        assert [name for name, _ in client.events] == ["TaskProgress", "TaskCompleted"]
        assert client.events[0] == ("TaskProgress", ["task_c", 10])
        assert [r.get("target") for r in sim.simulator.recorder.records("event")] == [
            "TaskProgress", "TaskCompleted",
        ]
    finally:
        await client.stop()


async def test_method_names_are_resolved_case_insensitively(sim):
    client = session(sim)
    try:
        await client.start()
        assert (await client.invoke("subscribetotask", ["task_lc"])).error is None
        assert group_members(sim, "image-task_lc") == set(connection_ids(sim))
    finally:
        await client.stop()


async def test_reconnects_after_abortive_cut(sim):
    # An abortive cut (no close handshake at all) is also survived: pysignalr reconnects.
    client = session(sim, signalr_ping_interval=1)
    hub = sim.simulator.hub(IMAGE_HUB)
    try:
        await client.start()
        [first] = connection_ids(sim)
        sim.call(lambda: [hub.close_connection(c, mode=CloseMode.ABORT)
                          for c in hub.connections()])
        await client.until(lambda: client.opened >= 2, 8, "reconnect after abort")
        [second] = connection_ids(sim)
        assert second != first
        assert (await client.invoke("SubscribeToTask", ["task_a"])).error is None
    finally:
        await client.stop()
