"""The suite catches every receiver mutant of docs/reference-clients.md, in Python and in Node.

Each mutant runs through every W-* rule and must fail its documented rule - and only the rules
that follow from its bug (EXPECTED_FAILURES), so a check that fails for the wrong reason shows up.
"""

from __future__ import annotations

import pytest

from contract_tests.receivers import RECEIVER_MUTANTS
from contract_tests.verdict import Outcome
from contract_tests.webhook_rules import check_receiver
from tests.receivers import CRASHING_MUTANTS, EXPECTED_FAILURES, EXPECTED_INCONCLUSIVE, LANGUAGES, receiver

# slow-ack answers every accepted delivery after 6 s: only the rules that send few of them.
SLOW_ACK_RULES = ["W-METHOD", "W-FAST-ACK"]


def test_the_table_matches_the_document() -> None:
    assert set(EXPECTED_FAILURES) == set(RECEIVER_MUTANTS)
    for mutant, rule in RECEIVER_MUTANTS.items():
        assert rule in EXPECTED_FAILURES[mutant]
        assert not EXPECTED_FAILURES[mutant] & EXPECTED_INCONCLUSIVE.get(mutant, set())


@pytest.mark.parametrize("mutant", list(RECEIVER_MUTANTS))
@pytest.mark.parametrize("language", LANGUAGES)
async def test_mutant_fails_its_rule(language: str, mutant: str) -> None:
    rules = SLOW_ACK_RULES if mutant == "slow-ack" else None
    with receiver(language, mutant) as process:
        verdicts = await check_receiver(process.webhook_url, process.secret, rules=rules,
                                        observations=process.observations, max_examples=10)
    failed = {v.rule for v in verdicts if v.outcome is Outcome.FAIL}
    inconclusive = {v.rule for v in verdicts if v.outcome is Outcome.INCONCLUSIVE}
    reports = "\n".join(v.explain(limit=3) for v in verdicts)
    assert RECEIVER_MUTANTS[mutant] in failed, reports
    ran = {v.rule for v in verdicts}
    expected = EXPECTED_FAILURES[mutant] & ran
    assert failed == expected, reports
    assert inconclusive == EXPECTED_INCONCLUSIVE.get(mutant, set()) & ran, reports
    assert not process.stderr_text() or mutant in CRASHING_MUTANTS, process.stderr_text()
