"""A rule's verdict: passed or not, with the numbers that decided it.

Every timing verdict states what was expected, what was observed and the tolerance used, so a
failure reads as evidence, not as a bare assertion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Verdict:
    rule: str
    passed: bool
    summary: str
    expected: str = ""
    observed: str = ""
    tolerance: str = ""
    # What the verdict rests on: timeline records and observations, as short lines.
    evidence: list[str] = field(default_factory=list)
    # Measured numbers for reports (e.g. {"min_interval_ms": 5003.1}).
    numbers: dict[str, Any] = field(default_factory=dict)

    def explain(self) -> str:
        lines = [f"{self.rule}: {'PASS' if self.passed else 'FAIL'}: {self.summary}"]
        if self.expected:
            lines.append(f"  expected:  {self.expected}")
        if self.observed:
            lines.append(f"  observed:  {self.observed}")
        if self.tolerance:
            lines.append(f"  tolerance: {self.tolerance}")
        for line in self.evidence[:25]:
            lines.append(f"  | {line}")
        if len(self.evidence) > 25:
            lines.append(f"  | ... {len(self.evidence) - 25} more")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "passed": self.passed, "summary": self.summary,
            "expected": self.expected, "observed": self.observed, "tolerance": self.tolerance,
            "evidence": self.evidence, "numbers": self.numbers,
        }
