"""Timing tolerances of the contract (contract.md, "Timing tolerance").

An observed delay may be late by up to max(500 ms, 20 %) of the expected delay and early by at
most 50 ms. Both are options of the suite and are part of every timing verdict (as numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

from contract_tests.verdict import Measure, Statement


@dataclass(frozen=True)
class Tolerance:
    late_floor_s: float = 0.5
    late_fraction: float = 0.20
    early_s: float = 0.05

    def late_allowance(self, expected_s: float) -> float:
        return max(self.late_floor_s, self.late_fraction * expected_s)

    def too_early(self, expected_s: float, observed_s: float) -> bool:
        return observed_s < expected_s - self.early_s

    def too_late(self, expected_s: float, observed_s: float) -> bool:
        return observed_s > expected_s + self.late_allowance(expected_s)

    def statement(self) -> Statement:
        """Both bounds, as a verdict's tolerance (the report draws the allowed band from it)."""
        return Statement("late by up to max({late_floor}, {late_fraction}), early by at most {early}",
                         late_floor=Measure(round(self.late_floor_s * 1000, 3), "ms"),
                         late_fraction=Measure(round(self.late_fraction * 100, 3), "%"),
                         early=Measure(round(self.early_s * 1000, 3), "ms"))

    def early_statement(self) -> Statement:
        """Only the early bound: for rules where waiting longer is never wrong."""
        return Statement("early by at most {early}", early=Measure(round(self.early_s * 1000, 3), "ms"))

    def describe(self) -> str:
        return str(self.statement())

    @classmethod
    def from_statement(cls, statement: Statement) -> Tolerance:
        """The tolerance a verdict was judged with; the defaults for the bounds it does not state."""
        default = cls()

        def bound(name: str, unit: str, scale: float, fallback: float) -> float:
            found = statement.get(name)
            return found.to(unit) * scale if isinstance(found, Measure) else fallback

        return cls(late_floor_s=bound("late_floor", "s", 1.0, default.late_floor_s),
                   late_fraction=bound("late_fraction", "%", 0.01, default.late_fraction),
                   early_s=bound("early", "s", 1.0, default.early_s))


DEFAULT_TOLERANCE = Tolerance()


def ms(seconds: float) -> str:
    """A duration for an evidence line (``401 ms``)."""
    return f"{seconds * 1000:.0f} ms"
