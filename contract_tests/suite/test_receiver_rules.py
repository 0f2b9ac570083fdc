"""Every W-* rule against a webhook receiver: one at ``--webhook-url``, or the client under test
when its ``ready`` line declares the ``webhook`` role (the suite then starts it with a secret)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from contract_tests.receivers import ReceiverProcess
from contract_tests.verdict import Outcome, Verdict
from contract_tests.webhook_rules import RULE_IDS, check_receiver

CASES = [pytest.param(rule, id=rule, marks=pytest.mark.rule(rule)) for rule in RULE_IDS]


@pytest.fixture(scope="module")
def receiver(request, client_profile, client_roles):
    url = request.config.getoption("--webhook-url")
    if url:
        yield url, request.config.getoption("--webhook-secret"), None, None
        return
    if not client_profile.command or "webhook" not in client_roles:
        pytest.skip("no webhook receiver under test (--webhook-url, or a client with the webhook role)")
    secret = "whsec_" + secrets.token_hex(16)
    process = ReceiverProcess(client_profile.command_argv(), secret=secret, env=client_profile.env).start()
    try:
        yield process.webhook_url, secret, process.observations, process
    finally:
        process.stop()


def unsigned_reason(dialect_name: str) -> str | None:
    """Why the W-* rules have no meaning in this dialect, or None: they send the guide's signed
    bodies, and a dialect whose server signs nothing (and sends other bodies) gives them nothing
    to check."""
    from simulator.profiles import load_profile

    dialect = load_profile(dialect_name)
    if dialect.webhook.signature is not None:
        return None
    return (f"not applicable to the {dialect.name} profile: its server sends unsigned "
            f"{dialect.webhook.event_type_key} bodies, and this rule checks the guide's signed ones")


@pytest.mark.parametrize("rule", CASES)
def test_receiver_rule(rule, client_profile, client_roles, contract_seed, record_verdict, request):
    under_test = request.config.getoption("--webhook-url") or (
        client_profile.command and "webhook" in client_roles)
    reason = unsigned_reason(client_profile.dialect) if under_test else None
    if reason is not None:  # a verdict of its own, with the reason: never a silent skip
        record_verdict(Verdict(rule, Outcome.NOT_APPLICABLE, reason))
        return
    url, secret, observations, process = request.getfixturevalue("receiver")
    [verdict] = asyncio.run(check_receiver(url, secret, rules=[rule], observations=observations,
                                           seed=contract_seed))
    record_verdict(verdict, process.stderr_text() if process is not None else "")
