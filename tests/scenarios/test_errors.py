"""Every mistake in a scenario file comes out as one ScenarioError naming file, field and problem."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.scenarios import ScenarioError, load_scenario, parse_duration, parse_fault, parse_scenario

BASE: dict[str, Any] = {
    "name": "t",
    "description": "a test",
    "scripts": {
        "standard": {"steps": [
            {"after": "500ms", "progress": 10},
            {"after": "1s", "progress": 50, "message": "rendering"},
            {"after": 1, "progress": 90},
            {"after": "500ms", "status": "completed"},
        ]},
        "policy": {"steps": [{"after": 0.3, "progress": 5},
                             {"after": "1s", "status": "failed", "error": "no"}]},
    },
    "rules": [
        {"match": {"prompt_contains": "fail"}, "script": "policy"},
        {"match": {"header": {"X-Sim-Script": "policy"}}, "script": "policy"},
        {"weights": {"standard": 9, "policy": 1}},
    ],
    "default": "standard",
    "faults": [{"kind": "drop_connections", "at": "3s", "mode": "abort"}],
}


def steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    return data["scripts"]["standard"]["steps"]


def setter(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        if isinstance(target, list) and path[-1] == len(target):
            target.append(value)
        else:
            target[path[-1]] = value
    return change


def deleter(*path: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
    return change


S = ("scripts", "standard", "steps")
CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    # (id, change, field, words in the problem)
    ("top-level-typo", setter("rule", value=[]), "rule", "unknown key; did you mean 'rules'"),
    ("name-type", setter("name", value=3), "name", "must be a string"),
    ("no-scripts", deleter("scripts"), "scripts", "required"),
    ("scripts-list", setter("scripts", value=[1]), "scripts", "non-empty mapping"),
    ("script-typo", setter("scripts", "standard", value={"step": []}), "scripts.standard.step",
     "did you mean 'steps'"),
    ("no-steps", setter("scripts", "standard", "steps", value=[]), "scripts.standard.steps", "at least one"),
    ("step-not-mapping", setter(*S, 0, value="progress 10"), "scripts.standard.steps[0]",
     "must be a mapping"),
    ("step-typo", setter(*S, 1, "mesage", value="x"), "scripts.standard.steps[1].mesage",
     "did you mean 'message'"),
    ("progress-type", setter(*S, 2, "progress", value="90"), "scripts.standard.steps[2].progress",
     "must be an integer"),
    ("progress-float", setter(*S, 2, "progress", value=90.5), "scripts.standard.steps[2].progress",
     "must be an integer"),
    ("progress-bool", setter(*S, 2, "progress", value=True), "scripts.standard.steps[2].progress",
     "must be an integer"),
    ("progress-high", setter(*S, 2, "progress", value=101), "scripts.standard.steps[2].progress",
     "between 0 and 100"),
    ("progress-negative", setter(*S, 0, "progress", value=-1), "scripts.standard.steps[0].progress",
     "between 0 and 100"),
    ("progress-decreasing", setter(*S, 2, "progress", value=40), "scripts.standard.steps[2].progress",
     "never decreases"),
    ("both", setter(*S, 2, "status", value="completed"), "scripts.standard.steps[2]",
     "both progress and status"),
    ("neither", setter(*S, 2, value={"after": 1}), "scripts.standard.steps[2]",
     "neither progress nor status"),
    ("terminal-not-last", setter(*S, 1, value={"status": "completed"}), "scripts.standard.steps[1].status",
     "must be the last step"),
    ("last-not-terminal", deleter(*S, 3), "scripts.standard.steps[2]", "last step must end the task"),
    ("bad-status", setter(*S, 3, "status", value="done"), "scripts.standard.steps[3].status",
     "one of completed, failed, timedout"),
    ("cancelled", setter(*S, 3, "status", value="cancelled"), "scripts.standard.steps[3].status",
     "only the client cancels"),
    ("failed-no-error", setter(*S, 3, "status", value="failed"), "scripts.standard.steps[3].error",
     "needs an error"),
    ("failed-empty-error", setter("scripts", "policy", "steps", 1, "error", value=" "),
     "scripts.policy.steps[1].error", "must not be empty"),
    ("result-on-failed", setter("scripts", "policy", "steps", 1, "result", value={"a": 1}),
     "scripts.policy.steps[1].result", "only a completed step takes a result"),
    ("error-on-completed", setter(*S, 3, "error", value="x"), "scripts.standard.steps[3].error",
     "only a failed step takes an error"),
    ("error-on-timedout", setter(*S, 3, value={"status": "timedout", "error": "x"}),
     "scripts.standard.steps[3].error", "only a failed step"),
    ("result-on-progress", setter(*S, 0, "result", value={}), "scripts.standard.steps[0].result",
     "only a completed step takes a result"),
    ("message-on-terminal", setter(*S, 3, "message", value="x"), "scripts.standard.steps[3].message",
     "only a progress step"),
    ("result-not-mapping", setter(*S, 3, "result", value=[1]), "scripts.standard.steps[3].result",
     "must be a mapping"),
    ("result-not-json", setter(*S, 3, "result", value={"x": [float("nan")]}),
     "scripts.standard.steps[3].result.x[0]", "cannot be sent as JSON"),
    ("after-negative", setter(*S, 0, "after", value=-1), "scripts.standard.steps[0].after", "negative"),
    ("after-unit", setter(*S, 0, "after", value="500 msec"), "scripts.standard.steps[0].after",
     "bad duration '500 msec'"),
    ("after-no-unit", setter(*S, 0, "after", value="5"), "scripts.standard.steps[0].after", "bad duration"),
    ("after-list", setter(*S, 0, "after", value=[1]), "scripts.standard.steps[0].after",
     "must be a duration"),
    ("rule-unknown-script", setter("rules", 0, "script", value="polcy"), "rules[0].script",
     "unknown script 'polcy'; scripts: standard, policy"),
    ("weights-unknown-script", setter("rules", 2, "weights", value={"standard": 1, "other": 1}),
     "rules[2].weights.other", "unknown script 'other'"),
    ("weights-zero", setter("rules", 2, "weights", "policy", value=0), "rules[2].weights.policy",
     "positive"),
    ("weights-empty", setter("rules", 2, "weights", value={}), "rules[2].weights", "non-empty"),
    ("default-unknown", setter("default", value="nope"), "default", "unknown script 'nope'"),
    ("rule-both", setter("rules", 0, "weights", value={"policy": 1}), "rules[0]", "both script and weights"),
    ("rule-neither", setter("rules", 0, value={"match": {"model": "m"}}), "rules[0]", "neither"),
    ("rule-script-no-match", setter("rules", 0, value={"script": "policy"}), "rules[0].match",
     "required with script"),
    ("match-typo", setter("rules", 0, "match", value={"prompt_contain": "x"}),
     "rules[0].match.prompt_contain", "did you mean 'prompt_contains'"),
    ("match-empty", setter("rules", 0, "match", value={}), "rules[0].match", "at least one of"),
    ("match-kind", setter("rules", 0, "match", value={"kind": "audio"}), "rules[0].match.kind",
     "one of image, video"),
    ("match-header-value", setter("rules", 1, "match", "header", value={"X-A": 2}),
     "rules[1].match.header.X-A", "must be a string"),
    ("match-header-name", setter("rules", 1, "match", "header", value={"X A": "1"}),
     "rules[1].match.header", "not a header name"),
    ("unreachable", setter("rules", 3, value={"match": {"model": "m"}, "script": "policy"}), "rules[3]",
     "unreachable: rules[2]"),
    ("faults-mapping", setter("faults", value={"kind": "stop_pings"}), "faults", "must be a list"),
    ("fault-unknown-kind", setter("faults", 0, "kind", value="drop_connection"), "faults[0].kind",
     "did you mean 'drop_connections'"),
    ("fault-no-kind", deleter("faults", 0, "kind"), "faults[0].kind", "required"),
    ("fault-bad-mode", setter("faults", 0, "mode", value="slam"), "faults[0].mode", "one of abort, clean"),
    ("fault-unknown-param", setter("faults", 0, "count", value=2), "faults[0].count",
     "unknown key for a drop_connections fault"),
    ("fault-bad-at", setter("faults", 0, "at", value="3 sec"), "faults[0].at", "bad duration"),
    ("fault-missing-count", setter("faults", 0, value={"kind": "refuse_reconnects"}), "faults[0].count",
     "required for a refuse_reconnects fault"),
    ("fault-count-zero", setter("faults", 0, value={"kind": "poll_errors", "count": 0}), "faults[0].count",
     "at least 1"),
    ("fault-status", setter("faults", 0, value={"kind": "poll_errors", "count": 1, "status": "503"}),
     "faults[0].status", "one of 500, 502, 503, 429"),
    ("fault-hub", setter("faults", 0, "hub", value="/hubs/Image Generation"), "faults[0].hub", "not a hub"),
    ("fault-webhook-delay", setter("faults", 0, value={"kind": "webhook", "mode": "duplicate", "delay": 1}),
     "faults[0].delay", "only mode slow"),
]


@pytest.mark.parametrize(("change", "field", "problem"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_error_names_file_field_and_problem(tmp_path: Path, change: Callable[[dict[str, Any]], None],
                                            field: str, problem: str) -> None:
    data = copy.deepcopy(BASE)
    change(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(str(path))
    error = caught.value
    assert (error.source, error.field) == (str(path), field), str(error)
    assert problem in error.problem, str(error)
    assert str(error) == f"{path}: {field}: {error.problem}"
    assert error.line is not None
    # The same mistake from a mapping (no file) gives the same field and problem.
    with pytest.raises(ScenarioError) as again:
        parse_scenario(data, "<dict>")
    assert (again.value.source, again.value.field, again.value.problem) == ("<dict>", field, error.problem)


def test_base_is_valid() -> None:
    scenario = parse_scenario(copy.deepcopy(BASE), "<dict>")
    assert scenario.scripts["standard"].duration == 3.0


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: x
        scripts:
          a:
            steps: [{status: completed}
        rules: []
    """)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.source == path
    assert caught.value.field.startswith("line 5, column")
    assert caught.value.line == 5
    assert caught.value.problem.startswith("invalid YAML: ")


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, """
        scripts:
          a: {steps: [{status: completed}]}
        default: a
        default: a
    """)
    with pytest.raises(ScenarioError, match=r"duplicate key 'default' \(first on line 3\)") as caught:
        load_scenario(path)
    assert caught.value.line == 4


