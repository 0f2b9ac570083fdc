"""A FAIL or INCONCLUSIVE judged while the simulator itself stalled is judged again on a run of its own
(``--max-stall-ms``), and every verdict whose run stalled says so.

A stall cannot be ordered from a busy machine on demand, so these runs set the limit below
the loop's ordinary wake-up jitter (0.001 ms): every run then counts as stalled, which is the
path a busy machine takes, with the real scheduler, simulator and client.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contract.test_check_cli import harness

MUTANT = "{python} -m contract_tests.clients.python_client --mutant polls-too-often"


def _check(tmp_path: Path, jobs: str, rules: str) -> tuple[int, dict[str, dict]]:
    done = harness("check", "--client-profile", "python-reference-fast", "--client", MUTANT,
                   "--rules", rules, "--jobs", jobs, "--max-stall-ms", "0.001", "--report", str(tmp_path))
    verdicts = json.loads((tmp_path / "verdicts.json").read_text())
    return done.returncode, {v["label"]: v for v in verdicts}


@pytest.mark.parametrize("jobs", ["2", "1"])
def test_a_stalled_fail_or_inconclusive_is_judged_again_alone_and_says_why(tmp_path: Path, jobs: str) -> None:
    rules = "C-POLL-INTERVAL,C-POLL-STOP,C-AUTH" if jobs == "2" else "C-POLL-INTERVAL"
    code, verdicts = _check(tmp_path, jobs, rules)
    poll = verdicts["C-POLL-INTERVAL"]
    assert code == 1 and poll["outcome"] == "FAIL"  # the mutant polls too often, whatever the load
    first = poll["details"]["first_run"]
    where = "beside other rules" if jobs == "2" else "in this process"
    assert first.startswith(f"first run ({where}): FAIL")
    texts = [e["text"] for e in poll["evidence"]]
    assert texts[0] == first and "judged again on a run of its own" in first
    assert any("stalled up to" in t and "during this run" in t for t in texts)
    if jobs == "2":
        # The mutant's six quick polls end before the task does: nothing to judge, on any run.
        stop = verdicts["C-POLL-STOP"]
        assert stop["outcome"] == "INCONCLUSIVE"
        assert stop["details"]["first_run"].startswith("first run (beside other rules): INCONCLUSIVE")
        # A PASS is never run again, but says its run stalled.
        auth = verdicts["C-AUTH"]
        assert auth["outcome"] == "PASS" and "first_run" not in auth["details"]
        assert any("during this run" in e["text"] for e in auth["evidence"])
