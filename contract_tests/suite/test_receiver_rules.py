"""Every W-* rule against a webhook receiver: one at ``--webhook-url``, or the client under test
when its ``ready`` line declares the ``webhook`` role (the suite then starts it with a secret)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from contract_tests.receivers import ReceiverProcess
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


@pytest.mark.parametrize("rule", CASES)
def test_receiver_rule(rule, receiver, contract_seed, record_verdict):
    url, secret, observations, process = receiver
    [verdict] = asyncio.run(check_receiver(url, secret, rules=[rule], observations=observations,
                                           seed=contract_seed))
    record_verdict(verdict, process.stderr_text() if process is not None else "")
