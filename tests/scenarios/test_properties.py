"""Property tests: valid scenario mappings round-trip; junk only ever raises ScenarioError.

The strategies here (``durations``, ``scripts``, ``rules``, ``faults``, ``scenario_dicts``) build
mappings from the documented schema, independently of the loader's tables.
"""

from __future__ import annotations

import copy
import datetime
import math
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.scenarios import (
    FAULT_KINDS,
    ScenarioError,
    dump_scenario,
    loads_scenario,
    parse_duration,
    parse_fault,
    parse_scenario,
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Composite scenarios are costly to generate; fewer of them still reach every branch of the parser.
HEAVY = settings(SETTINGS, max_examples=60)

# ---------------------------------------------------------------------------------------------
# Valid values

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


_SECONDS = st.one_of(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False))
_WRITTEN = st.tuples(st.integers(0, 5000), st.one_of(st.none(), st.integers(0, 999)),
                     st.sampled_from(sorted(UNITS)))


def _written(parts: tuple[int, int | None, str]) -> tuple[str, float]:
    whole, frac, unit = parts
    text = f"{whole}" if frac is None else f"{whole}.{frac:03d}"
    return f"{text}{unit}", float(text) * UNITS[unit]


# A duration as written, with the seconds it means.
durations = st.one_of(_SECONDS.map(lambda seconds: (seconds, float(seconds))), _WRITTEN.map(_written))
duration_values = durations.map(lambda pair: pair[0])


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12) \
    .filter(lambda text: text.strip() != "")
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)


_PROGRESSES = st.lists(st.integers(0, 100), max_size=5).map(sorted)
_MESSAGES = st.one_of(st.none(), st.text(max_size=20))
_MAYBE_AFTER = st.one_of(st.none(), duration_values)
_ENDS = st.sampled_from(["completed", "failed", "timedout"])
_RESULTS = st.one_of(st.none(), st.dictionaries(st.text(max_size=6), json_values, max_size=3))


@st.composite
def scripts(draw: st.DrawFn) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for progress in draw(_PROGRESSES):
        step: dict[str, Any] = {"progress": progress}
        after, message = draw(_MAYBE_AFTER), draw(_MESSAGES)
        if after is not None:
            step["after"] = after
        if message is not None:
            step["message"] = message
        steps.append(step)
    end = draw(_ENDS)
    last: dict[str, Any] = {"status": end, "after": draw(duration_values)}
    if end == "completed":
        result = draw(_RESULTS)
        if result is not None:
            last["result"] = result
    if end == "failed":
        last["error"] = draw(names)
    steps.append(last)
    return {"steps": steps}


header_names = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
                       min_size=1, max_size=10)


@st.composite
def matches(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.sets(st.sampled_from(["prompt_contains", "model", "kind", "header"]), min_size=1))
    match: dict[str, Any] = {}
    for key in sorted(keys):
        if key == "kind":
            match[key] = draw(st.sampled_from(["image", "video"]))
        elif key == "header":
            # distinct names case-insensitively: header names are compared that way
            lower = draw(st.lists(header_names.map(str.lower), min_size=1, max_size=2, unique=True))
            match[key] = {name: draw(st.text(max_size=8)) for name in lower}
        else:
            match[key] = draw(names)
    return match


@st.composite
def rules(draw: st.DrawFn, script_names: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            out.append({"match": draw(matches()), "script": draw(st.sampled_from(script_names))})
        else:
            weights = draw(st.dictionaries(st.sampled_from(script_names),
                                           st.one_of(st.integers(1, 100), st.floats(0.01, 100)), min_size=1))
            out.append({"match": draw(matches()), "weights": weights})
    if draw(st.booleans()):  # a final catch-all
        out.append({"weights": {name: 1 for name in script_names}})
    return out


FAULT_STRATEGIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "drop_connections": st.fixed_dictionaries({}, optional={
        "mode": st.sampled_from(["abort", "clean", "close", "close_reconnect"]),
        "key": names, "hub": st.sampled_from(["/hubs/image-generation", "video-generation"])}),
    "refuse_reconnects": st.fixed_dictionaries({"count": st.integers(1, 50)}, optional={
        "how": st.sampled_from(["negotiate_503", "upgrade_refused"]), "key": names}),
    "stop_pings": st.fixed_dictionaries({}, optional={"duration": duration_values}),
    "delay_event": st.fixed_dictionaries({"nth": st.integers(1, 100), "delay": duration_values}, optional={
        "channel": st.sampled_from(["signalr", "webhook", "all"])}),
    "drop_event": st.fixed_dictionaries({"nth": st.integers(1, 100)}, optional={
        "channel": st.sampled_from(["signalr", "webhook", "all"])}),
    "duplicate_event": st.fixed_dictionaries({}, optional={
        "nth": st.integers(1, 100), "task_id": names,
        "events": st.sampled_from(["any", "progress", "terminal"])}),
    "reorder_events": st.one_of(
        st.fixed_dictionaries({}, optional={
            "after": st.just("event"), "nth": st.integers(1, 9), "count": st.integers(1, 9), "task_id": names,
            "events": st.sampled_from(["any", "progress"])}),
        st.fixed_dictionaries({"after": st.just("poll")}, optional={
            "nth": st.integers(1, 9), "count": st.integers(1, 9), "task_id": names,
            "events": st.sampled_from(["any", "progress", "terminal"])})),
    "poll_errors": st.fixed_dictionaries({"count": st.integers(1, 100)}, optional={
        "status": st.sampled_from([500, 502, 503, 429]), "retry_after": st.integers(0, 120), "key": names}),
    "webhook": st.one_of(
        st.fixed_dictionaries({"mode": st.sampled_from(["bad_signature", "wrong_secret", "truncated_body",
                                                         "duplicate", "out_of_order"])},
                              optional={"count": st.integers(1, 9), "nth": st.integers(1, 9)}),
        st.fixed_dictionaries({"mode": st.just("slow")},
                              optional={"count": st.integers(1, 9), "nth": st.integers(1, 9),
                                        "delay": duration_values})),
}
assert set(FAULT_STRATEGIES) == set(FAULT_KINDS)


