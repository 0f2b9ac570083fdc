"""``conduit-harness demo``: the main job, end to end, in a few minutes.

1. the contract suite against both reference clients (fast profiles) and a handful of mutants,
   and the W-* rules against the reference webhook receiver and one mutant receiver;
2. a short signed-webhook session on the ``webhook-chaos`` scenario, for delivery statistics;
3. a 30-second Locust run against a fresh simulator, with thresholds;
4. one self-contained report: ``reports/<run>/index.html`` (and ``reports/latest/``).

Each step runs as its command-line equivalent would, from the current folder, so what the demo
shows is what a user gets. Without Node.js on PATH the Node client and receiver steps are skipped
(one line says so) and the rest runs. Exit 0 when every reference that ran passes, every mutant
that ran is caught and the load thresholds hold.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HARNESS = [sys.executable, "-m", "harness.cli"]

# (language, bundled client profile): the reference clients, checked on every rule.
REFERENCES = [("python", "python-reference-fast"), ("node", "node-reference-fast")]
# A handful of known-bad clients, each checked on the rule it breaks.
MUTANTS = [
    ("python", "no-backoff", "C-RECONNECT-SCHEDULE"),
    ("python", "no-resubscribe", "C-RESUBSCRIBE"),
    ("node", "misses-terminal", "C-NO-LOST-TERMINAL"),
    ("node", "polls-too-often", "C-POLL-INTERVAL"),
]
RECEIVERS = [("python", None, None), ("node", "reserialised", "W-RAW-BODY")]
LOAD_THRESHOLDS = ["signalr.latency.p95<100ms", "failures<1%"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _slug(name: str) -> str:
    return name.replace("/", "--")


class Demo:
    def __init__(self, run_dir: Path, load_seconds: int, say: Callable[[str], None]) -> None:
        self.run_dir = run_dir
        self.load_seconds = load_seconds
        self.say = say
        self.subjects: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.node_missing: str | None = None  # why the Node steps are skipped, when they are

    def harness(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*HARNESS, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def node_ready(self) -> bool:
        """Node steps run when Node.js is here; on first use its npm packages are installed."""
        from contract_tests.node import NodeUnavailable, node_client_script

        try:
            node_client_script(self.say)
        except NodeUnavailable as exc:
            self.node_missing = str(exc)
            self.say(f"  skipped: the Node reference client, receiver and mutants ({exc})")
            return False
        return True

    # -- contract -----------------------------------------------------------------------------
    def check(self, name: str, kind: str, args: list[str], *, profile: str | None = None,
              mutant: str | None = None, expected_rule: str | None = None) -> None:
        out = self.run_dir / "contract" / _slug(name)
        started = time.monotonic()
        done = self.harness("check", *args, "--report", str(out), timeout=900)
        verdicts_file = out / "verdicts.json"
        verdicts = json.loads(verdicts_file.read_text()) if verdicts_file.exists() else []
        failed = sorted({v["rule"] for v in verdicts if not v["passed"]})
        if done.returncode == 2 or not verdicts:
            self.problems.append(f"{name}: the check did not run ({_why(done)})")
            line = "did not run"
        elif mutant is None:
            line = "all rules hold" if not failed else f"FAILS {', '.join(failed)}"
            if failed:
                self.problems.append(f"{name} fails {', '.join(failed)}")
        else:
            caught = expected_rule in failed
            line = f"caught by {expected_rule}" if caught else f"NOT caught by {expected_rule}"
            if not caught:
                self.problems.append(f"{name} survived {expected_rule}")
        self.say(f"  {name:<34} {len(verdicts):>2} verdicts  {line}  ({time.monotonic() - started:.0f} s)")
        self.subjects.append({
            "name": name, "kind": kind, "profile": profile, "mutant": mutant, "expected_rule": expected_rule,
            "verdicts": str(verdicts_file.relative_to(self.run_dir)),
            "junit": str((out / "junit.xml").relative_to(self.run_dir)),
        })

    def contract(self) -> None:
        from contract_tests.client_profile import find_profile
        from contract_tests.receivers import RECEIVER_COMMANDS

        self.say("contract suite (C-* and W-* rules):")
        languages = {"python"} | ({"node"} if self.node_ready() else set())
        for language, profile in REFERENCES:
            if language in languages:
                self.check(f"{language}-reference", "client", ["--client-profile", profile], profile=profile)
        for language, mutant, rule in MUTANTS:
            if language not in languages:
                continue
            name = f"{language}-reference/{mutant}"
            profile = f"{language}-reference-fast"
            base = find_profile(profile).command
            args = ["--client-profile", profile, "--client", f"{base} --mutant {mutant}", "--rules", rule]
            self.check(name, "client", args, profile=profile, mutant=mutant, expected_rule=rule)
        for language, mutant, rule in RECEIVERS:
            if language not in languages:
                continue
            command = shlex.join(RECEIVER_COMMANDS[language](mutant))
            name = f"{language}-receiver" + (f"/{mutant}" if mutant else "")
            args = ["--client", command] + (["--rules", rule] if rule else [])
            self.check(name, "receiver", args, mutant=mutant, expected_rule=rule)

    # -- webhooks -----------------------------------------------------------------------------
    def webhooks(self) -> None:
        """A short webhook-chaos session with the reference receiver; its timeline feeds the
        report's webhook statistics."""
        from contract_tests.receivers import ReceiverProcess, python_receiver_command
        from simulator.app import Simulator
        from simulator.background import BackgroundSimulator
        from simulator.recorder import Recorder

        self.say("webhook deliveries (webhook-chaos scenario → reference receiver):")
        timeline = self.run_dir / "timeline.jsonl"
        with timeline.open("w", encoding="utf-8") as sink:
            simulator = Simulator(scenario="webhook-chaos", time_scale=0.2, seed=7, recorder=Recorder(sink))
            background = BackgroundSimulator(simulator)
            background.start()
            receiver = ReceiverProcess(python_receiver_command(), secret=simulator.webhook_secret).start()
            try:
                ids = [background.call(lambda i=i: simulator.tasks.create(_webhook_request(
                    simulator.default_key, receiver.webhook_url, i)).task_id) for i in range(8)]
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not all(
                        background.call(lambda: [simulator.tasks.get(t).status.terminal for t in ids])):
                    time.sleep(0.2)
                background.run(simulator.webhooks.drain(30), timeout=40)
            finally:
                receiver.stop()
                background.stop()
        attempts = [json.loads(line) for line in timeline.read_text().splitlines()]
        outcomes = [r.get("outcome") for r in attempts if r.get("kind") == "webhook_delivery"]
        self.say(f"  {len(outcomes)} deliveries: " + ", ".join(
            f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes), key=str)))

    # -- load ---------------------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        self.say(f"load: {self.load_seconds} s, 20 users (SignalR, polling, auto) against a fresh simulator:")
        args = ["load", "-u", "20", "-r", "10", "-t", f"{self.load_seconds}s", "--report-dir",
                str(self.run_dir / "load"), "-q"]
        for threshold in LOAD_THRESHOLDS:
            args += ["--threshold", threshold]
        done = self.harness(*args, timeout=self.load_seconds + 180)
        summary_file = self.run_dir / "load" / "summary.json"
        if done.returncode == 2 or not summary_file.exists():
            self.problems.append(f"load run did not complete ({_why(done)})")
            return None
        if done.returncode == 1:
            self.problems.append("load thresholds breached")
        summary = json.loads(summary_file.read_text())
        for line in _load_lines(summary):
            self.say("  " + line)
        return summary

    # -- all ----------------------------------------------------------------------------------
    def run(self) -> int:
        started = _now()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.contract()
        self.webhooks()
        self.load()
        manifest = {
            "run": self.run_dir.name, "started": started, "finished": _now(),
            "command": "conduit-harness demo",
            "simulator": {"profile": "documented", "scenario": "contract / webhook-chaos / happy-path"},
            "subjects": self.subjects, "load": "load", "timeline": "timeline.jsonl",
        }
        (self.run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
        from reporting import render_report

        page = render_report(self.run_dir)
        latest = self.run_dir.parent / "latest"
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        elif latest.exists():
            shutil.rmtree(latest)
        shutil.copytree(self.run_dir, latest)
        mutants = [s for s in self.subjects if s["mutant"]]
        caught = sum(1 for s in mutants if f"{s['name']} survived {s['expected_rule']}" not in self.problems)
        self.say("")
        self.say(f"mutants caught: {caught}/{len(mutants)}")
        if self.node_missing:
            self.say(f"skipped: the Node steps ({self.node_missing})")
        self.say("verdict: " + ("PASS" if not self.problems else "FAIL: " + "; ".join(self.problems)))
        self.say(f"report: {latest / 'index.html'}  (this run: {page})")
        return 0 if not self.problems else 1


def _why(done: subprocess.CompletedProcess[str]) -> str:
    """The end of what a step that did not run said, so its line never reads "did not run ()"."""
    said = (done.stderr.strip() or done.stdout.strip())[-300:]
    return said or f"exit code {done.returncode} and no output"


def _webhook_request(key: str, url: str, index: int) -> Any:
    from simulator.tasks.model import TaskRequest

    return TaskRequest(kind="video" if index % 2 else "image", prompt=f"demo webhook task {index}",
                       model="demo-model", key=key, webhook_url=url)


def _load_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    metrics = summary.get("metrics") or {}
    for name in ("signalr.latency", "signalr.handshake", "poll.latency", "rest.latency"):
        m = metrics.get(name)
        if m:
            lines.append(f"{name:<18} n={m.get('count', 0):<5} p50 {m.get('p50', 0):.1f} ms  "
                         f"p95 {m.get('p95', 0):.1f} ms  p99 {m.get('p99', 0):.1f} ms")
    for t in summary.get("thresholds") or []:
        lines.append(f"threshold {t.get('expression')}: {'pass' if t.get('ok') else 'FAIL'} "
                     f"(actual {t.get('actual_text', t.get('actual'))})")
    return lines


def _print_now(line: str) -> None:
    print(line, flush=True)  # each step as it ends, also when stdout is a CI log file


def run_demo(report_root: Path, load_seconds: int = 30, say: Callable[[str], None] = _print_now) -> int:
    """Run it all; the run goes to ``report_root`` (relative: under the current folder)."""
    run_dir = report_root.resolve() / datetime.now().strftime("%Y%m%d-%H%M%S")
    return Demo(run_dir, load_seconds, lambda line: say(line)).run()
