"""``conduit-harness check``: run the contract suite against a client or a webhook receiver.

The suite is pytest underneath (one test per rule, IDs carrying the rule), so CI gets JUnit XML
for free; this module turns command-line options into a pytest run with the suite's own
settings and maps the result onto the harness's exit codes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contract_tests.client_profile import ClientProfile, ProfileError, find_profile
from contract_tests.node import NodeUnavailable

SUITE = Path(__file__).parent / "suite"

EXIT_OK, EXIT_VIOLATIONS, EXIT_USAGE = 0, 1, 2


def run_check(
    *,
    client: str | None = None,
    client_profile: str | None = None,
    profile: str | None = None,
    rules: str | None = None,
    junit: str | None = None,
    verdicts_json: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    max_rule_seconds: float | None = None,
    late_tolerance: float | None = None,
    early_tolerance_ms: float | None = None,
    extra: list[str] | None = None,
) -> int:
    if not (client or client_profile or webhook_url):
        raise ValueError("say what to check: --client CMD, --client-profile NAME|FILE, or --webhook-url URL")
    if webhook_url and not webhook_secret:
        raise ValueError("--webhook-url needs --webhook-secret (the secret the receiver verifies with)")
    command = client
    if client_profile:
        try:
            command = command or find_profile(client_profile).command
        except ProfileError as exc:
            raise ValueError(f"--client-profile {exc}") from exc
    if command:
        # Expanding the placeholders here installs the Node client's npm packages on first use,
        # where the line saying so is seen, and turns a missing Node.js into a usage error.
        try:
            ClientProfile(command=command, source="--client").command_argv()
        except (ProfileError, NodeUnavailable) as exc:
            raise ValueError(f"{command}: {exc}") from exc
    files: list[str] = []
    # -rs: every rule that did not run is listed with its reason (e.g. not applicable to a profile).
    args = ["-c", str(SUITE / "pytest.ini"), "--rootdir", str(SUITE), "-v", "-rs"]
    if client or client_profile:
        # A client declaring the webhook role is a receiver: the W-* module checks it.
        files += [str(SUITE / "test_client_rules.py"), str(SUITE / "test_receiver_rules.py")]
        if client:
            args += ["--client", client]
        if client_profile:
            args += ["--client-profile", client_profile]
    if webhook_url:
        if str(SUITE / "test_receiver_rules.py") not in files:
            files.append(str(SUITE / "test_receiver_rules.py"))
        args += ["--webhook-url", webhook_url, "--webhook-secret", webhook_secret or ""]
    args = files + args
    if profile:
        args += ["--profile", profile]
    if rules:
        args += ["--rules", rules]
    if junit:
        args += ["--junitxml", junit]
    if verdicts_json:
        args += ["--verdicts-json", verdicts_json]
    if max_rule_seconds is not None:
        args += ["--max-rule-seconds", str(max_rule_seconds)]
    if late_tolerance is not None:
        args += ["--late-tolerance", str(late_tolerance)]
    if early_tolerance_ms is not None:
        args += ["--early-tolerance-ms", str(early_tolerance_ms)]
    args += extra or []
    code = pytest.main(args)
    if code == pytest.ExitCode.OK:
        return EXIT_OK
    if code == pytest.ExitCode.TESTS_FAILED:
        return EXIT_VIOLATIONS
    return EXIT_USAGE
