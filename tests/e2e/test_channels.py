"""End to end on every channel (S-REST, S-HUB, S-WEBHOOK, S-AUTH, S-SCRIPT): tasks created over
REST are followed with @microsoft/signalr under Node, pysignalr, polling and signed webhooks, and
all of them tell the same story."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from simulator.background import BackgroundSimulator
from tests.interop.python_clients import PySignalRSession
from tests.support.e2e import (
    E2E_SCENARIO,
    EVENTS_OF,
    SECRET,
    SUBSCRIBE_OF,
    VIDEO_EVENTS,
    VIDEO_HUB,
    World,
    needs_node,
    record_steps,
    signalr_steps,
    verify,
    wait_event,
    webhook_steps,
    world,
)
from tests.support.simulator import OTHER_KEY, TEST_KEY

pytestmark = [pytest.mark.interop]


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


@pytest.fixture
def sim(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=E2E_SCENARIO, seed=11, webhook_secret=SECRET)


def task_records(sim: BackgroundSimulator, task_id: str) -> list[dict[str, Any]]:
    return [r.to_json() for r in sim.simulator.recorder.records("task_event", task_id=task_id)]


# -- 1. create over REST, follow over SignalR --------------------------------------------------------
@pytest.mark.parametrize(("transport", "protocol"), [("WebSockets", "json"), ("LongPolling", "messagepack")])
@needs_node
def test_image_task_over_rest_then_node_signalr(sim, w: World, transport: str, protocol: str) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    node = w.node(sim.url, "image", transport=transport, protocol=protocol)

    task_id = rest.create("image")
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"
    completed = node.wait("event", target="TaskCompleted", timeout=10)

    status = rest.status(task_id)
    assert status["status"] == "completed" and status["progress"] == 100
    assert completed["args"] == [task_id, status["result"]]
    assert status["result"]["images"] and status["result"]["model"] == "dall-e-3"
    assert signalr_steps(node, task_id) == [
        ("progress", 10), ("progress", 50), ("progress", 90), ("completed", status["result"])]
    assert not node.seen("reconnecting") and not node.seen("closed")


async def test_video_task_over_rest_then_pysignalr(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    client = PySignalRSession(sim.url + VIDEO_HUB, key=TEST_KEY, events=tuple(VIDEO_EVENTS),
                              signalr_ping_interval=1)
    try:
        await client.start()
        task_id = await asyncio.to_thread(rest.create, "video")
        subscribed = await client.invoke("SubscribeToRequest", [task_id])
        assert subscribed.error is None
        completed = await client.next_event("RequestCompleted", timeout=10)

        status = await asyncio.to_thread(rest.status, task_id)
        assert status["status"] == "completed"
        assert completed == [task_id, status["result"]]
        assert status["result"]["video_url"].endswith(".mp4") and status["result"]["duration"] == 4
        assert client.events == [
            ("RequestProgress", [task_id, 10]), ("RequestProgress", [task_id, 50]),
            ("RequestProgress", [task_id, 90]), ("RequestCompleted", [task_id, status["result"]])]
        assert client.errors == [] and client.closed == 0
    finally:
        await client.stop()


# -- 2. polling the guide's route --------------------------------------------------------------------
def test_polling_progress_never_decreases_and_result_only_at_completed(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    runs = {
        "image": rest.create("image"),
        "video": rest.create("video"),
        "failing image": rest.create("image", prompt="this one will fail"),
    }
    polls = {name: rest.poll_in_background(task_id, interval=0.03) for name, task_id in runs.items()}
    for name, future in polls.items():
        answers = future.result(20)
        statuses = [a["status"] for a in answers]
        progress = [a["progress"] for a in answers]
        assert progress == sorted(progress), (name, progress)
        assert set(statuses[:-1]) <= {"pending", "processing"}, (name, statuses)
        assert all(a["task_id"] == runs[name] for a in answers)
        for answer in answers[:-1]:
            assert answer["result"] is None and answer["error"] is None, (name, answer)
        final = answers[-1]
        if name == "failing image":
            assert final["status"] == "failed" and final["result"] is None
            assert final["error"] == "provider exploded: out of GPUs"
            assert 20 in progress
        else:
            assert final["status"] == "completed" and final["progress"] == 100
            assert final["result"] and final["error"] is None
        # Polls spread over the script: the task was seen pending and moving.
        assert "pending" in statuses and len(answers) > 5, (name, statuses)


# -- 3. signed webhooks --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["image", "video"])
def test_every_webhook_verifies_over_the_exact_received_bytes(sim, w: World, kind: str) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    receiver = w.receiver()
    task_id = rest.create(kind, prompt="fast " + kind, webhook_url=receiver.url,
                          webhook_headers={"X-Tenant": "e2e"})
    deliveries = receiver.wait_terminal(task_id)

    assert [d.json()["event_type"] for d in deliveries] == ["task.progress"] * 3 + ["task.completed"]
    for delivery in deliveries:
        assert verify(delivery.body, delivery.signature), delivery
        assert not verify(delivery.body + b" ", delivery.signature)  # the bytes, not the JSON
        assert delivery.headers["Content-Type"] == "application/json"
        assert delivery.headers["User-Agent"] == "Conduit-LLM/1.0"
        assert delivery.headers["X-Webhook-Timestamp"].isdigit()
        assert delivery.headers["X-Tenant"] == "e2e"
        assert delivery.json()["task_id"] == task_id
    assert webhook_steps(deliveries) == [
        ("progress", 10), ("progress", 50), ("progress", 90), ("completed", rest.status(task_id)["result"])]
    assert [d.json()["status"] for d in deliveries] == ["processing"] * 3 + ["completed"]
    attempts = sim.simulator.recorder.records("webhook_attempt", task_id=task_id)
    assert [a.get("signature") for a in attempts] == [d.signature for d in deliveries]


# -- 4. one timeline, three channels -------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "prompt"), [("image", "a lighthouse"), ("video", "fail on purpose")])
@needs_node
def test_one_timeline_three_channels(sim, w: World, kind: str, prompt: str) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    receiver = w.receiver()
    node = w.node(sim.url, kind)

    task_id = rest.create(kind, prompt=prompt, webhook_url=receiver.url)
    polling = rest.poll_in_background(task_id, interval=0.05)
    assert node.invoke(SUBSCRIBE_OF[kind], task_id)["ev"] == "invoke_result"
    wait_event(node, task_id, *EVENTS_OF[kind][1:])
    deliveries = receiver.wait_terminal(task_id)
    polls = polling.result(20)

    records = rest.timeline(kind="task_event", task=task_id)
    from_records = record_steps(records)
    assert signalr_steps(node, task_id) == from_records
    assert webhook_steps(deliveries) == from_records
    assert all(verify(d.body, d.signature) for d in deliveries)
    # The record's own fields agree with what the webhook body said.
    assert [d.json()["status"] for d in deliveries] == [r["status"] for r in records]

    final = polls[-1]
    assert final == rest.status(task_id)
    last_kind, last_value = from_records[-1]
    assert final["status"] == records[-1]["status"] == last_kind
    assert final["progress"] == records[-1]["progress"]
    if last_kind == "completed":
        assert final["result"] == last_value and final["error"] is None
    else:
        assert final["error"] == last_value and final["result"] is None
    # Every polled progress is a point on the same timeline.
    assert {p["progress"] for p in polls} <= {0} | {r["progress"] for r in records}



# -- 5. cancel ----------------------------------------------------------------------------------------
@needs_node
@pytest.mark.parametrize("kind", ["image", "video"])
def test_cancel_is_the_last_word_on_every_channel(sim, w: World, kind: str) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    receiver = w.receiver()
    node = w.node(sim.url, kind)
    created = time.monotonic()
    task_id = rest.create(kind, prompt="cancel me", webhook_url=receiver.url)
    assert node.invoke(SUBSCRIBE_OF[kind], task_id)["ev"] == "invoke_result"
    progress, _, failed = EVENTS_OF[kind]
    wait_event(node, task_id, progress)

    reply = rest.request("DELETE", f"/v1/{kind}s/generations/{task_id}")
    if kind == "image":
        assert reply.status == 200, reply
        assert reply.json() == {"message": "Task cancellation requested", "task_id": task_id}
    else:
        assert (reply.status, reply.body) == (204, b"")

    event = wait_event(node, task_id, failed)
    assert event["args"] == [task_id, "Task cancelled"]
    [*_, last] = receiver.wait_terminal(task_id)
    body = last.json()
    assert (body["event_type"], body["status"], body["error"], body["result"]) == (
        "task.failed", "cancelled", "Task cancelled", None)
    assert verify(last.body, last.signature)
    status = rest.status(task_id)
    assert (status["status"], status["error"], status["result"], status["progress"]) == (
        "cancelled", "Task cancelled", None, 10)

    # Outlive the script (50 at 2.2 s, completed at 2.5 s): nothing comes after the cancel.
    time.sleep(max(0.0, created + 3.0 - time.monotonic()))
    expected = [("progress", 10), ("failed", "Task cancelled")]
    assert signalr_steps(node, task_id) == expected
    assert webhook_steps(receiver.deliveries(task_id)) == expected
    records = task_records(sim, task_id)
    assert record_steps(records) == expected
    assert [r["event"] for r in records] == ["progress", "cancelled"]
    assert rest.status(task_id) == status
    # Cancelling again changes nothing (image: 400 "already completed"; video: 204, as built).
    again = rest.request("DELETE", f"/v1/{kind}s/generations/{task_id}")
    assert again.status == (400 if kind == "image" else 204), again
    assert len(task_records(sim, task_id)) == 2


# -- 6. another key's task -----------------------------------------------------------------------------
@needs_node
def test_another_keys_task_is_refused_on_the_hubs_and_over_rest(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    image_id = rest.create("image")
    video_id = rest.create("video")
    image_hub = w.node(sim.url, "image", key=OTHER_KEY)
    video_hub = w.node(sim.url, "video", key=OTHER_KEY)

    refused = image_hub.invoke("SubscribeToTask", image_id)
    assert refused["ev"] == "invoke_error" and "Unauthorized access to task" in refused["error"], refused
    refused = video_hub.invoke("SubscribeToRequest", video_id)
    assert refused["ev"] == "invoke_error" and "Unauthorized access to task" in refused["error"], refused

    for task_id in (image_id, video_id):
        reply = rest.request("GET", f"/api/tasks/{task_id}/status", key=OTHER_KEY)
        assert reply.status == 404, reply
        assert task_id not in reply.body.decode()
    assert rest.request("DELETE", f"/v1/images/generations/{image_id}", key=OTHER_KEY).status == 404
    assert rest.request("DELETE", f"/v1/videos/generations/{video_id}", key=OTHER_KEY).status == 404

    # The owner's tasks run to completion untouched, and the other key hears nothing of them.
    assert rest.poll(image_id)[-1]["status"] == "completed"
    assert rest.poll(video_id)[-1]["status"] == "completed"
    time.sleep(0.2)
    assert image_hub.seen("event") == [] and video_hub.seen("event") == []
    assert not image_hub.seen("closed") and not video_hub.seen("closed")
    invocations = sim.simulator.recorder.records("invocation", key=OTHER_KEY)
    assert len(invocations) == 2
    assert all("Unauthorized access to task" in i.get("error") for i in invocations), invocations
