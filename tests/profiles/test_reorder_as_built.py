"""reorder_events in the ``conduit-2025.08`` dialect, where a task event may send nothing (an
unchanged image count, a timeout): the held event is swapped with the next event that is sent,
and at a silent end it goes out in its turn, swapped with nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from contract_tests.waiting import wait_until
from simulator.background import BackgroundSimulator
from simulator.recorder import RecordKind
from simulator.scenarios import parse_scenario
from simulator.tasks.model import TaskRequest
from tests.support.simulator import TEST_KEY

STEP = 0.05
SCRIPTS = {
    # n = 1: only the first progress (the start notice) and the end are sent.
    "completes": {"steps": [{"after": STEP, "progress": 10}, {"after": STEP, "progress": 50},
                            {"after": STEP, "progress": 90}, {"after": STEP, "status": "completed"}]},
    "times-out": {"steps": [{"after": STEP, "progress": 10}, {"after": STEP, "progress": 50},
                            {"after": STEP, "status": "timedout"}]},
}


@pytest.fixture
def built(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    sim = make_simulator(profile="conduit-2025.08")
    scenario = parse_scenario({"name": "reorder", "scripts": SCRIPTS}, "test")
    for name, script in scenario.scripts.items():
        sim.call(sim.simulator.tasks.register_script, name, script)
    return sim


def _run(sim: BackgroundSimulator, script: str) -> str:
    """A task of ``script`` with its first sent event held back, once that event is released."""
    request = TaskRequest(kind="image", prompt="reorder", model="m", key=TEST_KEY)
    task_id = sim.call(lambda: sim.simulator.tasks.create(request, script=script).task_id)
    sim.inject("reorder_events", task_id=task_id)
    wait_until(lambda: sim.records(RecordKind.EVENTS_REORDERED, task_id=task_id), 10, "the release")
    return task_id


def test_an_event_that_sends_nothing_overtakes_nothing(built: BackgroundSimulator) -> None:
    task_id = _run(built, "completes")
    [hit] = built.records(RecordKind.FAULT_HIT, fault="reorder_events", task_id=task_id)
    [released] = built.records(RecordKind.EVENTS_REORDERED, task_id=task_id)
    ended = built.records(RecordKind.TASK_EVENT, task_id=task_id, event="completed")
    assert released.get("event_seq") == hit.get("event_seq") == 1
    # Not after progress 50 or 90 (no ImageGenerationProgress for them): after the completion.
    assert released.get("after_event_seq") == ended[0].get("event_seq") == 4


def test_a_silent_end_releases_the_held_event_in_its_turn(built: BackgroundSimulator) -> None:
    task_id = _run(built, "times-out")
    [released] = built.records(RecordKind.EVENTS_REORDERED, task_id=task_id)
    assert (released.get("event_seq"), released.get("after_event_seq")) == (1, 3)
    assert not built.call(lambda: built.simulator.faults.held.get(task_id))
