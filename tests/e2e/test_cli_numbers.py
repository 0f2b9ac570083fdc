"""Every numeric option is finite and in its range, or the command line is refused (exit 2)."""

from __future__ import annotations

import pytest

from harness.cli import build_parser


@pytest.mark.parametrize(("argv", "says"), [
    (["serve", "--time-scale", "inf"], "not a finite number"),
    (["serve", "--time-scale", "nan"], "not a finite number"),
    (["serve", "--time-scale", "0"], "must be above 0"),
    (["serve", "--time-scale", "1e9"], "at most 1000"),
    (["serve", "--idle-timeout", "-5"], "must be above 0"),
    (["serve", "--task-retention", "1e300"], "at most"),
    (["serve", "--outbox-limit", "12.5"], "not a whole number of bytes"),
    (["serve", "--outbox-limit", "10"], "at least 1024"),
    (["check", "--client", "x", "--max-rule-seconds", "inf"], "not a finite number"),
    (["check", "--client", "x", "--late-tolerance", "nan"], "not a finite number"),
])
def test_a_number_out_of_range_is_a_usage_error(argv: list[str], says: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert says in capsys.readouterr().err


def test_numbers_in_range_are_taken() -> None:
    args = build_parser().parse_args(["serve", "--time-scale", "0.05", "--outbox-limit", "65536"])
    assert args.time_scale == 0.05 and args.outbox_limit == 65536
