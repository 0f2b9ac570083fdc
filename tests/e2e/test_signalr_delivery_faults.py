"""duplicate_event and reorder_events end to end: armed through the control API, a real
@microsoft/signalr client receives the duplicated / reordered events, and the timeline says what
was done to which event."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from contract_tests.waiting import wait_until
from simulator.background import BackgroundSimulator
from tests.support.e2e import E2E_SCENARIO, SECRET, World, needs_node, signalr_steps, wait_event, world

pytestmark = [pytest.mark.interop, needs_node]


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


@pytest.fixture
def sim(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=E2E_SCENARIO, seed=5, webhook_secret=SECRET)


def timeline(sim: BackgroundSimulator, kind: str, **match: Any) -> list[dict[str, Any]]:
    return [r.to_json() for r in sim.simulator.recorder.records(kind, **match)]


def test_duplicate_event_sends_every_event_of_the_task_twice(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    node = w.node(sim.url, "image")
    other = rest.create("image")
    task_id = rest.create("image")
    [applied] = rest.fault({"kind": "duplicate_event", "task_id": task_id})
    assert (applied["kind"], applied["task_id"], applied["nth"]) == ("duplicate_event", task_id, None)
    for tid in (task_id, other):
        assert node.invoke("SubscribeToTask", tid)["ev"] == "invoke_result"

    wait_event(node, other, "TaskCompleted")
    wait_until(lambda: len([s for s in signalr_steps(node, task_id) if s[0] == "completed"]) == 2, 10,
               "the completion twice")
    result = rest.status(task_id)["result"]
    assert signalr_steps(node, task_id) == [("progress", 10), ("progress", 10), ("progress", 50),
                                            ("progress", 50), ("progress", 90), ("progress", 90),
                                            ("completed", result), ("completed", result)]
    assert [s[0] for s in signalr_steps(node, other)] == ["progress"] * 3 + ["completed"]  # untouched

    duplicated = timeline(sim, "event_duplicated")
    assert [(d["task_id"], d["event_seq"], d["recipients"]) for d in duplicated] == [
        (task_id, seq, 1) for seq in (1, 2, 3, 4)]
    copies = [e for e in timeline(sim, "event", task_id=task_id) if e.get("copy_by")]
    assert [(e["event_seq"], e["copy_by"]) for e in copies] == [(seq, applied["id"]) for seq in (1, 2, 3, 4)]
    hits = timeline(sim, "fault_hit", fault="duplicate_event")
    assert [(h["task_id"], h["action"]) for h in hits] == [(task_id, "duplicated")] * 4


def test_duplicate_event_nth_terminal_only_once(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    node = w.node(sim.url, "image")
    rest.fault({"kind": "duplicate_event", "events": "terminal", "nth": 1})
    first, second = rest.create("image"), rest.create("image", prompt="fail please")
    for tid in (first, second):
        assert node.invoke("SubscribeToTask", tid)["ev"] == "invoke_result"
    wait_event(node, first, "TaskCompleted")
    time.sleep(0.5)
    # The run's first terminal event (the failing task's, ~0.3 s sooner) is the one sent twice.
    assert [s[0] for s in signalr_steps(node, second)] == ["progress", "failed", "failed"]
    assert [s[0] for s in signalr_steps(node, first)].count("completed") == 1
    [dup] = timeline(sim, "event_duplicated")
    assert (dup["task_id"], dup["event_seq"]) == (second, 2)
    assert rest.request("GET", "/_sim/faults").json()["faults"] == []  # spent after its one hit


def test_reorder_events_swaps_consecutive_events(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    node = w.node(sim.url, "image")
    task_id = rest.create("image")
    [applied] = rest.fault({"kind": "reorder_events", "task_id": task_id, "count": 2})
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"

    wait_until(lambda: len(signalr_steps(node, task_id)) == 4, 10, "four events")
    result = rest.status(task_id)["result"]
    # 10 held until 50 was sent, 90 held until the completion was sent.
    assert signalr_steps(node, task_id) == [("progress", 50), ("progress", 10), ("completed", result),
                                            ("progress", 90)]
    reordered = timeline(sim, "events_reordered", task_id=task_id)
    assert [(r["event_seq"], r["after"], r["after_event_seq"], r["fault_id"]) for r in reordered] == [
        (1, "event", 2, applied["id"]), (3, "event", 4, applied["id"])]
    assert [e["event_seq"] for e in timeline(sim, "event", task_id=task_id)] == [2, 1, 4, 3]
    hits = timeline(sim, "fault_hit", fault="reorder_events")
    assert [(h["event_seq"], h["action"], h["until"]) for h in hits] == [(1, "held", "event"),
                                                                          (3, "held", "event")]


def test_reorder_after_poll_sends_the_terminal_with_the_poll_answer(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    node = w.node(sim.url, "image")
    task_id = rest.create("image")
    rest.fault({"kind": "reorder_events", "after": "poll", "events": "terminal", "task_id": task_id})
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"

    wait_until(lambda: timeline(sim, "fault_hit", fault="reorder_events"), 10, "the terminal held")
    time.sleep(0.5)
    assert [s[0] for s in signalr_steps(node, task_id)] == ["progress"] * 3  # held: not sent
    status = rest.status(task_id)
    assert status["status"] == "completed"
    completed = wait_event(node, task_id, "TaskCompleted")
    assert completed["args"][1] == status["result"]

    [poll] = timeline(sim, "poll", task_id=task_id)
    [released] = timeline(sim, "events_reordered", task_id=task_id)
    [event] = timeline(sim, "event", task_id=task_id, event_seq=4)
    assert (released["after"], released["task_status"], released["event_seq"]) == ("poll", "completed", 4)
    assert poll["seq"] < released["seq"] < event["seq"] and event["recipients"] == 1


def test_clearing_faults_sends_what_is_held(sim, w: World) -> None:
    rest = w.rest(sim.url, control_token=sim.control_token)
    node = w.node(sim.url, "image")
    task_id = rest.create("image")
    rest.fault({"kind": "reorder_events", "after": "poll", "events": "terminal", "task_id": task_id})
    assert node.invoke("SubscribeToTask", task_id)["ev"] == "invoke_result"
    wait_until(lambda: timeline(sim, "fault_hit", fault="reorder_events"), 10, "the terminal held")
    assert rest.request("DELETE", "/_sim/faults").status == 200
    wait_event(node, task_id, "TaskCompleted")
    [released] = timeline(sim, "events_reordered", task_id=task_id)
    assert released["after"] == "clear"
