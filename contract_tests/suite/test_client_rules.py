"""Every C-* rule against the client under test (``--client`` / ``--client-profile``)."""

from __future__ import annotations

import pytest

from contract_tests.client_rules import CHECKS, estimated_seconds
from contract_tests.session import ContractRun

CASES = [
    pytest.param(rule, check, kwargs, id=f"{rule}[{variant}]", marks=pytest.mark.rule(rule))
    for rule, variants in CHECKS.items()
    for variant, check, kwargs in variants
]


@pytest.mark.parametrize(("rule", "check", "kwargs"), CASES)
def test_client_rule(rule, check, kwargs, client_profile, client_roles, contract_tolerance, record_verdict,
                     request):
    if not client_profile.command:
        pytest.skip("no client under test: pass --client CMD (or a profile with a command)")
    if not client_roles & {"signalr", "polling"}:
        pytest.skip(f"the client declares roles {sorted(client_roles)}: no C-* rule applies")
    limit = request.config.getoption("--max-rule-seconds")
    needed = estimated_seconds(rule, client_profile)
    if needed > limit:
        pytest.skip(f"{rule} would wait about {needed:.0f} s with this profile's numbers "
                    f"(over --max-rule-seconds {limit:.0f}); shrink them with the client's knobs")
    run = ContractRun(client_profile, contract_tolerance).start()
    try:
        verdict = check(run, **kwargs)
        assert not run.client.protocol_errors, run.client.protocol_errors
    finally:
        run.stop()
    record_verdict(verdict)
