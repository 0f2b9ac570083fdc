"""S-FAULT end to end: every fault kind, armed through the control API, visibly happens to a real
client or receiver, and is on the run's timeline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from contract_tests.waiting import wait_until
from simulator.background import BackgroundSimulator
from simulator.security import control_headers
from tests.support.e2e import (
    E2E_SCENARIO,
    IMAGE_HUB,
    SECRET,
    World,
    needs_node,
    signalr_steps,
    verify,
    wait_event,
    webhook_steps,
    world,
)
from tests.support.simulator import TEST_KEY

pytestmark = [pytest.mark.interop]

SERVER_TIMEOUT = "Server timeout elapsed without receiving a message from the server"


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


@pytest.fixture
def sim(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=E2E_SCENARIO, seed=5, webhook_secret=SECRET)


def timeline(sim: BackgroundSimulator, kind: str, **match: Any) -> list[dict[str, Any]]:
    return [r.to_json() for r in sim.simulator.recorder.records(kind, **match)]


# -- drop_connections ----------------------------------------------------------------------------------
DROPS = {
    # mode: (server_close mode, Close message sent, allowReconnect, client reconnects)
    "abort": ("abort", False, None, True),
    "clean": ("graceful", False, None, True),
    "close": ("graceful", True, None, False),
    "close_reconnect": ("graceful", True, True, True),
}


@needs_node
@pytest.mark.parametrize("mode", list(DROPS))
def test_drop_connections(sim, w: World, mode: str) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    node = w.node(sim.url, "image", reconnect=[0, 200, 500, 1000])
    hub = sim.simulator.hub(IMAGE_HUB)
    [first] = sim.call(lambda: [c.connection_id for c in hub.connections()])

    [applied] = rest.fault({"kind": "drop_connections", "mode": mode})
    assert (applied["kind"], applied["mode"], applied["hits"]) == ("drop_connections", mode, 1)

    close_mode, close_message, allow_reconnect, reconnects = DROPS[mode]
    if reconnects:
        node.wait("reconnecting", timeout=10)
        reconnected = node.wait("reconnected", timeout=10)
        assert reconnected["connectionId"] not in (None, first)
        task_id = rest.create("image", prompt="fast")
        assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"  # the new link works
        assert not node.seen("closed")
    else:
        closed = node.wait("closed", timeout=10)
        # The Close message carried no error (else the client says "Server returned an error on
        # close"). The client may still report "WebSocket closed with status code: 1000": see
        # test_websocket_closing_handshake_is_completed.
        assert "Server returned an error" not in (closed["error"] or ""), closed
        time.sleep(1.0)
        assert not node.seen("reconnecting"), node.events
        assert len(timeline(sim, "negotiate")) == 1

    [fault] = rest.timeline(kind="fault")
    assert (fault["fault"], fault["mode"], fault["source"], fault["hits"]) == (
        "drop_connections", mode, "api", 1)
    [close] = timeline(sim, "server_close", connection_id=first)
    assert (close["mode"], close["close_message"], close["allow_reconnect"], close["reason"]) == (
        close_mode, close_message, allow_reconnect, "fault: drop_connections")
    assert timeline(sim, "disconnect", connection_id=first)


async def _close_code_after_slow_reply(base: str, mode: str, control_token: str) -> tuple[Any, int | None]:
    """A raw WebSocket client that answers the server's Close frame 0.2 s late: the Close frame's
    code, and the code the client ends with (1006 when the server cut TCP before our reply)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_KEY}"}) as session:
        async with session.post(base + IMAGE_HUB + "/negotiate?negotiateVersion=1") as reply:
            token = (await reply.json())["connectionToken"]
        ws = await session.ws_connect(base + IMAGE_HUB + f"?id={token}", autoclose=False)
        await ws.send_str('{"protocol":"json","version":1}\x1e')
        assert (await ws.receive()).data == "{}\x1e"
        async with session.post(base + "/_sim/faults", headers=control_headers(control_token),
                                json={"kind": "drop_connections", "mode": mode}) as reply:
            assert reply.status == 200
        while True:
            message = await ws.receive(timeout=5)
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
        await asyncio.sleep(0.2)
        await ws.close()
        return message.data, ws.close_code


@pytest.mark.parametrize("mode", ["clean", "close"])
def test_websocket_closing_handshake_is_completed(sim, w: World, mode: str) -> None:
    code_sent, code_seen = w.run(_close_code_after_slow_reply(sim.url, mode, sim.control_token))
    assert code_sent == 1000
    assert code_seen == 1000


