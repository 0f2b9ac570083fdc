"""What one step of ``conduit-harness demo`` concluded, read from the files the step wrote.

A release gate is only as good as its counting, so a step is judged from what ran, never from
exit codes or console text alone:

- a contract step from its ``verdicts.json`` (``Verdict.from_json``): a reference passes when it
  has verdicts and every one is PASS (INCONCLUSIVE and NOT_APPLICABLE are not a pass); a mutant is
  *caught* only when a verdict of its expected rule ran and is FAIL — the same test the report's
  mutation score uses (:attr:`reporting.Subject.killed`), so the console and the page agree;
- a load step from its ``summary.json``: every threshold was evaluated and holds.

A step that did not produce what it must (no file, an unreadable one, no verdict of the rule it
was run for, an exit code that says the tool itself failed) is a harness ERROR with its reason:
it is neither a pass nor a catch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from contract_tests.verdict import Outcome, Verdict

# ``check`` and ``load`` exit codes after which their files are to be judged: 0 everything held,
# 1 a rule or threshold failed, 3 a verdict INCONCLUSIVE (when ``check`` distinguishes it).
# Anything else (2: usage or harness error, negative: killed by a signal) means the tool failed.
JUDGED_EXIT_CODES = frozenset({0, 1, 3})


class Status(StrEnum):
    PASS = "PASS"  # a reference whose verdicts are all PASS; load thresholds that hold
    CAUGHT = "CAUGHT"  # a mutant whose expected rule ran and FAILED
    FAIL = "FAIL"  # a reference not all PASS; a mutant not caught; a threshold breached
    DONE = "DONE"  # a step that only gathers figures (the webhook session) and ran
    ERROR = "ERROR"  # the step did not run as it must: a harness error, with its reason


@dataclass(frozen=True)
class StepOutcome:
    status: Status
    text: str  # one line for people: what decided the status

    @property
    def ran(self) -> bool:
        return self.status is not Status.ERROR


def read_verdicts(path: Path) -> list[Verdict]:
    """The verdicts of a ``verdicts.json``; ValueError (saying why) when there is no such list."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no verdicts were written ({path.name} is missing)") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path.name} is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path.name} is not a list of verdicts")
    verdicts = []
    for index, raw in enumerate(data):
        try:
            verdicts.append(Verdict.from_json(raw))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path.name}: entry {index} is not a verdict ({exc})") from None
    if not verdicts:
        raise ValueError(f"{path.name} holds no verdict: no rule ran")
    return verdicts


def judge_check(verdicts_file: Path, *, expected_rule: str | None, exit_code: int | None,
                said: str = "") -> StepOutcome:
    """A contract step: a reference when ``expected_rule`` is None, else a mutant of that rule.

    ``exit_code`` is ``check``'s (None: it never finished); ``said`` is the end of its output,
    quoted when the step did not run.
    """
    from reporting import Subject

    why = f": {said}" if said else ""
    if exit_code is None or exit_code not in JUDGED_EXIT_CODES:
        code = "did not finish" if exit_code is None else f"exited {exit_code}"
        return StepOutcome(Status.ERROR, f"check {code}{why}")
    try:
        verdicts = read_verdicts(verdicts_file)
    except ValueError as exc:
        return StepOutcome(Status.ERROR, f"{exc}{why}")
    subject = Subject(name=verdicts_file.parent.name, mutant="mutant" if expected_rule else None,
                      expected_rule=expected_rule, verdicts=verdicts)
    not_passed = [v for v in verdicts if v.outcome is not Outcome.PASS]
    if exit_code != 0 and not not_passed:
        return StepOutcome(Status.ERROR, f"check exited {exit_code} though all {len(verdicts)} verdicts "
                                         f"are PASS: a rule ended without a verdict{why}")
    if expected_rule is None:
        if subject.passed:
            return StepOutcome(Status.PASS, f"{len(verdicts)} verdicts, all PASS")
        return StepOutcome(Status.FAIL, f"{len(verdicts) - len(not_passed)} of {len(verdicts)} verdicts "
                                        "PASS; " + ", ".join(f"{v.outcome} {v.label}" for v in not_passed))
    found = subject.verdicts_for(expected_rule)
    if not found:
        ran = ", ".join(sorted({v.rule for v in verdicts}))
        return StepOutcome(Status.ERROR, f"no verdict of {expected_rule} (verdicts of: {ran})")
    if subject.killed:
        failed = next(v for v in found if v.outcome is Outcome.FAIL)
        return StepOutcome(Status.CAUGHT, f"caught: {failed.label} FAIL — {failed.summary}")
    return StepOutcome(Status.FAIL, "NOT caught: " + "; ".join(f"{v.label} {v.outcome} — {v.summary}"
                                                                for v in found))


def judge_load(summary_file: Path, *, exit_code: int | None, said: str = "") -> StepOutcome:
    """A load step: its ``summary.json`` evaluated thresholds and every one holds."""
    why = f": {said}" if said else ""
    if exit_code is None or exit_code not in JUDGED_EXIT_CODES:
        code = "did not finish" if exit_code is None else f"exited {exit_code}"
        return StepOutcome(Status.ERROR, f"load {code}{why}")
    try:
        summary: Any = json.loads(summary_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return StepOutcome(Status.ERROR, f"no summary was written ({summary_file.name} is missing){why}")
    except (OSError, ValueError) as exc:
        return StepOutcome(Status.ERROR, f"cannot read {summary_file.name}: {exc}")
    thresholds = summary.get("thresholds") if isinstance(summary, dict) else None
    if not isinstance(thresholds, list) or not thresholds:
        return StepOutcome(Status.ERROR, f"{summary_file.name} evaluated no threshold")
    shown = [f"{t.get('expression')} {'holds' if t.get('ok') is True else 'BREACHED'} "
             f"(actual {t.get('actual_text', t.get('actual'))})" for t in thresholds]
    breached = [t for t in thresholds if t.get("ok") is not True]
    if exit_code != 0 and not breached:
        return StepOutcome(Status.ERROR, f"load exited {exit_code} though every threshold holds{why}")
    return StepOutcome(Status.FAIL if breached else Status.PASS, "; ".join(shown))
