"""The one wait helper (contract_tests.waiting): bounded by time and by the number of polls."""

from __future__ import annotations

import time

import pytest

from contract_tests.waiting import WaitTimeout, async_wait_until, poll_until, wait_until


def test_returns_the_first_truthy_value() -> None:
    answers = iter([0, None, [], "yes", "later"])
    assert wait_until(lambda: next(answers), 1.0, interval=0.001) == "yes"


def test_times_out_naming_what_and_the_state() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"not within 0.1 s: the flag; flag is False") as caught:
        wait_until(lambda: False, 0.1, "the flag", describe=lambda: "flag is False")
    assert isinstance(caught.value, AssertionError)
    assert 0.1 <= time.monotonic() - started < 1.0


def test_the_poll_count_bounds_a_slow_predicate() -> None:
    calls = []

    def slow() -> bool:
        calls.append(1)
        time.sleep(0.05)
        return False

    assert poll_until(slow, 10.0, interval=0.01, max_polls=3) is False
    assert len(calls) == 3


def test_asks_once_more_at_the_deadline() -> None:
    deadline = time.monotonic() + 0.05
    assert wait_until(lambda: time.monotonic() >= deadline, 0.05, interval=1.0)


def test_bad_budgets_are_refused() -> None:
    for timeout, interval in [(float("inf"), 0.1), (-1, 0.1), (1, 0), (1, float("nan"))]:
        with pytest.raises(ValueError):
            poll_until(lambda: True, timeout, interval=interval)


async def test_async_waits_await_coroutine_predicates() -> None:
    seen = []

    async def ask() -> bool:
        seen.append(1)
        return len(seen) >= 3

    assert await async_wait_until(ask, 1.0, interval=0.001) is True
    with pytest.raises(WaitTimeout):
        await async_wait_until(lambda: None, 0.02, "nothing")
