"""The demo's counting: a mutant is caught only by a verdict of its rule that ran and FAILED, a
reference passes only when all its verdicts are PASS, and a step without readable verdicts is a
harness error — judged from crafted ``verdicts.json`` / ``summary.json`` files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract_tests.verdict import Outcome, Verdict
from harness.step_outcome import Status, judge_check, judge_load


def write_verdicts(tmp_path: Path, *verdicts: Verdict | dict) -> Path:
    path = tmp_path / "subject" / "verdicts.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([v.to_json() if isinstance(v, Verdict) else v for v in verdicts]))
    return path


def verdict(rule: str, outcome: Outcome, label: str = "") -> Verdict:
    return Verdict(rule, outcome, f"{rule} was {outcome}", label=label)


# -- references --------------------------------------------------------------------------------
def test_a_reference_whose_verdicts_all_pass_passes(tmp_path: Path) -> None:
    path = write_verdicts(tmp_path, verdict("C-AUTH", Outcome.PASS), verdict("C-POOL", Outcome.PASS))
    outcome = judge_check(path, expected_rule=None, exit_code=0)
    assert outcome.status is Status.PASS
    assert "2 verdicts" in outcome.text


@pytest.mark.parametrize("other", [Outcome.INCONCLUSIVE, Outcome.FAIL, Outcome.NOT_APPLICABLE])
def test_a_reference_with_any_verdict_other_than_pass_does_not_pass(tmp_path: Path, other: Outcome) -> None:
    path = write_verdicts(tmp_path, verdict("C-AUTH", Outcome.PASS),
                          verdict("C-RETRY-AFTER", other, label="C-RETRY-AFTER[429]"))
    outcome = judge_check(path, expected_rule=None, exit_code=1)
    assert outcome.status is Status.FAIL
    assert f"{other} C-RETRY-AFTER[429]" in outcome.text


def test_a_reference_that_exited_with_a_failure_but_only_passing_verdicts_is_a_harness_error(
        tmp_path: Path) -> None:
    """A rule that errored before recording its verdict leaves only PASS in the file."""
    path = write_verdicts(tmp_path, verdict("C-AUTH", Outcome.PASS))
    outcome = judge_check(path, expected_rule=None, exit_code=1)
    assert outcome.status is Status.ERROR
    assert "without a verdict" in outcome.text


# -- mutants -----------------------------------------------------------------------------------
def test_a_mutant_is_caught_by_a_failing_verdict_of_its_rule(tmp_path: Path) -> None:
    path = write_verdicts(tmp_path, verdict("C-RETRY-AFTER", Outcome.PASS, "C-RETRY-AFTER[429]"),
                          verdict("C-RETRY-AFTER", Outcome.FAIL, "C-RETRY-AFTER[503]"))
    outcome = judge_check(path, expected_rule="C-RETRY-AFTER", exit_code=1)
    assert outcome.status is Status.CAUGHT
    assert "C-RETRY-AFTER[503] FAIL" in outcome.text


def test_a_verdict_of_the_first_format_counts_too(tmp_path: Path) -> None:
    path = write_verdicts(tmp_path, {"rule": "C-POOL", "passed": False, "summary": "2 connections"})
    assert judge_check(path, expected_rule="C-POOL", exit_code=1).status is Status.CAUGHT


def test_a_mutant_failing_another_rule_is_not_caught(tmp_path: Path) -> None:
    path = write_verdicts(tmp_path, verdict("C-POOL", Outcome.PASS), verdict("C-AUTH", Outcome.FAIL))
    outcome = judge_check(path, expected_rule="C-POOL", exit_code=1)
    assert outcome.status is Status.FAIL
    assert outcome.text.startswith("NOT caught: C-POOL PASS")


def test_an_inconclusive_verdict_of_the_rule_does_not_catch(tmp_path: Path) -> None:
    path = write_verdicts(tmp_path, verdict("C-NO-LOST-TERMINAL", Outcome.INCONCLUSIVE))
    for code in (0, 1, 3):  # whatever code ``check`` gives INCONCLUSIVE, the verdict decides
        outcome = judge_check(path, expected_rule="C-NO-LOST-TERMINAL", exit_code=code)
        assert outcome.status is Status.FAIL
        assert "NOT caught" in outcome.text and "INCONCLUSIVE" in outcome.text


def test_no_verdict_of_the_expected_rule_is_a_harness_error(tmp_path: Path) -> None:
    path = write_verdicts(tmp_path, verdict("C-AUTH", Outcome.FAIL))
    outcome = judge_check(path, expected_rule="C-POOL", exit_code=1)
    assert outcome.status is Status.ERROR
    assert "no verdict of C-POOL" in outcome.text and "C-AUTH" in outcome.text


# -- steps that did not run --------------------------------------------------------------------
@pytest.mark.parametrize("expected_rule", [None, "C-POOL"])
def test_a_missing_verdicts_file_is_a_harness_error(tmp_path: Path, expected_rule: str | None) -> None:
    outcome = judge_check(tmp_path / "verdicts.json", expected_rule=expected_rule, exit_code=1,
                          said="ERROR: client exited at once")
    assert outcome.status is Status.ERROR and not outcome.ran
    assert "verdicts.json is missing" in outcome.text and "client exited at once" in outcome.text


@pytest.mark.parametrize("content", ["[]", "{not json", '{"rule": "C-POOL"}', '[42]'])
def test_an_empty_or_unreadable_verdicts_file_is_a_harness_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "verdicts.json"
    path.write_text(content)
    assert judge_check(path, expected_rule="C-POOL", exit_code=1).status is Status.ERROR


@pytest.mark.parametrize("code", [None, 2, -9, 4])
def test_a_check_that_failed_itself_is_a_harness_error_whatever_its_file_says(
        tmp_path: Path, code: int | None) -> None:
    path = write_verdicts(tmp_path, verdict("C-POOL", Outcome.FAIL))
    outcome = judge_check(path, expected_rule="C-POOL", exit_code=code, said="usage: ...")
    assert outcome.status is Status.ERROR
    assert "usage: ..." in outcome.text


# -- load --------------------------------------------------------------------------------------
def write_summary(tmp_path: Path, *thresholds: dict) -> Path:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"verdict": "pass", "thresholds": list(thresholds)}))
    return path


def test_load_thresholds_that_hold_pass(tmp_path: Path) -> None:
    path = write_summary(tmp_path, {"expression": "failures<1%", "ok": True, "actual_text": "0%"})
    outcome = judge_load(path, exit_code=0)
    assert outcome.status is Status.PASS and "failures<1% holds (actual 0%)" in outcome.text


def test_a_breached_threshold_fails(tmp_path: Path) -> None:
    path = write_summary(tmp_path, {"expression": "failures<1%", "ok": True},
                         {"expression": "signalr.latency.p95<100ms", "ok": False, "actual_text": "140 ms"})
    outcome = judge_load(path, exit_code=1)
    assert outcome.status is Status.FAIL and "BREACHED (actual 140 ms)" in outcome.text


def test_a_load_run_without_summary_or_thresholds_did_not_run(tmp_path: Path) -> None:
    assert judge_load(tmp_path / "summary.json", exit_code=1).status is Status.ERROR
    assert judge_load(write_summary(tmp_path), exit_code=0).status is Status.ERROR
    ok = write_summary(tmp_path, {"expression": "failures<1%", "ok": True})
    assert judge_load(ok, exit_code=2, said="Locust exited with 1").status is Status.ERROR
