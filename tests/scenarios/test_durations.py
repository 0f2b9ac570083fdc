"""The one duration grammar (conduit_core.durations) and the callers that pick from it."""

from __future__ import annotations

from typing import Any

import pytest

from conduit_core.durations import MAX_SECONDS, DurationError, parse_duration
from loadtests.options import parse_delays
from loadtests.runner import UsageError, parse_timespan


@pytest.mark.parametrize(("value", "seconds"), [
    (0, 0.0), (1.5, 1.5), ("250ms", 0.25), ("1.5s", 1.5), ("2m", 120.0), ("1h30m", 5400.0),
    ("1m 30s", 90.0), (" .5 s ", 0.5), ("10.ms", 0.01),
])
def test_written_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "problem"), [
    ("5", "bad duration"), ("1e3s", "bad duration"), ("1,5s", "bad duration"), ("٣s", "bad duration"),
    ("nan", "bad duration"), ("", "bad duration"), ("-1s", "negative"), (-0.5, "negative"),
    (float("inf"), "not a finite number"), (float("nan"), "not a finite number"),
    (10**400, "not a finite number"), ("31d", "bad duration"), ("800h", "longer than the limit"),
    (MAX_SECONDS + 1, "longer than the limit"), (True, "must be a duration"), (None, "must be a duration"),
])
def test_bad_durations_say_why(value: Any, problem: str) -> None:
    with pytest.raises(DurationError, match=problem):
        parse_duration(value)


def test_callers_choose_units_and_bare_numbers() -> None:
    assert parse_duration("90", bare_unit="s") == 90.0
    assert parse_duration(250, number_unit="ms") == 0.25
    with pytest.raises(DurationError, match="unit h is not accepted here"):
        parse_duration("1h", units=("ms", "s", "m"))
    assert parse_timespan("1h2m3s") == 3723 and parse_timespan(90) == 90
    with pytest.raises(UsageError, match="whole seconds"):
        parse_timespan("1.5s")
    assert parse_delays("0, 2000, 1.5s") == (0.0, 2.0, 1.5)
    with pytest.raises(ValueError, match="reconnect delay '-5': duration '-5' is negative"):
        parse_delays("0,-5")
