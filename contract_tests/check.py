"""``conduit-harness check``: run the contract suite against a client or a webhook receiver.

The suite is pytest underneath (one test per rule case, named by its label), so CI gets JUnit XML
for free; this module turns command-line options into a pytest run with the suite's own
settings. Everything that can be found wrong before a rule runs is found here and raised as
:class:`ValueError` (the CLI prints it on one line and exits 2): no subject, a bad profile, a
command that does not parse (an unbalanced quote) or needs a missing Node.js, ``--rules`` naming
no rule, and a client that cannot start or sends no ``ready`` line.

Rules run side by side, ``jobs`` at a time (default :func:`~contract_tests.suite.scheduling.default_jobs`,
4 per core), each in a child forked from the pytest process after the pre-flight; ``jobs=1`` runs
them one after another in that process. The verdicts, their order and the exit code are the same,
but for a client that crashes: the rules already running beside the one it crashed under are
judged on their own (a serial run marks every later rule INCONCLUSIVE; later children do too).

Exit codes (decided by the suite's plugin from the verdicts, see
:data:`contract_tests.suite.plugin.EXIT_CODES`): 0 every judged rule passed, 1 a rule failed,
2 usage or harness error, 3 no failure but a rule was INCONCLUSIVE.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contract_tests.client_profile import ClientProfile, ProfileError, find_profile
from contract_tests.driver import ClientUnderTest, DriverError
from contract_tests.node import NodeUnavailable
from contract_tests.suite.catalogue import (
    catalogue,
    known_names,
    known_rules,
    selects,
    split_patterns,
    unknown_patterns,
)
from contract_tests.suite.plugin import EXIT_CODES, EXIT_HARNESS
from contract_tests.suite.scheduling import default_jobs

SUITE = Path(__file__).parent / "suite"


def list_rules() -> str:
    """The catalogue, as ``check --list-rules`` prints it."""
    entries = catalogue()
    width = max(len(e.rule) for e in entries)
    return "\n".join(entry.line(width) for entry in entries)


def selected_cases(rules: str | None) -> list[str]:
    """The labels of the cases ``--rules`` picks (all of them without it): no more workers than
    cases."""
    patterns = split_patterns(rules)
    return [label for entry in catalogue() for label in entry.labels
            if not patterns or any(selects(p, entry.rule, label) for p in patterns)]


def _client_argv(command: str, source: str, profile: ClientProfile | None) -> list[str]:
    base = profile or ClientProfile()
    try:
        return ClientProfile(**{**base.__dict__, "command": command, "source": source}).command_argv()
    except (ProfileError, NodeUnavailable) as exc:
        raise ValueError(f"{source} {command!r}: {exc}") from exc
    except ValueError as exc:  # shlex: "No closing quotation", "No escaped character"
        raise ValueError(f"{source} {command!r} does not parse as a command line: {exc}") from exc


def _probe(argv: list[str], profile: ClientProfile | None) -> list[str]:
    """Start the client once, as the suite would, to see it get ready; one line when it cannot
    (not found, exits first, no ready line within the deadline). The roles its ready line
    declares, which the suite then need not ask again."""
    client = ClientUnderTest(argv, {
        "CONDUIT_BASE_URL": "http://127.0.0.1:9", "CONDUIT_VIRTUAL_KEY": "vk_startprobe",
        "CONDUIT_WEBHOOK_SECRET": "whsec_startprobe", "CONDUIT_WEBHOOK_PORT": "0",
        **(profile.env if profile else {})})
    try:
        ready = client.start()
    except DriverError as exc:
        raise ValueError(str(exc)) from None
    finally:
        client.stop()
    roles = ready.get("roles")
    return [str(r) for r in roles] if isinstance(roles, list) else []


def run_check(
    *,
    client: str | None = None,
    client_profile: str | None = None,
    profile: str | None = None,
    rules: str | None = None,
    seed: int | None = None,
    junit: str | None = None,
    verdicts_json: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    max_rule_seconds: float | None = None,
    late_tolerance: float | None = None,
    early_tolerance_ms: float | None = None,
    verbose: int = 0,
    jobs: int | None = None,
    max_stall_ms: float | None = None,
    extra: list[str] | None = None,
) -> int:
    """Run the suite; ``jobs`` rules at once (default :func:`default_jobs`; 1 runs them one after
    another in this process, as before ``--jobs`` existed)."""
    if not (client or client_profile or webhook_url):
        raise ValueError("say what to check: --client CMD, --client-profile NAME|FILE, or --webhook-url URL")
    if webhook_url and not webhook_secret:
        raise ValueError("--webhook-url needs --webhook-secret (the secret the receiver verifies with)")
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs {jobs}: run at least one rule at a time")
    unknown = unknown_patterns(split_patterns(rules), known_names())
    if unknown:
        raise ValueError(f"--rules {','.join(unknown)} matches no rule; known: {', '.join(known_rules())} "
                         "(see check --list-rules)")
    declared = None  # the client profile's numbers (``profile`` is the dialect)
    if client_profile:
        try:
            declared = find_profile(client_profile)
        except ProfileError as exc:
            raise ValueError(f"--client-profile {exc}") from exc
    command = client or (declared.command if declared else None)
    if command:
        # Expanding the placeholders here installs the Node client's npm packages on first use,
        # where the line saying so is seen, and turns a missing Node.js into a usage error.
        argv = _client_argv(command, "--client" if client else f"--client-profile {client_profile}: command",
                            declared)
        roles = _probe(argv, declared)
    else:
        roles = None
    files: list[str] = []
    args = ["-c", str(SUITE / "pytest.ini"), "--rootdir", str(SUITE)]
    # Quiet by default: the plugin prints the verdicts (and every rule that did not run, with its
    # reason); -v brings back pytest's own reporting, -rs listing skipped rules too.
    args += ["-p", "no:terminal"] if verbose <= 0 else ["-" + "v" * verbose, "--tb=short", "-rs"]
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
    if roles is not None:
        args += ["--client-roles", ",".join(roles)]
    if seed is not None:
        args += ["--seed", str(seed)]
    if junit:
        args += ["--junitxml", junit]
    if verdicts_json:
        args += ["--verdicts-json", verdicts_json]
    jobs = min(default_jobs() if jobs is None else jobs, len(selected_cases(rules)))
    if jobs > 1:
        # Side by side in forked children, longest rule first (contract_tests.suite.scheduling).
        args += ["--jobs", str(jobs)]
    if max_rule_seconds is not None:
        args += ["--max-rule-seconds", str(max_rule_seconds)]
    if late_tolerance is not None:
        args += ["--late-tolerance", str(late_tolerance)]
    if early_tolerance_ms is not None:
        args += ["--early-tolerance-ms", str(early_tolerance_ms)]
    if max_stall_ms is not None:
        args += ["--max-stall-ms", str(max_stall_ms)]
    args += extra or []
    final = _FinalCode()
    code = int(pytest.main(args, plugins=[final]))
    # The suite's plugin maps every session it finished onto EXIT_CODES; a run that never got
    # that far (pytest's own usage or internal errors, whose codes overlap ours) is a harness error.
    return final.code if final.code in EXIT_CODES and code in EXIT_CODES else EXIT_HARNESS


class _FinalCode:
    """Notes the exit status once every ``pytest_sessionfinish`` (the suite's included) has run."""

    code: int | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> object:
        result = yield
        self.code = int(session.exitstatus)
        return result
