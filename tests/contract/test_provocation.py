"""Every C-* rule declares what must happen before it judges, and C-NO-LOST-TERMINAL plans that
from the declared numbers (no live run here: the declarations are data)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract_tests.client_profile import guide_formula_delays
from contract_tests.client_rules import CHECKS, MIN_AWAY_WINDOW_S, plan_away
from contract_tests.provocation import PROVOKED_BY, not_provoked
from contract_tests.verdict import Outcome


def test_every_rule_declares_its_provocation() -> None:
    assert set(PROVOKED_BY) == set(CHECKS)
    for rule, provocation in PROVOKED_BY.items():
        assert provocation.rule == rule and provocation.requires, rule
        assert all(r.needs for r in provocation.requires), rule


@pytest.mark.parametrize("rule", sorted(PROVOKED_BY))
def test_no_facts_is_inconclusive_never_pass(rule: str) -> None:
    verdict = not_provoked(rule, {})
    assert verdict is not None and verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.details["missing"] == [r.needs for r in PROVOKED_BY[rule].requires]
    assert "not provoked" in verdict.summary


def test_the_missing_provocation_is_named() -> None:
    facts = {"subscribed": True, "drops": 1, "ended_while_away": True, "automatic_reconnect_after_end": False}
    verdict = not_provoked("C-NO-LOST-TERMINAL", facts)
    assert verdict is not None
    assert verdict.details["missing"] == [
        "the client came back by an automatic reconnect after the terminal event"]
    assert not_provoked("C-NO-LOST-TERMINAL", {**facts, "automatic_reconnect_after_end": True}) is None
    assert not_provoked("C-RETRY-AFTER", {"throttled": 1, "after_throttle": 0}) is not None
    assert not_provoked("C-RETRY-AFTER", {"throttled": 1, "after_throttle": 1}) is None


@pytest.mark.parametrize(("delays", "refusals", "end", "back"), [
    ((0, 0.3, 0.8, 1.5), 2, 0.55, 1.1),  # python-reference-fast: refusals no longer outlast it
    ((0, 2, 10, 30), 1, 1.0, 2.0),  # the documented schedule
    ((1, 2, 4, 8), 0, 0.5, 1.0),  # the guide's formula: the first attempt is late enough
])
def test_no_lost_terminal_plans_from_the_declared_schedule(delays, refusals, end, back) -> None:
    plan = plan_away(delays)
    assert plan is not None
    assert (plan.refusals, plan.end_after_drop, plan.back_after_drop) == pytest.approx((refusals, end, back))


def test_a_schedule_without_a_late_attempt_cannot_be_provoked() -> None:
    assert plan_away((0,)) is None
    assert plan_away((0, 0.1, 0.2)) is None


@given(st.lists(st.integers(0, 60_000), min_size=1, max_size=12).map(lambda ms: [m / 1000 for m in ms]))
def test_the_task_ends_between_the_drop_and_an_automatic_attempt(delays: list[float]) -> None:
    plan = plan_away(delays)
    offsets = list(itertools.accumulate(delays))
    if plan is None:
        assert offsets[-1] < MIN_AWAY_WINDOW_S
        return
    assert plan.refusals < len(delays)  # the attempt let through is an automatic one
    assert plan.back_after_drop == pytest.approx(offsets[plan.refusals])
    # Room on both sides of the end: after the drop, and before the attempt let through.
    assert plan.end_after_drop >= MIN_AWAY_WINDOW_S / 2
    assert plan.back_after_drop - plan.end_after_drop >= MIN_AWAY_WINDOW_S / 2
    # Every refused attempt is one the schedule makes before that one.
    assert all(offset < MIN_AWAY_WINDOW_S for offset in offsets[:plan.refusals])


def test_the_formula_schedule_is_planned_too() -> None:
    plan = plan_away([d / 1000 for d in guide_formula_delays()])
    assert plan is not None and plan.refusals == 0
