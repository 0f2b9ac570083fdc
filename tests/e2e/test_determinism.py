"""S-SCRIPT / S-FAULT end to end: ``--seed`` makes a run reproducible, and a scenario's faults
happen at their ``at`` times, multiplied by the time scale."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from contract_tests.waiting import wait_until
from simulator.background import BackgroundSimulator
from tests.support.e2e import TERMINAL, World, needs_node, world


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


# The same creates, in the same order: both kinds, prompts the flaky rules look at.
CREATES: list[tuple[str, str]] = [
    ("image", "a red fox"), ("video", "surf at noon"), ("image", "please fail"),
    ("image", "a castle"), ("video", "fail again"), ("video", "clouds"), ("image", "a tree"),
    ("image", "a boat"), ("video", "rain"), ("image", "a bridge"), ("video", "snow"), ("image", "a cat"),
]


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "created"}
    return value


def run_flaky(make_simulator: Callable[..., BackgroundSimulator], w: World,
              seed: int) -> list[dict[str, Any]]:
    """Every task of a flaky run (time scale 0.05) once all have ended: id, kind, script and
    events without times."""
    sim = make_simulator(scenario="flaky", seed=seed, time_scale=0.05)
    rest = w.rest(sim.url, control_token=sim.control_token)
    ids = [rest.create(kind, prompt=prompt) for kind, prompt in CREATES]

    def finished() -> list[dict[str, Any]] | None:
        tasks = rest.request("GET", "/_sim/tasks").json()["tasks"]
        return tasks if all(t["status"] in TERMINAL for t in tasks) else None

    wait_until(finished, 15, "every flaky task ends")
    out = []
    for task_id in ids:
        task = rest.request("GET", f"/_sim/tasks/{task_id}").json()
        out.append({
            "task_id": task_id, "kind": task["kind"], "script": task["script"], "status": task["status"],
            "events": [(e["event"], e["event_seq"], e["status"], e["progress"], _without_times(e["result"]),
                        e["error"]) for e in task["events"]],
        })
    return out


def test_same_seed_same_run_and_another_seed_another(make_simulator, w: World) -> None:
    first = run_flaky(make_simulator, w, seed=1234)
    second = run_flaky(make_simulator, w, seed=1234)
    assert first == second

    # The run is not trivially the same for every task: scripts and outcomes vary.
    assert len({t["task_id"] for t in first}) == len(CREATES)
    assert {"success", "failure"} <= {t["script"] for t in first}
    for task, (_, prompt) in zip(first, CREATES, strict=True):
        if "fail" in prompt:
            assert task["script"] == "failure" and task["status"] == "failed"
        last = task["events"][-1]
        if last[0] == "completed":
            assert last[4] and last[5] is None
        else:
            assert last[4] is None and last[5]

    other = run_flaky(make_simulator, w, seed=4321)
    assert [t["task_id"] for t in other] != [t["task_id"] for t in first]
    assert not {t["task_id"] for t in other} & {t["task_id"] for t in first}
    assert other != first


# -- faults at their times ---------------------------------------------------------------------------
SCALE = 0.5
TIMED = {
    "name": "timed-faults",
    "scripts": {"idle": {"steps": [{"after": 3600, "status": "completed"}]}},
    "faults": [
        {"kind": "poll_errors", "at": "2s", "count": 1, "status": 429, "retry_after": 3},
        # Due together: armed in file order, so the refusal is in place when the drop happens.
        {"kind": "refuse_reconnects", "at": "6s", "count": 1, "how": "negotiate_503"},
        {"kind": "drop_connections", "at": "6s", "mode": "abort"},
        {"kind": "stop_pings", "at": "7s", "duration": "1s"},
    ],
}


@needs_node
def test_scenario_file_faults_happen_at_their_scaled_times(make_simulator, w: World, tmp_path) -> None:
    path = tmp_path / "timed-faults.yaml"
    path.write_text(yaml.safe_dump(TIMED, sort_keys=False), encoding="utf-8")
    sim = make_simulator(scenario=str(path), seed=3, time_scale=SCALE)
    assert sim.simulator.scenario.source == str(path)
    recorder = sim.simulator.recorder
    [start] = recorder.records("server_start")
    rest = w.rest(sim.url, control_token=sim.control_token)
    task_id = rest.create("image")
    assert rest.request("GET", f"/api/tasks/{task_id}/status").status == 200  # before 1 s
    node = w.node(sim.url, "image", reconnect=[0, 200, 200, 500, 1000], logLevel="information")

    node.wait("reconnecting", timeout=10)
    node.wait("reconnected", timeout=10)
    assert rest.request("GET", f"/api/tasks/{task_id}/status").status == 429  # armed at 1 s
    assert rest.request("GET", f"/api/tasks/{task_id}/status").status == 200  # count 1: used up
    wait_until(lambda: len(recorder.records("fault")) == 4, 10, "every scheduled fault armed")

    scheduled = recorder.records("fault_scheduled")
    assert [(r.get("fault"), r.get("at"), r.get("source")) for r in scheduled] == [
        ("poll_errors", 2.0, "scenario"), ("refuse_reconnects", 6.0, "scenario"),
        ("drop_connections", 6.0, "scenario"), ("stop_pings", 7.0, "scenario")]
    armed = recorder.records("fault")
    assert [r.get("fault") for r in armed] == [
        "poll_errors", "refuse_reconnects", "drop_connections", "stop_pings"]
    for record, at in zip(armed, [2.0, 6.0, 6.0, 7.0], strict=True):
        after_start = record.mono - start.mono
        assert after_start >= at * SCALE - 0.05, (record, after_start)
        assert after_start <= at * SCALE + 3.0, (record, after_start)  # tolerant: shared CPUs
    assert armed[2].get("hits") == 1  # the client's connection was there to drop
    # The drop was followed by exactly one refused negotiate, then the reconnect.
    [refused] = recorder.records("connection_refused")
    assert refused.get("stage") == "negotiate" and refused.seq > armed[2].seq
    assert "503" in "\n".join(node.stderr)
    # stop_pings lasts 1 s × 0.5: afterwards it is no longer in force.
    wait_until(lambda: rest.request("GET", "/_sim/faults").json()["faults"] == [], 5,
               "stop_pings expires")
    assert not node.seen("closed")


def test_flaky_scenario_faults_at_scaled_times(make_simulator, w: World) -> None:
    sim = make_simulator(scenario="flaky", seed=9, time_scale=0.05)
    recorder = sim.simulator.recorder
    [start] = recorder.records("server_start")
    rest = w.rest(sim.url, control_token=sim.control_token)
    task_id = rest.create("image", prompt="a red fox")
    # poll_errors (no at: armed at start): the first 3 polls answer 503 with Retry-After 1.
    replies = [rest.request("GET", f"/api/tasks/{task_id}/status") for _ in range(4)]
    assert [(r.status, r.headers.get("Retry-After")) for r in replies] == [
        (503, "1"), (503, "1"), (503, "1"), (200, None)]
    # drop_connections at 8 s × 0.05 = 0.4 s.
    wait_until(lambda: recorder.records("fault", fault="drop_connections"), 10, "the scheduled drop")
    [first, drop] = recorder.records("fault")
    assert first.get("fault") == "poll_errors" and first.mono - start.mono < 0.4
    assert 0.4 - 0.05 <= drop.mono - start.mono <= 0.4 + 3.0
