"""The harness's own promise, measured: every mutant fails its rule, every reference passes.

``conduit-harness selftest`` runs the rule each client mutant breaks against that mutant (a
mutant is *killed* when the rule fails), the whole C-* suite against each reference client, and
prints the mutation score. Receiver mutants are checked the same way with the W-* rules.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from contract_tests.client_profile import find_profile
from contract_tests.client_rules import CHECKS
from contract_tests.mutants import CLIENT_MUTANTS, CLIENT_NUMBERS, RECEIVER_MUTANTS, REFERENCE_CLIENTS
from contract_tests.node import NodeUnavailable, node_client_script
from contract_tests.session import ContractRun
from contract_tests.verdict import Outcome as Judged
from contract_tests.verdict import Verdict


@dataclass
class Outcome:
    subject: str  # e.g. "python/no-backoff" or "node (reference)"
    rule: str
    expected_pass: bool
    verdicts: list[Verdict] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Every verdict that ran holds (or does not concern the subject); none ran is no pass."""
        return self.error is None and bool(self.verdicts) and all(
            v.outcome in (Judged.PASS, Judged.NOT_APPLICABLE) for v in self.verdicts)

    @property
    def killed(self) -> bool:
        """A mutant is killed only by a verdict of its own rule that ran and FAILED: an
        INCONCLUSIVE verdict, an error or another rule's failure proves nothing about the rule."""
        return self.error is None and any(
            v.rule == self.rule and v.outcome is Judged.FAIL for v in self.verdicts)

    @property
    def as_expected(self) -> bool:
        if self.error is not None:
            return False
        return self.passed if self.expected_pass else self.killed


def _run_rule(profile, rule: str) -> list[Verdict]:
    verdicts = []
    for _variant, check, kwargs in CHECKS[rule]:
        run = ContractRun(profile).start()
        try:
            verdicts.append(check(run, **kwargs))
        finally:
            run.stop()
    return verdicts


def _run_receiver(language: str, mutant: str | None, rules: list[str]) -> list[Verdict]:
    import asyncio
    import secrets

    from contract_tests.receivers import RECEIVER_COMMANDS, ReceiverProcess
    from contract_tests.webhook_rules import check_receiver

    secret = "whsec_" + secrets.token_hex(16)
    process = ReceiverProcess(RECEIVER_COMMANDS[language](mutant), secret=secret).start()
    try:
        found = asyncio.run(check_receiver(process.webhook_url, secret, rules=rules,
                                           observations=process.observations))
    finally:
        process.stop()
    return found


def _attempt(outcome: Outcome, run: Callable[[], list[Verdict]], say: Callable[[str], None]) -> Outcome:
    started = time.monotonic()
    try:
        outcome.verdicts = run()
    except Exception as exc:  # a harness error is a result too, not a crash
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.seconds = time.monotonic() - started
    mark = "ok " if outcome.as_expected else "BAD"
    what = ("passes" if outcome.passed else "fails") if outcome.error is None else "error"
    say(f"{mark} {outcome.subject:<38} {outcome.rule:<22} {what:<7} {outcome.seconds:5.1f} s"
        + (f"  {outcome.error}" if outcome.error else "")
        + ("" if outcome.as_expected or outcome.error else
           "  " + "; ".join(f"{v.rule}: {v.summary}" for v in outcome.verdicts if not v.passed)))
    return outcome


def run_receiver_selftest(languages: Iterable[str] = ("python", "node"), mutants: str = "*",
                          references: bool = True, say: Callable[[str], None] = print) -> list[Outcome]:
    from contract_tests.webhook_rules import RULE_IDS

    outcomes = []
    for language in languages:
        if references:
            outcomes.append(_attempt(Outcome(f"{language} receiver (reference)", "W-*", True),
                                     lambda lang=language: _run_receiver(lang, None, list(RULE_IDS)), say))
        for mutant, rule in RECEIVER_MUTANTS.items():
            if fnmatch.fnmatchcase(mutant, mutants):
                outcomes.append(_attempt(Outcome(f"{language} receiver/{mutant}", rule, False),
                                         lambda lang=language, m=mutant, r=rule: _run_receiver(lang, m, [r]),
                                         say))
    return outcomes


def run_selftest(
    clients: Iterable[str] = REFERENCE_CLIENTS,
    mutants: str = "*",
    references: bool = True,
    say: Callable[[str], None] = print,
    receivers: bool = True,
    dialect: str | None = None,
    numbers: Iterable[str] = tuple(CLIENT_NUMBERS),
) -> list[Outcome]:
    """``dialect`` runs the client rules in a simulator profile's dialect (default: each client
    profile's own). The W-* rules check the guide's signed webhooks, so an unsigned dialect
    leaves the receivers out, and says so. ``numbers`` names the declared numbers every mutant
    (and reference) runs under (:data:`CLIENT_NUMBERS`): by default both the fast ones and the
    guide's, so a rule whose provocation only works for short schedules shows up as a survivor."""
    outcomes: list[Outcome] = []
    if dialect is not None and receivers:
        from simulator.profiles import load_profile as load_server_profile

        if load_server_profile(dialect).webhook.signature is None:
            say(f"receivers: not applicable to the {dialect} profile (its webhooks are unsigned)")
            receivers = False
    clients = list(clients)
    if "node" in clients:
        try:
            node_client_script(say)  # installs its npm packages on first use, saying so
        except NodeUnavailable as exc:
            say(f"skipped: the Node reference client, receiver and their mutants ({exc})")
            clients.remove("node")
    numbers = list(numbers)
    subjects: list[tuple[str, str, object, bool]] = []
    for client in clients:
        for name in numbers:
            base = find_profile(CLIENT_NUMBERS[name][client])
            if dialect is not None:
                base = replace(base, dialect=dialect)
            tag = "" if len(numbers) == 1 else f" [{name}]"
            if references:
                subjects += [(f"{client} (reference){tag}", rule, base, True) for rule in CHECKS]
            for mutant, rule in CLIENT_MUTANTS.items():
                if fnmatch.fnmatchcase(mutant, mutants):
                    profile = replace(base, command=f"{base.command} --mutant {mutant}")
                    subjects.append((f"{client}/{mutant}{tag}", rule, profile, False))
    for subject, rule, profile, expected_pass in subjects:
        outcomes.append(_attempt(Outcome(subject, rule, expected_pass),
                                 lambda p=profile, r=rule: _run_rule(p, r), say))
    if receivers:
        outcomes += run_receiver_selftest(clients, mutants, references, say)
    say(summary(outcomes))
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    mutants = [o for o in outcomes if not o.expected_pass]
    killed = sum(1 for o in mutants if o.as_expected)
    refs = [o for o in outcomes if o.expected_pass]
    ref_ok = sum(1 for o in refs if o.as_expected)
    lines = [f"mutation score: {killed}/{len(mutants)} mutants killed"
             + (f" ({killed / len(mutants):.0%})" if mutants else "")]
    if refs:
        lines.append(f"reference clients: {ref_ok}/{len(refs)} rule checks passed")
    survivors = [o.subject for o in mutants if not o.as_expected]
    if survivors:
        lines.append("survivors: " + ", ".join(survivors))
    return "\n".join(lines)