def test_validation_errors_carry_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, """
        scripts:
          a:
            steps:
              - {after: 1s, progress: 50}
              - {after: 1s,
                 progress: 40}
              - {status: completed}
    """)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.field == "scripts.a.steps[1].progress"
    assert caught.value.line == 6


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "a: 1\n---\nb: 2\n"])
def test_not_a_scenario_document(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(str(path))
    assert caught.value.source == str(path)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ScenarioError, match=r"\(file\): cannot read"):
        load_scenario(str(path))


@pytest.mark.parametrize(("value", "seconds"), [
    (0, 0.0), (2, 2.0), (1.5, 1.5), ("250ms", 0.25), ("1.5s", 1.5), ("2m", 120.0), (" 3 s ", 3.0),
    (".5s", 0.5), ("10.ms", 0.01),
])
def test_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value, "after") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "5", "1h", "-1s", "1e3s", "1,5s", "ms", "nan", "inf", "٣s",
                                   float("inf"), float("nan"), -0.1, True, None, [], 10**400])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_duration(value, "faults[0].delay")
    assert caught.value.source == "<control API>" and caught.value.field == "faults[0].delay"


def test_fault_defaults_and_to_json() -> None:
    fault = parse_fault({"kind": "webhook", "mode": "slow"}, "")
    assert fault.to_json() == {"kind": "webhook", "at": None, "mode": "slow", "count": 1, "nth": 1,
                               "delay": 5.0}
    assert parse_fault(fault.to_json(), "") == fault
    drop = parse_fault({"kind": "drop_connections", "hub": "image-generation", "at": "2.5s"}, "")
    assert drop.params == {"mode": "abort", "key": None, "hub": "/hubs/image-generation"}
    assert drop.at == 2.5
    assert parse_fault({"kind": "drop_connections", "hub": "/hubs/public/video-generation"},
                       "").params["hub"] == "/hubs/public/video-generation"
    assert parse_fault({"kind": "stop_pings"}, "").params == {"duration": None}
    assert parse_fault({"kind": "delay_event", "nth": 2, "delay": "1s"}, "").params == \
        {"nth": 2, "delay": 1.0, "channel": "signalr"}


