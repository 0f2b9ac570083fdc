"""The estimates longest-first scheduling and ``--max-rule-seconds`` use: per case, and moving
with the client's declared numbers."""

from __future__ import annotations

from contract_tests.client_profile import find_profile
from contract_tests.client_rules import CHECKS, estimated_seconds
from contract_tests.suite.catalogue import case_label


def _estimates(profile_name: str) -> dict[str, float]:
    profile = find_profile(profile_name)
    labels = [(rule, case_label(rule, variant, len(variants)))
              for rule, variants in CHECKS.items() for variant, _check, _kwargs in variants]
    return {label: estimated_seconds(rule, profile, label) for rule, label in labels}


def test_the_longest_cases_come_first_in_both_sets_of_numbers() -> None:
    fast = _estimates("python-reference-fast")
    documented = _estimates("python-reference")
    # Measured alone (bench_check, 2026-12-02): C-OUTCOME[generated] 15.6 s was the longest with
    # the fast numbers; C-RECONNECT-SCHEDULE 80 s (and C-POLL-LIMIT, 60 × 5 s) with the guide's.
    assert max(fast, key=fast.__getitem__) == "C-OUTCOME[generated]"
    assert fast["C-OUTCOME[generated]"] > fast["C-OUTCOME[signalr]"] > fast["C-AUTH"]
    assert sorted(documented, key=documented.__getitem__)[-2:] == ["C-RECONNECT-SCHEDULE", "C-POLL-LIMIT"]


def test_estimates_follow_the_declared_numbers() -> None:
    fast, documented = find_profile("python-reference-fast"), find_profile("python-reference")
    for rule, case in [("C-RECONNECT-CLOSE", ""), ("C-FALLBACK", ""), ("C-LATENCY", "C-LATENCY[polling]"),
                       ("C-POLL-LIMIT", ""), ("C-RECONNECT-SCHEDULE", "")]:
        assert estimated_seconds(rule, documented, case) > estimated_seconds(rule, fast, case), rule
