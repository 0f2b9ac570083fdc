"""C-NO-LOST-TERMINAL is provoked for short and long reconnect schedules alike.

The mutant ``resubscribes-no-catchup`` subscribes again after an automatic reconnect but never
polls for what ended meanwhile (it catches up only after a manual restart). When the rule's
refusals outlasted a short schedule, the client came back by a manual restart and the rule read
PASS; planned from the declared delays, the client comes back by an automatic reconnect after the
task ended, and the mutant fails under the fast (0/300/800/1500 ms) and the documented
(0/2/10/30 s) schedules, while the references pass.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from contract_tests.client_profile import find_profile
from contract_tests.client_rules import check_no_lost_terminal
from contract_tests.session import ContractRun
from contract_tests.verdict import Outcome, Verdict

ROOT = Path(__file__).resolve().parents[2]
NODE_READY = (ROOT / "node_modules" / "@microsoft" / "signalr").exists()


def judge(profile_name: str, mutant: str | None = None) -> Verdict:
    profile = find_profile(profile_name)
    if mutant:
        profile = replace(profile, command=f"{profile.command} --mutant {mutant}")
    run = ContractRun(profile).start()
    try:
        return check_no_lost_terminal(run)
    finally:
        run.stop()


def assert_came_back_automatically(verdict: Verdict) -> None:
    """The provocation happened: the end while away, then an automatic return (the evidence)."""
    lines = [str(e) for e in verdict.evidence]
    ended = next(i for i, line in enumerate(lines) if "on the server" in line)
    back = next(i for i, line in enumerate(lines) if "was back" in line)
    assert ended < back, lines
    assert not any("manual restart" in line for line in lines), lines


@pytest.mark.timeout(120)
@pytest.mark.parametrize("language", [
    "python",
    pytest.param("node", marks=pytest.mark.skipif(not NODE_READY, reason="run `npm ci` first")),
])
def test_resubscribes_no_catchup_fails_under_a_short_schedule(language: str) -> None:
    verdict = judge(f"{language}-reference-fast", "resubscribes-no-catchup")
    assert verdict.outcome is Outcome.FAIL, verdict.explain()
    assert "never reported" in verdict.summary
    assert_came_back_automatically(verdict)


@pytest.mark.timeout(120)
def test_the_reference_passes_under_a_short_schedule() -> None:
    verdict = judge("python-reference-fast")
    assert verdict.outcome is Outcome.PASS, verdict.explain()
    assert "automatic reconnect" in str(verdict.observed)
    assert_came_back_automatically(verdict)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("mutant", "outcome"), [(None, Outcome.PASS),
                                                 ("resubscribes-no-catchup", Outcome.FAIL)])
def test_under_the_documented_schedule(mutant: str | None, outcome: Outcome) -> None:
    verdict = judge("python-reference", mutant)
    assert verdict.outcome is outcome, verdict.explain()
    assert_came_back_automatically(verdict)
