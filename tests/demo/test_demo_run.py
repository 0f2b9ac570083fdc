"""The demo's schedule, progress lines and closing counts, with steps that need no simulator:
every count comes from the steps' outcomes, a step that raised or never produced verdicts is a
harness error (exit 2), and no PASS or caught banner stands for a step that did not run."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from harness.demo import Demo, Progress, Step, exit_code, summary_lines
from harness.step_outcome import Status, StepOutcome, judge_check


def step(name: str, status: Status | None, *, mutant: bool = False, reference: bool = False,
         seconds: float = 0.0, raises: bool = False) -> Step:
    def run() -> StepOutcome:
        time.sleep(seconds)
        if raises:
            raise RuntimeError("the simulator did not start")
        assert status is not None
        return StepOutcome(status, f"{name} said {status}")

    subject = {"name": name, "mutant": "m" if mutant else None} if (mutant or reference) else None
    return Step(name, "test step", seconds, run, subject)


def run_steps(steps: list[Step], tmp_path: Path, jobs: int = 2) -> list[str]:
    lines: list[str] = []
    Demo(tmp_path, 5, lines.append, jobs=jobs).execute(steps, Progress(lines.append))
    return lines


def test_every_step_says_when_it_starts_and_ends_and_what_is_still_running(tmp_path: Path) -> None:
    steps = [step("long", Status.PASS, reference=True, seconds=0.4),
             step("short", Status.CAUGHT, mutant=True, seconds=0.05)]
    lines = run_steps(steps, tmp_path)
    assert re.match(r"\[\s*0\.\d s\] start long: test step", lines[0])
    assert any(re.search(r"end   short: CAUGHT short said CAUGHT \(0\.\d s\) — running: long \(0 s\)", line)
               for line in lines), lines
    assert lines[-1].endswith("— running: nothing")
    assert [s.outcome.status for s in steps if s.outcome] == [Status.PASS, Status.CAUGHT]


def test_no_more_than_jobs_steps_run_at_once(tmp_path: Path) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def run() -> StepOutcome:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return StepOutcome(Status.DONE, "ok")

    run_steps([Step(f"s{i}", "", 1, run) for i in range(6)], tmp_path, jobs=2)
    assert most == 2


def test_a_step_that_raises_is_a_harness_error_and_the_demo_exits_2(tmp_path: Path) -> None:
    steps = [step("python-reference", Status.PASS, reference=True),
             step("python-reference/no-backoff", None, mutant=True, raises=True),
             step("python-reference/no-resubscribe", Status.CAUGHT, mutant=True)]
    run_steps(steps, tmp_path)
    lines = summary_lines(steps)
    assert "mutants caught: 1/2 (1 did not run)" in lines
    assert ("harness error: python-reference/no-backoff did not run: RuntimeError: the simulator did not "
            "start") in lines
    assert lines[-1] == "verdict: HARNESS ERROR (1 of 3 steps did not run)"
    assert exit_code(steps) == 2


def test_a_check_that_wrote_no_verdicts_is_never_counted_as_caught(tmp_path: Path) -> None:
    """What the demo printed once as ``mutants caught: 5/5`` when no check ran."""
    steps = []
    for name in ("a/no-backoff", "b/no-resubscribe"):
        outcome = judge_check(tmp_path / name / "verdicts.json", expected_rule="C-RESUBSCRIBE", exit_code=2,
                              said="pytest: error: unrecognized arguments")
        steps.append(Step(name, "", 1, lambda o=outcome: o, {"name": name, "mutant": "m"}))
    run_steps(steps, tmp_path)
    lines = summary_lines(steps)
    assert "mutants caught: 0/2 (2 did not run)" in lines
    assert not any("PASS" in line for line in lines)
    assert all("check exited 2: pytest: error" in line for line in lines if line.startswith("harness error"))
    assert exit_code(steps) == 2


def test_failures_without_harness_errors_exit_1_and_all_holding_exits_0(tmp_path: Path) -> None:
    failing = [step("node-reference", Status.FAIL, reference=True),
               step("node/x", Status.CAUGHT, mutant=True), step("load", Status.PASS)]
    run_steps(failing, tmp_path)
    assert summary_lines(failing)[:3] == ["load: PASS load said PASS", "references passing: 0/1",
                                          "mutants caught: 1/1"]
    assert summary_lines(failing)[-1] == "verdict: FAIL: node-reference: node-reference said FAIL"
    assert exit_code(failing) == 1
    holding = [step("node-reference", Status.PASS, reference=True), step("webhooks", Status.DONE)]
    run_steps(holding, tmp_path)
    assert summary_lines(holding)[-1] == "verdict: PASS" and exit_code(holding) == 0
