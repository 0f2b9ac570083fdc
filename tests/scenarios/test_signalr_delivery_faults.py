"""duplicate_event and reorder_events as a scenario file and the control API read them: defaults,
the filters, and the mistakes worth a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.scenarios import ScenarioError, load_scenario
from simulator.scenarios.loader import parse_fault


def test_defaults() -> None:
    assert parse_fault({"kind": "duplicate_event"}, "").params == {
        "nth": None, "task_id": None, "events": "any"}
    assert parse_fault({"kind": "reorder_events"}, "").params == {
        "after": "event", "nth": 1, "count": 1, "task_id": None, "events": "any"}
    held = parse_fault({"kind": "reorder_events", "after": "poll", "events": "terminal", "task_id": "t1"}, "")
    assert (held.params["after"], held.params["events"], held.params["task_id"]) == ("poll", "terminal", "t1")


def test_a_scenario_file_schedules_them(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("""\
name: delivery
scripts:
  standard:
    steps: [{after: 1s, progress: 10}, {after: 300ms, progress: 50}, {after: 300ms, status: completed}]
faults:
  - {kind: duplicate_event, at: 0s, events: terminal}
  - {kind: reorder_events, at: 500ms, nth: 2, count: 3, events: progress}
""")
    faults = load_scenario(str(path)).faults
    assert [(f.kind, f.at) for f in faults] == [("duplicate_event", 0.0), ("reorder_events", 0.5)]
    assert faults[1].params == {"after": "event", "nth": 2, "count": 3, "task_id": None, "events": "progress"}


@pytest.mark.parametrize(("fault", "field", "problem"), [
    ({"kind": "reorder_events", "events": "terminal"}, "events", "write after: poll"),
    ({"kind": "reorder_events", "after": "ack"}, "after", "must be one of event, poll"),
    ({"kind": "reorder_events", "count": 0}, "count", "at least 1"),
    ({"kind": "duplicate_event", "nth": 0}, "nth", "at least 1"),
    ({"kind": "duplicate_event", "events": "final"}, "events", "must be one of any, progress, terminal"),
    ({"kind": "duplicate_event", "task_id": "  "}, "task_id", "must not be empty"),
    ({"kind": "duplicate_event", "channel": "webhook"}, "channel", "unknown key for a duplicate_event"),
])
def test_mistakes_name_the_field(fault: dict[str, object], field: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_fault(fault, "faults[0]", source="x.yaml")
    assert caught.value.field == f"faults[0].{field}", str(caught.value)
    assert problem in caught.value.problem, str(caught.value)


def test_the_openapi_schemas_explain_them() -> None:
    from simulator.scenarios.fault_schema import fault_json_schemas

    schemas = fault_json_schemas()
    for kind in ("duplicate_event", "reorder_events"):
        schema = schemas[f"Fault_{kind}"]
        assert "SignalR" in schema["description"], kind
        assert all(prop.get("description") for name, prop in schema["properties"].items() if name != "kind")
    assert schemas["Fault_reorder_events"]["properties"]["after"]["enum"] == ["event", "poll"]
