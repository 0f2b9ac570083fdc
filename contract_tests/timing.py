"""Timing tolerances of the contract (contract.md, "Timing tolerance").

An observed delay may be late by up to max(500 ms, 20 %) of the expected delay and early by at
most 50 ms. Both are options of the suite and are printed with every timing verdict.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def describe(self) -> str:
        return (f"late by up to max({self.late_floor_s * 1000:.0f} ms, {self.late_fraction:.0%}), "
                f"early by at most {self.early_s * 1000:.0f} ms")


DEFAULT_TOLERANCE = Tolerance()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