def test_control_api_fault_errors() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_fault({"kind": "poll_errors", "count": 2, "retry_after": -1}, "")
    assert str(caught.value) == "<control API>: retry_after: must be at least 0, not -1"
    with pytest.raises(ScenarioError) as caught:
        parse_fault(["drop_connections"], "body")
    assert (caught.value.field, caught.value.source) == ("body", "<control API>")
    with pytest.raises(ScenarioError, match=r"^x\.yaml: faults\[2\]\.nth: required"):
        parse_fault({"kind": "drop_event"}, "faults[2]", source="x.yaml")


def test_yaml_alias_bombs_and_cycles_are_refused(tmp_path: Path) -> None:
    laughs = "\n".join(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10))
    path = write(tmp_path, f"""
scripts:
  a:
    steps:
      - status: completed
        result:
          l0: &l0 [lol]
{textwrap.indent(laughs, "        ")}
""")
    with pytest.raises(ScenarioError, match=r"result: too large or self-referencing"):
        load_scenario(path)
    path = write(tmp_path, """
        scripts:
          a: {steps: [{status: completed, result: {loop: &x [*x]}}]}
    """)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.field.startswith("scripts.a.steps[0].result")


def test_errors_pickle() -> None:
    import pickle

    with pytest.raises(ScenarioError) as caught:
        parse_fault({"kind": "webhook"}, "fault")
    copied = pickle.loads(pickle.dumps(caught.value))
    assert (str(copied), copied.field, copied.problem) == (str(caught.value), "fault.mode",
                                                          caught.value.problem)
