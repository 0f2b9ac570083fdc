"""The suite cannot be passed by default: clients that do part of the job, or none of it, get no
PASS on a rule they never exercised (contract.md: a rule that was not provoked is INCONCLUSIVE).

Each null client (``null_clients/``) claims both roles, so the suite checks it on every C-* rule
asked for; it may pass only the rules of the channel it really uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract_tests.client_rules import CHECKS

ROOT = Path(__file__).resolve().parents[2]
NULL_CLIENTS = Path(__file__).parent / "null_clients"
FAST = "python-reference-fast"  # for its numbers (the null clients read the same knobs)

POLLING_LABELS = {"C-POLL-INTERVAL", "C-POLL-LIMIT", "C-POLL-STOP", "C-POLL-ERRORS", "C-RETRY-AFTER[429]",
                  "C-RETRY-AFTER[503]", "C-LATENCY[polling]"}
SIGNALR_LABELS = {"C-RECONNECT-SCHEDULE", "C-RECONNECT-CLOSE", "C-RESUBSCRIBE", "C-NO-LOST-TERMINAL",
                  "C-OUTCOME[signalr]", "C-OUTCOME[generated]", "C-LATENCY[signalr]", "C-AUTH", "C-POOL",
                  "C-CLEANUP"}

# null client → (the rules it is checked on in the default run, the labels it may pass)
DEFAULT_RUNS: dict[str, tuple[str, set[str]]] = {
    "ready_only": ("C-POLL-STOP,C-RETRY-AFTER,C-RESUBSCRIBE,C-NO-LOST-TERMINAL,C-FALLBACK,C-AUTH", set()),
    "poll_only": ("C-RECONNECT-*,C-RESUBSCRIBE,C-NO-LOST-TERMINAL,C-FALLBACK,C-OUTCOME,C-LATENCY,C-AUTH,"
                  "C-POOL,C-CLEANUP", POLLING_LABELS),
    "signalr_only": ("C-POLL-*,C-RETRY-AFTER,C-FALLBACK,C-LATENCY", SIGNALR_LABELS),
}


def _start_check(client: str, rules: str | None, report: Path) -> subprocess.Popen[str]:
    command = f"{sys.executable} {NULL_CLIENTS / (client + '.py')}"
    args = [sys.executable, "-m", "harness.cli", "check", "--client-profile", FAST, "--client", command,
            "--report", str(report)] + (["--rules", rules] if rules else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _unearned_passes(runs: dict[str, tuple[str | None, set[str]]], tmp_path: Path,
                     every_label: set[str] | None = None) -> dict[str, list[str]]:
    """Run every check at once (they mostly wait), then list each client's PASS verdicts on rules
    outside the channel it uses (and, with ``every_label``, check that each case gave a verdict)."""
    started = {name: _start_check(name, rules, tmp_path / name) for name, (rules, _) in runs.items()}
    found: dict[str, list[str]] = {}
    for name, process in started.items():
        output, _ = process.communicate(timeout=900)
        verdicts_file = tmp_path / name / "verdicts.json"
        assert verdicts_file.is_file(), f"{name}: no verdicts (exit {process.returncode}):\n{output[-3000:]}"
        verdicts = json.loads(verdicts_file.read_text())
        assert verdicts, f"{name}: no rule ran:\n{output[-3000:]}"
        assert process.returncode != 0, f"{name} passed its check:\n{output[-3000:]}"
        if every_label is not None:
            labels = {v["label"] for v in verdicts}
            assert labels == every_label, f"{name}: no verdict for {every_label - labels}:\n{output[-3000:]}"
        allowed = runs[name][1]
        found[name] = [f"{v['label']}: {v['summary']}" for v in verdicts
                       if v["outcome"] == "PASS" and v["label"] not in allowed]
    return found


@pytest.mark.timeout(600)
def test_null_clients_get_no_pass_on_rules_they_never_exercised(tmp_path: Path) -> None:
    assert _unearned_passes(dict(DEFAULT_RUNS), tmp_path) == {name: [] for name in DEFAULT_RUNS}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_null_clients_on_every_rule(tmp_path: Path) -> None:
    runs: dict[str, tuple[str | None, set[str]]] = {
        name: (None, allowed) for name, (_, allowed) in DEFAULT_RUNS.items()}
    every_label = {f"{rule}[{variant}]" if len(cases) > 1 else rule
                   for rule, cases in CHECKS.items() for variant, _check, _kwargs in cases}
    assert _unearned_passes(runs, tmp_path, every_label) == {name: [] for name in DEFAULT_RUNS}
