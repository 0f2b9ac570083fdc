"""Every C-* rule against the client under test (``--client`` / ``--client-profile``), after a
pre-flight that checks the client connects at all."""

from __future__ import annotations

import pytest

from contract_tests.client_rules import CHECKS, estimated_seconds
from contract_tests.driver import DriverError
from contract_tests.session import ContractRun
from contract_tests.suite.catalogue import case_label
from contract_tests.suite.preflight import run_preflight
from contract_tests.suite.stalls import (
    FIRST_RUNS,
    RUN_AGAIN,
    SIDE_BY_SIDE,
    first_run_note,
    stall_threshold,
    stalled_verdict,
    with_stalls,
)
from contract_tests.verdict import Evidence, Outcome, Statement, Verdict

CASES = [
    pytest.param(rule, check, kwargs, id=case_label(rule, variant, len(variants)),
                 marks=[pytest.mark.rule(rule), pytest.mark.independent])
    for rule, variants in CHECKS.items()
    for variant, check, kwargs in variants
]


def _needs_client(client_profile, client_roles) -> None:
    if not client_profile.command:
        pytest.skip("no client under test: pass --client CMD (or a profile with a command)")
    if not client_roles & {"signalr", "polling"}:
        pytest.skip(f"the client declares roles {sorted(client_roles)}: no C-* rule applies")


@pytest.mark.preflight
def test_preflight(client_profile, client_roles, contract_tolerance, contract_seed, record_verdict, request):
    """Runs first; when the client cannot connect, says why once and stops the run."""
    _needs_client(client_profile, client_roles)
    verdict, stderr_tail = run_preflight(client_profile, contract_tolerance, contract_seed, client_roles)
    if verdict.outcome is not Outcome.PASS:
        request.session.shouldstop = "the pre-flight failed: no rule can be judged (see its cause)"
    record_verdict(verdict, stderr_tail)


@pytest.mark.parametrize(("rule", "check", "kwargs"), CASES)
def test_client_rule(rule, check, kwargs, client_profile, client_roles, contract_tolerance, contract_seed,
                     client_crash, record_verdict, request):
    _needs_client(client_profile, client_roles)
    label = request.node.callspec.id
    if client_crash:
        record_verdict(Verdict(rule, Outcome.INCONCLUSIVE, f"not judged: {client_crash[0]}", label=label))
    limit = request.config.getoption("--max-rule-seconds")
    needed = estimated_seconds(rule, client_profile, label)
    if needed > limit:
        pytest.skip(f"{rule} would wait about {needed:.0f} s with this profile's numbers "
                    f"(over --max-rule-seconds {limit:.0f}); shrink them with the client's knobs")
    # A FAIL or INCONCLUSIVE while the simulator itself stalled is judged again on a run of its
    # own (stalls.py).
    stall_limit = request.config.getoption("--max-stall-ms")
    first_run = request.config.stash.get(FIRST_RUNS, {}).get(request.node.nodeid)
    verdict, stall, run = _judge(rule, check, kwargs, label, client_profile, contract_tolerance,
                                 contract_seed, client_crash, stall_limit)
    if first_run is None and stalled_verdict(verdict, stall, stall_limit):
        beside = request.config.stash.get(SIDE_BY_SIDE, False)
        note = first_run_note(verdict, stall, stall_limit, beside)
        if beside:  # the pytest process runs it again once no other case runs (scheduling.py)
            request.node.stash[RUN_AGAIN] = note
        else:
            first_run = note
            verdict, stall, run = _judge(rule, check, kwargs, label, client_profile, contract_tolerance,
                                         contract_seed, client_crash, stall_limit)
    record_verdict(with_stalls(verdict, stall, stall_limit, first_run),
                   run.client.stderr_tail if run.client else "")


def _judge(rule, check, kwargs, label, client_profile, contract_tolerance, contract_seed,
           client_crash, stall_limit) -> tuple[Verdict, float, ContractRun]:
    """One run of one case: its verdict, how long the simulator stalled meanwhile, and the run."""
    run = ContractRun(client_profile, contract_tolerance, seed=contract_seed,
                      stall_threshold=stall_threshold(stall_limit))
    stall = 0.0
    try:
        run.start()
        verdict = check(run, **kwargs)
        if run.client.protocol_errors:
            verdict = Verdict(rule, Outcome.FAIL, "the client broke the driver protocol",
                              evidence=tuple(Evidence(e, ok=False) for e in run.client.protocol_errors),
                              label=label)
        stall = run.max_stall_ms()
    except DriverError as exc:
        # The client died (or never got ready) under this rule: a failure of this rule, and the
        # rules after it say so instead of starting a client that dies.
        how = run.client.exit_cause() if run.client else "could not start"
        verdict = Verdict(rule, Outcome.FAIL, f"{exc} (during {label})", label=label,
                          observed=Statement(f"the client {how}"))
        client_crash.append(f"the client {how} during {label}")
    finally:
        run.stop()
    return verdict, stall, run
