"""Which script a task gets: first matching rule, weights drawn from the task's seeded RNG."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from simulator.scenarios import PayloadFactory, Rule, parse_scenario
from simulator.tasks.model import TaskRequest

STEPS = {"steps": [{"status": "completed"}]}


def scenario(rules: list[dict[str, Any]], **extra: Any):
    scripts = {name: STEPS for name in ("a", "b", "c", "d")}
    return parse_scenario({"scripts": scripts, "rules": rules, **extra}, "<test>")


def request(prompt: str = "a cat", model: str = "m1", kind: str = "image", **headers: str) -> TaskRequest:
    return TaskRequest(kind=kind, prompt=prompt, model=model, key="vk_test",  # type: ignore[arg-type]
                       headers={name.lower(): value for name, value in headers.items()})


def test_first_match_wins_and_default() -> None:
    chosen = scenario([
        {"match": {"prompt_contains": "FAIL"}, "script": "b"},
        {"match": {"model": "video-slow", "kind": "video"}, "script": "c"},
        {"match": {"header": {"X-Sim-Script": "d"}}, "script": "d"},
        {"match": {"prompt_contains": "fail"}, "script": "c"},  # shadowed by the first rule
    ], default="a")
    rng = random.Random(0)
    assert chosen.choose_script(request("please fail now"), rng).name == "b"
    assert chosen.choose_script(request("Failure", model="video-slow", kind="video"), rng).name == "b"
    assert chosen.choose_script(request(model="video-slow", kind="video"), rng).name == "c"
    assert chosen.choose_script(request(model="video-slow", kind="image"), rng).name == "a"
    assert chosen.choose_script(request(model="video-slo", kind="video"), rng).name == "a"
    assert chosen.choose_script(request(**{"x-sim-script": "d"}), rng).name == "d"
    assert chosen.choose_script(request(**{"X-SIM-SCRIPT": "D"}), rng).name == "a"  # values are exact
    assert chosen.choose_script(request(), rng).name == "a"


def test_default_is_the_first_script() -> None:
    assert scenario([]).default == "a"
    assert scenario([]).choose_script(request(), random.Random(0)).name == "a"


def test_all_match_keys_must_match() -> None:
    rule = Rule(script="a", prompt_contains="cat", model="m1", kind="image", headers={"x-a": "1", "x-b": "2"})
    assert rule.matches(request("A CAT", **{"X-A": "1", "x-b": "2"}))
    assert not rule.matches(request("A CAT", **{"X-A": "1"}))
    assert not rule.matches(request("a dog", **{"X-A": "1", "x-b": "2"}))


def test_weights_follow_their_ratio() -> None:
    chosen = scenario([{"match": {"kind": "video"}, "script": "d"},
                       {"weights": {"a": 6, "b": 3, "c": 1}}])
    rng = random.Random(1)
    counts = Counter(chosen.choose_script(request(), rng).name for _ in range(6000))
    assert set(counts) == {"a", "b", "c"}
    assert counts["a"] == pytest.approx(3600, rel=0.08)
    assert counts["b"] == pytest.approx(1800, rel=0.1)
    assert counts["c"] == pytest.approx(600, rel=0.2)
    assert chosen.choose_script(request(kind="video"), rng).name == "d"


def test_weights_with_match_fall_through_when_not_matching() -> None:
    chosen = scenario([{"match": {"model": "x"}, "weights": {"b": 1, "c": 1}}], default="d")
    assert chosen.choose_script(request(model="y"), random.Random(0)).name == "d"
    assert chosen.choose_script(request(model="x"), random.Random(0)).name in {"b", "c"}


def choices(seed: int, weights: dict[str, float], tasks: int = 40) -> list[str]:
    chosen = scenario([{"weights": weights}])
    factory = PayloadFactory(seed)
    return [chosen.choose_script(request(), factory.for_task(index).rng).name for index in range(tasks)]


def test_same_seed_same_choices_whatever_the_file_order() -> None:
    first = choices(7, {"a": 1, "b": 1, "c": 2})
    assert first == choices(7, {"c": 2, "b": 1, "a": 1})
    assert first != choices(8, {"a": 1, "b": 1, "c": 2})


def test_choices_do_not_depend_on_task_timing() -> None:
    chosen = scenario([{"weights": {"a": 1, "b": 1, "c": 1}}])
    factory = PayloadFactory(3)
    in_order = [chosen.choose_script(request(), factory.for_task(i).rng).name for i in range(20)]
    reversed_ = [chosen.choose_script(request(), PayloadFactory(3).for_task(i).rng).name
                 for i in reversed(range(20))]
    assert in_order == reversed_[::-1]
