"""C-OUTCOME under SignalR delivery faults, judged on real runs of the Python reference client:
a client that reports a completion each time it arrives fails, and a client the faults never
reached gets INCONCLUSIVE naming what was not provoked, never PASS."""

from __future__ import annotations

from dataclasses import replace

import pytest

from contract_tests.client_profile import find_profile
from contract_tests.client_rules import check_outcome, check_outcome_generated
from contract_tests.session import ContractRun
from contract_tests.verdict import Outcome, Verdict

pytestmark = [pytest.mark.timeout(300)]


def outcome_with(mutant: str) -> Verdict:
    base = find_profile("python-reference-fast")
    run = ContractRun(replace(base, command=f"{base.command} --mutant {mutant}")).start()
    try:
        return check_outcome(run)
    finally:
        run.stop()


def test_a_completion_reported_twice_fails() -> None:
    verdict = outcome_with("reports-completion-twice")
    assert verdict.outcome is Outcome.FAIL, verdict.explain(all_evidence=True)
    # Every task whose terminal event reached it twice (duplicated, or by poll and SignalR).
    assert verdict.summary.count("2 terminal reports") == 4, verdict.summary
    assert verdict.observed["provoked"].value == 5


def test_a_client_the_held_terminal_never_reaches_is_inconclusive() -> None:
    # No resubscribe after the reconnect: the catch-up poll is answered, but the terminal event
    # released with it goes to a group the client is no longer in. Nothing it reported is wrong.
    verdict = outcome_with("no-resubscribe")
    assert verdict.outcome is Outcome.INCONCLUSIVE, verdict.explain(all_evidence=True)
    assert "reorder_events after poll" in verdict.summary
    assert "did not reach the client alongside the poll's answer" in verdict.summary
    assert verdict.observed["provoked"].value == 4


def test_outcome_ends_in_a_verdict_when_the_harness_cannot_run_it() -> None:
    # A run that was never started: every timeline errors in the harness. The rule still answers,
    # INCONCLUSIVE with the error, rather than raising.
    verdict = check_outcome_generated(ContractRun(find_profile("python-reference-fast")), examples=1)
    assert verdict.outcome is Outcome.INCONCLUSIVE, verdict.explain(all_evidence=True)
    assert "could not judge" in verdict.summary and "the simulator is not running" in verdict.summary
    verdict = check_outcome(ContractRun(find_profile("python-reference-fast")))
    assert verdict.outcome is Outcome.INCONCLUSIVE, verdict.explain(all_evidence=True)
    assert "could not judge" in verdict.summary