# -- refuse_reconnects ---------------------------------------------------------------------------------
@needs_node
def test_refuse_reconnects_negotiate_503(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    # On the wire: the next negotiate is a 503.
    rest.fault({"kind": "refuse_reconnects", "count": 1, "how": "negotiate_503"})
    refused = rest.request("POST", IMAGE_HUB + "/negotiate?negotiateVersion=1")
    assert refused.status == 503, refused
    assert rest.request("POST", IMAGE_HUB + "/negotiate?negotiateVersion=1").status == 200

    # A client with a long enough reconnect policy gets through after two refusals.
    node = w.node(sim.url, "image", reconnect=[0, 300, 300, 300, 300, 300], logLevel="information")
    before = len(timeline(sim, "negotiate"))
    rest.fault({"kind": "refuse_reconnects", "count": 2, "how": "negotiate_503"},
               {"kind": "drop_connections", "mode": "abort"})
    node.wait("reconnecting", timeout=10)
    node.wait("reconnected", timeout=15)
    assert "503" in "\n".join(node.stderr), node.stderr[-20:]
    assert len([line for line in node.stderr if "Reconnect attempt failed" in line]) == 2
    assert not node.seen("closed")

    refusals = timeline(sim, "connection_refused")
    assert [(r["stage"], r["hub"]) for r in refusals] == [("negotiate", IMAGE_HUB)] * 3
    assert len(timeline(sim, "fault_hit", fault="refuse_reconnects")) == 3
    assert len(timeline(sim, "negotiate")) == before + 1  # only the successful one is a negotiate
    assert [f["fault"] for f in rest.timeline(kind="fault")] == [
        "refuse_reconnects", "refuse_reconnects", "drop_connections"]
    assert rest.request("GET", "/_sim/faults").json() == {"faults": []}  # used up


async def _upgrade_status(base: str) -> int:
    """Negotiate, then try the WebSocket upgrade; the upgrade's HTTP status."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_KEY}"}) as session:
        async with session.post(base + IMAGE_HUB + "/negotiate?negotiateVersion=1") as reply:
            assert reply.status == 200
            token = (await reply.json())["connectionToken"]
        try:
            ws = await session.ws_connect(base + IMAGE_HUB + f"?id={token}")
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


@needs_node
def test_refuse_reconnects_upgrade_refused(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    # On the wire: negotiate succeeds, the next upgrade is a 503.
    rest.fault({"kind": "refuse_reconnects", "count": 1, "how": "upgrade_refused"})
    assert w.run(_upgrade_status(sim.url)) == 503
    assert w.run(_upgrade_status(sim.url)) == 101

    node = w.node(sim.url, "image", reconnect=[0, 300, 300, 300, 300, 300], logLevel="information")
    before = len(timeline(sim, "negotiate"))
    rest.fault({"kind": "refuse_reconnects", "count": 2, "how": "upgrade_refused"},
               {"kind": "drop_connections", "mode": "abort"})
    node.wait("reconnecting", timeout=10)
    node.wait("reconnected", timeout=15)
    assert not node.seen("closed")
    failures = [line for line in node.stderr if "Reconnect attempt failed" in line]
    assert len(failures) == 2, node.stderr[-20:]

    refusals = timeline(sim, "connection_refused")
    assert [r["stage"] for r in refusals] == ["upgrade"] * 3
    # Each refused attempt had negotiated first; the upgrade is what failed.
    assert len(timeline(sim, "negotiate")) == before + 3
    assert len(timeline(sim, "fault_hit", fault="refuse_reconnects")) == 3
    assert node.invoke("SubscribeToTask", rest.create("image", prompt="fast"))["ev"] == "invoke_result"


# -- stop_pings ----------------------------------------------------------------------------------------
@needs_node
def test_stop_pings_makes_the_client_time_out(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    # Server keep-alive 0.5 s (the test hub options); client server timeout 1.5 s.
    node = w.node(sim.url, "image", serverTimeoutMs=1500, keepAliveMs=500, reconnect=[0, 200, 200, 500])
    time.sleep(2.0)  # idle longer than the client's server timeout: the pings keep it alive
    assert not node.seen("reconnecting") and not node.seen("closed"), node.events

    rest.fault({"kind": "stop_pings"})
    stopped = time.monotonic()
    reconnecting = node.wait("reconnecting", timeout=10)
    assert SERVER_TIMEOUT in reconnecting["error"], reconnecting
    assert time.monotonic() - stopped >= 0.7  # not before the timeout could have elapsed
    assert rest.request("DELETE", "/_sim/faults").json() == {"cleared": 1}
    node.wait("reconnected", timeout=10)
    time.sleep(2.0)  # pings are back: the new connection stays up
    assert len(node.seen("reconnecting")) == 1 and not node.seen("closed"), node.events

    [fault] = rest.timeline(kind="fault")
    assert (fault["fault"], fault["duration"]) == ("stop_pings", None)
    [gone] = timeline(sim, "disconnect")
    assert gone["seq"] > fault["seq"]


# -- delay_event / drop_event on SignalR ---------------------------------------------------------------
@needs_node
def test_delay_event_delivers_the_nth_event_late(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    receiver = w.receiver()
    node = w.node(sim.url, "image")
    rest.fault({"kind": "delay_event", "nth": 2, "delay": 1.5})  # the run's 2nd event, from now
    task_id = rest.create("image", webhook_url=receiver.url)
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"

    wait_until(lambda: ("progress", 50) in signalr_steps(node, task_id), 10, "the delayed event")
    steps = signalr_steps(node, task_id)
    result = rest.status(task_id)["result"]
    assert steps == [("progress", 10), ("progress", 90), ("completed", result), ("progress", 50)]
    arrived = {e["args"][1] if e["target"] == "TaskProgress" else "done": e["t"] / 1000
               for e in node.seen("event")}
    # Its step came 0.3 s after 10's, and it was held 1.5 s more (tolerant of a late first event).
    assert arrived[50] - arrived[10] >= 1.2, arrived

    [delayed] = timeline(sim, "event_delayed")
    assert (delayed["channel"], delayed["event_seq"], delayed["delay_s"]) == ("signalr", 2, 1.5)
    [hit] = timeline(sim, "fault_hit", fault="delay_event")
    assert (hit["channel"], hit["task_id"], hit["event_seq"]) == ("signalr", task_id, 2)
    [event] = timeline(sim, "event", task_id=task_id, event_seq=2)
    [published] = timeline(sim, "task_event", task_id=task_id, event_seq=2)
    assert event["wall"] - published["wall"] >= 1.45
    # The webhook channel was not affected.
    deliveries = receiver.wait_terminal(task_id)
    assert webhook_steps(deliveries) == [("progress", 10), ("progress", 50), ("progress", 90),
                                         ("completed", result)]


@needs_node
def test_drop_event_never_delivers_the_nth_event(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    receiver = w.receiver()
    node = w.node(sim.url, "image")
    rest.fault({"kind": "drop_event", "nth": 2})
    task_id = rest.create("image", webhook_url=receiver.url)
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"

    wait_event(node, task_id, "TaskCompleted")
    time.sleep(0.5)
    result = rest.status(task_id)["result"]
    assert signalr_steps(node, task_id) == [("progress", 10), ("progress", 90), ("completed", result)]

    [dropped] = timeline(sim, "event_dropped")
    assert (dropped["channel"], dropped["task_id"], dropped["event_seq"]) == ("signalr", task_id, 2)
    assert len(timeline(sim, "fault_hit", fault="drop_event")) == 1
    assert [e["event_seq"] for e in timeline(sim, "event", task_id=task_id)] == [1, 3, 4]
    deliveries = receiver.wait_terminal(task_id)
    assert [s[1] for s in webhook_steps(deliveries)][:3] == [10, 50, 90]


# -- poll_errors ---------------------------------------------------------------------------------------
def test_poll_errors_503_and_429_with_retry_after(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    task_id = rest.create("image", prompt="fast")
    rest.fault({"kind": "poll_errors", "count": 2, "status": 503, "retry_after": 2},
               {"kind": "poll_errors", "count": 1, "status": 429, "retry_after": 1})

    replies = [rest.request("GET", f"/api/tasks/{task_id}/status") for _ in range(4)]
    assert [r.status for r in replies] == [503, 503, 429, 200]
    assert [r.headers.get("Retry-After") for r in replies] == ["2", "2", "1", None]
    assert replies[0].json()["error"]["type"] == "server_error"
    assert "Rate limit" in replies[2].json()["error"]
    assert rest.poll(task_id)[-1]["status"] == "completed"  # polling goes on afterwards

    polls = rest.timeline(kind="poll", task=task_id)
    assert [(p["status"], p["fault"], p["retry_after"]) for p in polls[:4]] == [
        (503, True, 2), (503, True, 2), (429, True, 1), (200, False, None)]
    assert len(timeline(sim, "fault_hit", fault="poll_errors")) == 3


# -- webhook faults ------------------------------------------------------------------------------------
def _check_bad_signature(sim, deliveries, records) -> None:
    first, *rest = deliveries
    assert not verify(first.body, first.signature)
    assert all(verify(d.body, d.signature) for d in rest)
    assert [s[0] for s in webhook_steps(deliveries)] == ["progress"] * 3 + ["completed"]


def _check_wrong_secret(sim, deliveries, records) -> None:
    first, *rest = deliveries
    assert not verify(first.body, first.signature)
    assert verify(first.body, first.signature, sim.simulator.webhooks.wrong_secret)
    assert all(verify(d.body, d.signature) for d in rest)


def _check_truncated_body(sim, deliveries, records) -> None:
    first, *rest = deliveries
    with pytest.raises(ValueError):
        json.loads(first.body)
    assert first.body.startswith(b'{"event_type":"task.progress"')
    assert int(first.headers["Content-Length"]) == len(first.body)  # declared short, not cut off
    assert not verify(first.body, first.signature)
    [attempt] = [a for a in records if a["kind"] == "webhook_attempt" and a["event_seq"] == 1]
    assert attempt["body_bytes"] == len(first.body)
    assert all(verify(d.body, d.signature) for d in rest)
    assert [s[1] for s in webhook_steps(rest)][:2] == [50, 90]


def _check_duplicate(sim, deliveries, records) -> None:
    assert len(deliveries) == 5
    first, second, *_ = deliveries
    assert (first.body, first.signature) == (second.body, second.signature)
    assert first.headers["X-Webhook-Timestamp"] == second.headers["X-Webhook-Timestamp"]
    assert all(verify(d.body, d.signature) for d in deliveries)
    assert [s[1] for s in webhook_steps(deliveries)][:4] == [10, 10, 50, 90]
    duplicates = [r for r in records if r["kind"] == "webhook_delivery" and r["duplicate"]]
    assert [(d["event_seq"], d["outcome"]) for d in duplicates] == [(1, "delivered")]


def _check_out_of_order(sim, deliveries, records) -> None:
    assert all(verify(d.body, d.signature) for d in deliveries)
    assert [s[1] for s in webhook_steps(deliveries)][:3] == [50, 10, 90]
    assert webhook_steps(deliveries)[3][0] == "completed"
    assert any(r["kind"] == "webhook_held" for r in records)


def _check_slow(sim, deliveries, records) -> None:
    assert all(verify(d.body, d.signature) for d in deliveries)
    assert [s[1] for s in webhook_steps(deliveries)][:3] == [10, 50, 90]  # order kept
    [first_event] = [r for r in records if r["kind"] == "task_event" and r["event_seq"] == 1]
    assert deliveries[0].at - first_event["wall"] >= 1.0 - 0.1


WEBHOOK_MODES: dict[str, Callable[..., None]] = {
    "bad_signature": _check_bad_signature,
    "wrong_secret": _check_wrong_secret,
    "truncated_body": _check_truncated_body,
    "duplicate": _check_duplicate,
    "out_of_order": _check_out_of_order,
    "slow": _check_slow,
}


@pytest.mark.parametrize("mode", list(WEBHOOK_MODES))
def test_webhook_fault(sim, w: World, mode: str) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    receiver = w.receiver()
    fault: dict[str, Any] = {"kind": "webhook", "mode": mode}
    if mode == "slow":
        fault["delay"] = 1.0
    rest.fault(fault)
    task_id = rest.create("image", prompt="fast", webhook_url=receiver.url)
    expected = 5 if mode == "duplicate" else 4
    deliveries = receiver.wait_for(lambda got: len(got) >= expected, 10)
    time.sleep(0.2)  # nothing more comes
    deliveries = receiver.deliveries()
    assert len(deliveries) == expected, [d.body[:80] for d in deliveries]
    assert all(task_id.encode() in d.body for d in deliveries)

    records = rest.timeline(task=task_id)
    WEBHOOK_MODES[mode](sim, deliveries, records)
    [hit] = timeline(sim, "fault_hit", fault="webhook")
    assert hit["mode"] == mode
    faulted = [r for r in records if r["kind"] == "webhook_attempt" and r["fault"] == mode]
    assert [a["event_seq"] for a in faulted] == ([1, 1] if mode == "duplicate" else [1])
    assert all(r["outcome"] == "delivered" for r in records if r["kind"] == "webhook_delivery")
