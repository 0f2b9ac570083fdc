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
        yield url, request.config.getoption("--webhook-secret"), None
        return
    if not client_profile.command or "webhook" not in client_roles:
        pytest.skip("no webhook receiver under test (--webhook-url, or a client with the webhook role)")
    secret = "whsec_" + secrets.token_hex(16)
    process = ReceiverProcess(client_profile.command_argv(), secret=secret, env=client_profile.env).start()
    try:
        yield process.webhook_url, secret, process.observations
    finally:
        process.stop()


@pytest.fixture(scope="module")
def signed_dialect(client_profile):
    """The W-* rules send the guide's signed bodies; a dialect whose server signs nothing (and
    sends other bodies) gives them nothing to check: each is reported not applicable, with why."""
    from simulator.profiles import load_profile

    dialect = load_profile(client_profile.dialect)
    if dialect.webhook.signature is None:
        pytest.skip(f"not applicable to the {dialect.name} profile: its server sends unsigned "
                    f"{dialect.webhook.event_type_key} bodies, and these rules check the guide's "
                    "signed ones")


@pytest.mark.parametrize("rule", CASES)
def test_receiver_rule(rule, signed_dialect, receiver, record_verdict):
    url, secret, observations = receiver
    [verdict] = asyncio.run(check_receiver(url, secret, rules=[rule], observations=observations))
    record_verdict(verdict)
