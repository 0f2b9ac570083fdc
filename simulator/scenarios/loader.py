"""Scenario files (YAML) and run-time fault requests → :mod:`simulator.scenarios.model` values.

Everything a user writes goes through here, and every mistake comes out as one
:class:`ScenarioError` naming the source, the field path and the problem — nothing else escapes,
whatever the input (the property tests feed it junk). Unknown keys are errors: a typo must not
pass silently. An optional key given as ``null`` counts as absent.

Schema (durations are seconds as a number, or a string ``"250ms"``, ``"1.5s"``, ``"2m"``, ``"1m30s"``;
:mod:`conduit_core.durations` is the grammar)::

    name: str                  # default: the file name without .yaml
    description: str           # default: ""
    scripts:                   # required, at least one; name -> script
      NAME:
        steps:                 # required, at least one; the last step, and only it, is terminal
          - after: DURATION    # wait before this step, from the previous one; default 0
            progress: 0..100   # int, never lower than the script's previous progress ...
            message: str       #   ... optionally with a message
          - status: completed  # ... or the end: completed [result: mapping, default: payload builder]
          - {status: failed, error: str}   # failed needs error; timedout takes neither
    rules:                     # first match wins
      - match: {prompt_contains: str, model: str, kind: image|video, header: {NAME: VALUE}}
        script: NAME           # match (at least one key) + script ...
      - weights: {NAME: N>0}   # ... or weights, with or without match (without: matches everything)
    default: NAME              # when no rule matches; default: the first script
    faults:                    # each may have at: DURATION (absent: armed at start)
      - {kind: drop_connections, at: 3s, mode: abort}

Fault kinds and their parameters are the models in :mod:`simulator.scenarios.fault_schema`
(``fault_kinds_doc()`` lists them; the control API's OpenAPI document describes them).
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

import yaml

from conduit_core.durations import DurationError
from simulator.scenarios.errors import CONTROL_API, PathT, ScenarioError
from simulator.scenarios.errors import Invalid as _Invalid
from simulator.scenarios.errors import show as _show
from simulator.scenarios.errors import type_name as _type_name
from simulator.scenarios.errors import wrap as _wrap
from simulator.scenarios.fault_schema import scenario_duration, validate_fault
from simulator.scenarios.model import (
    MATCH_KEYS,
    SCRIPT_TERMINALS,
    FaultSpec,
    Rule,
    Scenario,
    Step,
    TaskScript,
)
from simulator.scenarios.yaml_bounds import check_bounds
from simulator.tasks.model import TaskStatus

SCENARIO_DIR = Path(__file__).resolve().parent / "bundled"
DEFAULT_SCENARIO = "happy-path"


# ---------------------------------------------------------------------------------------------
# Scalars


def _duration(value: Any, path: PathT) -> float:
    try:
        return scenario_duration(value)
    except DurationError as exc:
        raise _Invalid(path, str(exc)) from None


def _int(value: Any, path: PathT, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(path, f"must be an integer, not {_type_name(value)} {_show(value)}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _Invalid(path, f"must be {bounds}, not {_show(value)}")
    return value


def _positive_number(value: Any, path: PathT) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(path, f"must be a positive number, not {_type_name(value)} {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and number > 0):
        raise _Invalid(path, f"must be a positive finite number, not {_show(value)}")
    return number


def _text(value: Any, path: PathT, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise _Invalid(path, f"must be a string, not {_type_name(value)} {_show(value)}")
    if not empty_ok and not value.strip():
        raise _Invalid(path, "must not be empty")
    return value


def _choice(value: Any, path: PathT, choices: tuple[Any, ...]) -> Any:
    if isinstance(value, bool) or value not in choices or type(value) is not type(choices[0]):
        listed = ", ".join(str(choice) for choice in choices)
        raise _Invalid(path, f"must be one of {listed}, not {_show(value)}")
    return value


def _mapping(value: Any, path: PathT, allowed: tuple[str, ...], what: str = "a mapping",
             owner: str = "") -> dict[str, Any]:
    """``value`` as a dict with only ``allowed`` keys; ``null`` values are dropped (= absent)."""
    if not isinstance(value, dict):
        raise _Invalid(path, f"must be {what}, not {_type_name(value)} {_show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise _Invalid(path, f"keys must be strings, not {_type_name(key)} {_show(key)}")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise _Invalid(path + (key,), f"unknown key{owner}; {hint}expected one of: {', '.join(allowed)}")
    return {key: item for key, item in value.items() if item is not None}


def _list(value: Any, path: PathT, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid(path, f"must be a list of {what}, not {_type_name(value)} {_show(value)}")
    return value


# A result is a small JSON object. YAML aliases let a tiny file stand for an exponentially large one
# ("billion laughs"), and each channel serialises the result again: cap what one result may hold.
MAX_RESULT_VALUES = 10_000
# MessagePack (one of the hub protocols) carries int64 / uint64 at most.
_INT_RANGE = range(-(2**63), 2**64)


def _json_like(value: Any, path: PathT) -> None:
    """``result`` goes out as JSON/MessagePack on every channel: JSON values only, string keys,
    finite numbers, integers that fit 64 bits, at most MAX_RESULT_VALUES values in all."""
    pending: list[tuple[Any, PathT]] = [(value, path)]
    seen = 0
    while pending:
        item, where = pending.pop()
        seen += 1
        if seen > MAX_RESULT_VALUES:
            raise _Invalid(path, f"too large or self-referencing: more than {MAX_RESULT_VALUES} values "
                                 "(YAML aliases count once per use)")
        if item is None or isinstance(item, (bool, str)):
            continue
        if isinstance(item, int):
            if item not in _INT_RANGE:
                raise _Invalid(where, "integer too large to send (64 bits at most)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _Invalid(where, f"{_show(item)} cannot be sent as JSON")
        elif isinstance(item, list):
            pending.extend((child, where + (index,)) for index, child in enumerate(item))
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise _Invalid(where, f"keys must be strings, not {_type_name(key)} {_show(key)}")
                pending.append((child, where + (key,)))
        else:
            raise _Invalid(where, f"{_type_name(item)} {_show(item)} cannot be sent as JSON")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", re.ASCII)  # RFC 9110 token
# ---------------------------------------------------------------------------------------------
# Scripts and rules


_STATUS_NAMES = tuple(status.value for status in SCRIPT_TERMINALS)


def _step(data: Any, path: PathT, floor: int) -> Step:
    given = _mapping(data, path, ("after", "progress", "status", "message", "result", "error"))
    after = _duration(given["after"], path + ("after",)) if "after" in given else 0.0
    if ("progress" in given) == ("status" in given):
        problem = "has both progress and status" if "progress" in given else "has neither progress nor status"
        raise _Invalid(path, f"{problem}; a step does exactly one: progress: 0..100, or status: "
                             f"{'|'.join(_STATUS_NAMES)}")
    if "progress" in given:
        progress = _int(given["progress"], path + ("progress",), 0, 100)
        if progress < floor:
            raise _Invalid(path + ("progress",), f"progress went down to {progress} from {floor}; "
                                                 "a script's progress never decreases")
        if "result" in given:
            raise _Invalid(path + ("result",), "only a completed step takes a result")
        if "error" in given:
            raise _Invalid(path + ("error",), "only a failed step takes an error")
        message = _text(given["message"], path + ("message",), empty_ok=True) if "message" in given else None
        return Step(after=after, progress=progress, message=message)

    status_text = given["status"]
    if status_text == TaskStatus.CANCELLED.value:
        raise _Invalid(path + ("status",), "a script cannot end cancelled (only the client cancels); "
                                           f"use one of {', '.join(_STATUS_NAMES)}")
    status = TaskStatus(_choice(status_text, path + ("status",), _STATUS_NAMES))
    if "message" in given:
        raise _Invalid(path + ("message",), "only a progress step takes a message")
    result = error = None
    if "result" in given:
        if status is not TaskStatus.COMPLETED:
            raise _Invalid(path + ("result",), f"only a completed step takes a result (status is {status})")
        if not isinstance(given["result"], dict):
            raise _Invalid(path + ("result",), f"must be a mapping, not {_type_name(given['result'])}")
        _json_like(given["result"], path + ("result",))
        result = given["result"]
    if "error" in given:
        if status is not TaskStatus.FAILED:
            raise _Invalid(path + ("error",), f"only a failed step takes an error (status is {status})")
        error = _text(given["error"], path + ("error",))
    elif status is TaskStatus.FAILED:
        raise _Invalid(path + ("error",), "required: a failed step needs an error message")
    return Step(after=after, status=status, result=result, error=error)


def _script(name: str, data: Any, path: PathT) -> TaskScript:
    given = _mapping(data, path, ("steps",), "a mapping with steps")
    if "steps" not in given:
        raise _Invalid(path + ("steps",), "required: a list of steps ending with a status")
    raw_steps = _list(given["steps"], path + ("steps",), "steps")
    if not raw_steps:
        raise _Invalid(path + ("steps",), "must have at least one step (the last one ends the task)")
    steps: list[Step] = []
    floor = 0
    for index, raw in enumerate(raw_steps):
        step_path = path + ("steps", index)
        if steps and steps[-1].terminal:
            raise _Invalid(path + ("steps", index - 1, "status"),
                           f"the terminal step must be the last step; steps[{index}:] would never run")
        step = _step(raw, step_path, floor)
        floor = step.progress if step.progress is not None else floor
        steps.append(step)
    if not steps[-1].terminal:
        raise _Invalid(path + ("steps", len(steps) - 1),
                       f"the last step must end the task with status: {'|'.join(_STATUS_NAMES)}")
    return TaskScript(name=name, steps=tuple(steps))


def _script_name(value: Any, path: PathT, scripts: dict[str, TaskScript]) -> str:
    name = _text(value, path)
    if name not in scripts:
        raise _Invalid(path, f"unknown script {name!r}; scripts: {', '.join(scripts)}")
    return name


def _rule(data: Any, path: PathT, scripts: dict[str, TaskScript]) -> Rule:
    given = _mapping(data, path, ("match", "script", "weights"))
    match: dict[str, Any] = {}
    if "match" in given:
        match = _mapping(given["match"], path + ("match",), MATCH_KEYS)
        if not match:
            raise _Invalid(path + ("match",), f"needs at least one of: {', '.join(MATCH_KEYS)}")
    mpath = path + ("match",)
    headers: dict[str, str] | None = None
    if "header" in match:
        raw_headers = match["header"]
        if not isinstance(raw_headers, dict) or not raw_headers:
            raise _Invalid(mpath + ("header",), "must be a non-empty mapping of header name to value")
        headers = {}
        for name, value in raw_headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise _Invalid(mpath + ("header",), f"{_show(name)} is not a header name")
            headers[name.lower()] = _text(value, mpath + ("header", name), empty_ok=True)
    fields: dict[str, Any] = {
        "prompt_contains": _text(match["prompt_contains"], mpath + ("prompt_contains",))
        if "prompt_contains" in match else None,
        "model": _text(match["model"], mpath + ("model",)) if "model" in match else None,
        "kind": _choice(match["kind"], mpath + ("kind",), ("image", "video")) if "kind" in match else None,
        "headers": headers,
    }
    if ("script" in given) == ("weights" in given):
        which = "both script and weights" if "script" in given else "neither script nor weights"
        raise _Invalid(path, f"has {which}; a rule has one")
    if "script" in given:
        if not match:
            raise _Invalid(path + ("match",), "required with script (for a rule that matches every task, "
                                              "use default: or weights:)")
        return Rule(script=_script_name(given["script"], path + ("script",), scripts), **fields)
    raw_weights = given["weights"]
    if not isinstance(raw_weights, dict) or not raw_weights:
        raise _Invalid(path + ("weights",), "must be a non-empty mapping of script name to weight")
    weights: dict[str, float] = {}
    for name, weight in raw_weights.items():
        wpath = path + ("weights", name if isinstance(name, str) else _show(name))
        weights[_script_name(name, wpath, scripts)] = _positive_number(weight, wpath)
    return Rule(weights=weights, **fields)


_TOP_KEYS = ("name", "description", "scripts", "rules", "default", "faults")


def _scenario(data: Any, source: str) -> Scenario:
    given = _mapping(data, (), _TOP_KEYS, "a mapping (name, description, scripts, rules, default, faults)")
    if "name" in given:
        name = _text(given["name"], ("name",))
    else:
        name = Path(source).stem if not source.startswith("<") else "scenario"
    description = ""
    if "description" in given:
        description = _text(given["description"], ("description",), empty_ok=True)

    if "scripts" not in given:
        raise _Invalid(("scripts",), "required: at least one script")
    raw_scripts = given["scripts"]
    if not isinstance(raw_scripts, dict) or not raw_scripts:
        raise _Invalid(("scripts",), "must be a non-empty mapping of script name to {steps: [...]}")
    scripts: dict[str, TaskScript] = {}
    for script_name, raw in raw_scripts.items():
        if not isinstance(script_name, str) or not script_name.strip():
            raise _Invalid(("scripts",), f"script names must be non-empty strings, not {_show(script_name)}")
        scripts[script_name] = _script(script_name, raw, ("scripts", script_name))

    rules: list[Rule] = []
    catch_all: int | None = None
    for index, raw in enumerate(_list(given.get("rules", []), ("rules",), "rules")):
        if catch_all is not None:
            raise _Invalid(("rules", index), f"unreachable: rules[{catch_all}] above matches every task")
        rule = _rule(raw, ("rules", index), scripts)
        if rule.catch_all:
            catch_all = index
        rules.append(rule)

    default = next(iter(scripts))
    if "default" in given:
        default = _script_name(given["default"], ("default",), scripts)
    faults = tuple(validate_fault(raw, ("faults", index))
                   for index, raw in enumerate(_list(given.get("faults", []), ("faults",), "faults")))
    return Scenario(name=name, description=description, scripts=scripts, rules=tuple(rules),
                    default=default, faults=faults, source=source)


# ---------------------------------------------------------------------------------------------
# Public entry points


def parse_duration(value: Any, where: str, *, source: str = CONTROL_API) -> float:
    """Seconds from a number or a ``"250ms"`` / ``"1.5s"`` / ``"2m"`` string; ``where`` names the field."""
    return _wrap(source, where, lambda: _duration(value, ()))


def parse_fault(data: Any, where: str, *, source: str = CONTROL_API) -> FaultSpec:
    """One fault, as in a scenario's ``faults`` list or a control API request body.

    ``where`` prefixes the field paths of errors (``""`` for none); ``source`` names the origin.
    """
    return _wrap(source, where, lambda: validate_fault(data, ()))


def parse_scenario(data: Any, source: str) -> Scenario:
    """A scenario from its mapping (already read from YAML/JSON); ``source`` names it in errors."""
    return _wrap(source, "", lambda: _scenario(data, source))


def bundled_scenarios() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A bundled scenario by name (``happy-path``) or a scenario file by path."""
    path = Path(name_or_path)
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in name_or_path or "\\" in name_or_path
    if not path.is_file() and not looks_like_path:
        bundled = SCENARIO_DIR / f"{name_or_path}.yaml"
        if not bundled.is_file():
            raise ScenarioError(name_or_path, "scenario",
                                f"no bundled scenario of that name (and no such file); bundled: "
                                f"{', '.join(bundled_scenarios())}")
        path = bundled
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "(file)", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source, "(file)", f"cannot read: {exc}") from None
    return loads_scenario(text, source)


def loads_scenario(text: str, source: str = "<string>") -> Scenario:
    """A scenario from YAML text; errors carry the line of the offending field when known."""
    try:
        loader = _StrictLoader(text)
        try:
            node = check_bounds(loader.get_single_node())  # no alias bombs
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f"line {line}, column {mark.column + 1}" if mark is not None else "(yaml)"
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise ScenarioError(source, where, f"invalid YAML: {problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(source, "(yaml)", f"invalid YAML: {exc}") from None
    try:
        return parse_scenario(data, source)
    except ScenarioError as exc:
        exc.line = _line_of(node, exc.path)
        raise


def dump_scenario(scenario: Scenario) -> str:
    """YAML text that :func:`loads_scenario` reads back to an equal scenario (durations in seconds)."""
    data = scenario.to_dict()
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    if yaml.load(text, Loader=_StrictLoader) != data:  # PyYAML writes some breaks (U+0085) raw
        text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=False)
    return text


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x faster
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _StrictLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable key: the base class reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {_show(key)} (first on line {first})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _line_of(node: yaml.Node | None, path: PathT) -> int | None:
    """The line (1-based) of the deepest node along ``path`` — the offending key, or its parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                    line, node = key_node.start_mark.line + 1, value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
