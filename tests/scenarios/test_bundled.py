"""The bundled scenarios load and say what the README promises of them."""

from __future__ import annotations

import pytest

from simulator.scenarios import (
    DEFAULT_SCENARIO,
    SCENARIO_DIR,
    Scenario,
    ScenarioError,
    bundled_scenarios,
    dump_scenario,
    load_scenario,
    loads_scenario,
)
from simulator.tasks.model import TaskStatus

EXPECTED = {"happy-path", "slow", "flaky", "reconnect-storm", "webhook-chaos"}


def test_the_bundled_set() -> None:
    assert set(bundled_scenarios()) >= EXPECTED
    assert DEFAULT_SCENARIO in bundled_scenarios()
    assert SCENARIO_DIR.name == "bundled" and (SCENARIO_DIR / "happy-path.yaml").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loads_by_name_and_path(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert len(scenario.description) > 40
    assert scenario.source == str(SCENARIO_DIR / f"{name}.yaml")
    assert load_scenario(str(SCENARIO_DIR / f"{name}.yaml")) == scenario
    assert loads_scenario(dump_scenario(scenario), scenario.source) == scenario
    for script in scenario.scripts.values():
        assert script.steps[-1].terminal and not any(step.terminal for step in script.steps[:-1])


def _only_script(scenario: Scenario):
    assert len(scenario.scripts) == 1
    return next(iter(scenario.scripts.values()))


def test_happy_path() -> None:
    scenario = load_scenario("happy-path")
    script = _only_script(scenario)
    assert [step.progress for step in script.steps[:-1]] == [10, 50, 90]
    assert script.outcome is TaskStatus.COMPLETED
    assert 2 <= script.duration <= 4
    assert scenario.faults == () and scenario.rules == ()


def test_slow() -> None:
    script = _only_script(load_scenario("slow"))
    assert 20 <= script.duration <= 30
    assert script.outcome is TaskStatus.COMPLETED


def test_flaky() -> None:
    scenario = load_scenario("flaky")
    outcomes = {script.outcome for script in scenario.scripts.values()}
    assert outcomes == {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.TIMEDOUT}
    assert any(rule.weights and len(rule.weights) == 3 for rule in scenario.rules)
    for script in scenario.scripts.values():
        if script.outcome is TaskStatus.FAILED:
            assert script.steps[-1].error
    faults = {fault.kind: fault for fault in scenario.faults}
    assert faults["poll_errors"].params == {"count": 3, "status": 503, "retry_after": 1, "key": None}
    assert faults["drop_connections"].at is not None


def test_reconnect_storm() -> None:
    scenario = load_scenario("reconnect-storm")
    drops = [fault for fault in scenario.faults if fault.kind == "drop_connections"]
    assert [fault.at for fault in drops] == [5.0, 15.0]
    assert all(fault.params["mode"] == "abort" for fault in drops)
    (refuse,) = [fault for fault in scenario.faults if fault.kind == "refuse_reconnects"]
    assert refuse.params["count"] == 3
    assert _only_script(scenario).outcome is TaskStatus.COMPLETED


def test_webhook_chaos() -> None:
    scenario = load_scenario("webhook-chaos")
    modes = {fault.params["mode"]: fault for fault in scenario.faults if fault.kind == "webhook"}
    assert set(modes) == {"bad_signature", "truncated_body", "duplicate", "out_of_order", "slow",
                          "wrong_secret"}
    assert modes["slow"].params["delay"] == 3.0
    # Each fault hits its own delivery (counted from arming at start): no two overlap.
    hit = [n for fault in modes.values()
           for n in range(fault.params["nth"], fault.params["nth"] + fault.params["count"])]
    assert len(hit) == len(set(hit))


def test_unknown_name_lists_the_bundled_ones() -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario("happy-pth")
    error = caught.value
    assert error.source == "happy-pth" and error.field == "scenario"
    for name in EXPECTED:
        assert name in error.problem
    assert str(error) == f"happy-pth: scenario: {error.problem}"


def test_missing_file() -> None:
    with pytest.raises(ScenarioError, match=r"nope/x\.yaml: \(file\): no such file"):
        load_scenario("nope/x.yaml")