@st.composite
def faults(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(FAULT_KINDS))
    fault = {"kind": kind, **draw(FAULT_STRATEGIES[kind])}
    if draw(st.booleans()):
        fault["at"] = draw(duration_values)
    return fault


@st.composite
def scenario_dicts(draw: st.DrawFn) -> dict[str, Any]:
    script_map = draw(st.dictionaries(names, scripts(), min_size=1, max_size=4))
    script_names = list(script_map)
    data: dict[str, Any] = {"scripts": script_map}
    if draw(st.booleans()):
        data["name"] = draw(names)
    if draw(st.booleans()):
        data["description"] = draw(st.text(max_size=30))
    if draw(st.booleans()):
        data["rules"] = draw(rules(script_names))
    if draw(st.booleans()):
        data["default"] = draw(st.sampled_from(script_names))
    if draw(st.booleans()):
        data["faults"] = draw(st.lists(faults(), max_size=4))
    return data


# ---------------------------------------------------------------------------------------------
# Round trips


@HEAVY
@given(scenario_dicts())
def test_valid_scenarios_parse_and_round_trip(data: dict[str, Any]) -> None:
    original = copy.deepcopy(data)
    scenario = parse_scenario(data, "<gen>")
    assert data == original  # the input is not changed
    assert list(scenario.scripts) == list(data["scripts"])
    assert scenario.default == data.get("default", next(iter(data["scripts"])))
    assert len(scenario.rules) == len(data.get("rules", []))
    assert len(scenario.faults) == len(data.get("faults", []))
    for name, raw in data["scripts"].items():
        steps = scenario.scripts[name].steps
        assert [step.progress for step in steps[:-1]] == [step["progress"] for step in raw["steps"][:-1]]
        assert steps[-1].status == raw["steps"][-1]["status"]
    assert parse_scenario(scenario.to_dict(), "<gen>") == scenario
    assert loads_scenario(dump_scenario(scenario), "<gen>") == scenario


@SETTINGS
@given(durations)
def test_durations_mean_what_they_say(pair: tuple[Any, float]) -> None:
    written, seconds = pair
    assert math.isclose(parse_duration(written, "d"), seconds, rel_tol=1e-12, abs_tol=1e-12)


@SETTINGS
@given(faults())
def test_faults_round_trip_through_json(raw: dict[str, Any]) -> None:
    fault = parse_fault(raw, "")
    assert fault.kind == raw["kind"]
    assert set(fault.params) | {"kind", "at"} >= set(raw)
    assert parse_fault(fault.to_json(), "") == fault


# ---------------------------------------------------------------------------------------------
# Junk


odd_leaves = st.one_of(
    json_scalars, st.floats(), st.integers(), st.binary(max_size=4), st.just(10**400),
    st.dates(), st.sampled_from([object(), (1, 2), frozenset({1}), datetime.timedelta(seconds=3), ...]),
    st.sampled_from([int, float, str, bytes, complex, tuple, set, bool]).flatmap(st.from_type),
)
junk = st.recursive(odd_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none(), st.booleans()), inner,
                    max_size=4),
), max_leaves=12)


def expect_scenario_error(call: Any) -> None:
    try:
        call()
    except ScenarioError as error:
        assert error.source and error.field and error.problem
        assert str(error) == f"{error.source}: {error.field}: {error.problem}"


@SETTINGS
@given(junk)
def test_junk_raises_only_scenario_error(value: Any) -> None:
    expect_scenario_error(lambda: parse_scenario(value, "<junk>"))
    expect_scenario_error(lambda: parse_fault(value, "fault"))
    expect_scenario_error(lambda: parse_duration(value, "at"))


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += paths(item, prefix + (index,))
    return out


@HEAVY
@given(scenario_dicts(), st.data())
def test_one_junk_value_in_a_valid_scenario(data: dict[str, Any], draw: st.DataObject) -> None:
    """Junk deep inside an otherwise valid file reaches the inner parsers, not just the top."""
    path = draw.draw(st.sampled_from(paths(data)[1:]))
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = draw.draw(junk)
    expect_scenario_error(lambda: parse_scenario(data, "<junk>"))


@SETTINGS
@given(st.sampled_from(FAULT_KINDS), st.dictionaries(
    st.sampled_from(["at", "mode", "key", "hub", "count", "how", "duration", "nth", "delay", "channel",
                     "status", "retry_after"]), junk, max_size=4))
def test_junk_parameters_of_a_real_fault_kind(kind: str, params: dict[str, Any]) -> None:
    expect_scenario_error(lambda: parse_fault({"kind": kind, **params}, "fault"))


@HEAVY
@given(st.one_of(st.text(max_size=200),
                 scenario_dicts().map(lambda data: yaml.safe_dump(data, allow_unicode=True)).flatmap(
                     lambda text: st.tuples(st.integers(0, len(text)), st.integers(0, 8), st.text(max_size=4))
                     .map(lambda cut: text[:cut[0]] + cut[2] + text[cut[0] + cut[1]:]))))
def test_junk_yaml_raises_only_scenario_error(text: str) -> None:
    expect_scenario_error(lambda: loads_scenario(text, "junk.yaml"))
