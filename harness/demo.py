"""``conduit-harness demo``: the main job, end to end, in about a minute and a half.

Steps (each independent of the others: its own simulator, key and client process):

1. the contract suite against both reference clients (fast profiles) and a handful of mutants,
   each mutant on the rule it breaks, and the W-* rules against the reference webhook receiver
   and one mutant receiver;
2. a short signed-webhook session on the ``webhook-chaos`` scenario, for delivery statistics;
3. a short Locust run against a fresh simulator, with thresholds;

then one self-contained report: ``reports/<run>/index.html`` (and ``reports/latest/``).

The steps are mostly waiting (reconnect schedules, poll intervals, a timed load run), so they run
a few at a time (``--jobs``, default 3), the longest first: the wall time is then about that of
the longest step, a reference client's whole suite. A line says when each step starts and ends
(elapsed seconds, outcome) and what is running; while nothing changes a line says so every 15 s.

Each step runs as its command-line equivalent would, from the current folder, so what the demo
shows is what a user gets; its console output is kept in ``logs/``. Without Node.js on PATH the
Node steps are skipped (one line says so) and the rest runs.

Outcomes are read from the files the steps wrote (:mod:`harness.step_outcome`). Exit 0 when
every reference passes, every mutant is caught and the load thresholds hold; 1 when one of those
is not so; 2 when a step did not run (a harness error, with its reason).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.step_outcome import Status, StepOutcome, judge_check, judge_load

HARNESS = [sys.executable, "-m", "harness.cli"]
# Why 3: the steps are mostly waiting (about 35 s of CPU in 3.5 min of steps), so three at a time
# use well under one of two cores, and with the two reference suites (~70 s each) in two slots the
# third slot runs every short step beside them; more slots cannot beat the longest step and only
# add contention to the timing rules.
DEFAULT_JOBS = 3
DEFAULT_LOAD_SECONDS = 15  # ~200 SignalR latency samples at 20 users: enough for a p95
HEARTBEAT_SECONDS = 15.0

# The known-bad clients and receiver shown, by language; each runs the rule the mutant
# catalogue (contract_tests/mutants.py) says it breaks.
CLIENT_MUTANT_PICKS = [("python", "no-backoff"), ("python", "no-resubscribe"),
                       ("node", "misses-terminal"), ("node", "polls-too-often")]
RECEIVER_MUTANT_PICKS = [("node", "reserialised")]
RECEIVER_REFERENCES = ["python"]
LOAD_THRESHOLDS = ["signalr.latency.p95<100ms", "failures<1%"]
LOAD_USERS, LOAD_SPAWN_RATE = 20, 10


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _slug(name: str) -> str:
    return name.replace("/", "--")


@dataclass
class Step:
    """One unit of the demo, run on a worker thread; ``run`` returns its outcome."""

    name: str
    what: str  # shown when it starts
    estimate: float  # rough seconds on a quiet machine, only to start the longest steps first
    run: Callable[[], StepOutcome]
    subject: dict[str, Any] | None = None  # its manifest entry, for a contract step
    outcome: StepOutcome | None = None
    seconds: float = 0.0

    @property
    def is_mutant(self) -> bool:
        return bool(self.subject and self.subject.get("mutant"))

    @property
    def is_reference(self) -> bool:
        return self.subject is not None and not self.subject.get("mutant")


@dataclass
class Progress:
    """The console lines: each step's start and end with the elapsed time, and what is running."""

    say: Callable[[str], None]
    origin: float = field(default_factory=time.monotonic)
    running: dict[str, float] = field(default_factory=dict)
    last_line: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _line(self, text: str) -> None:
        self.last_line = time.monotonic()
        self.say(f"[{self.last_line - self.origin:5.1f} s] {text}")

    def _running(self) -> str:
        now = time.monotonic()
        names = [f"{name} ({now - since:.0f} s)" for name, since in self.running.items()]
        return "running: " + (", ".join(names) if names else "nothing")

    def start(self, step: Step) -> None:
        with self.lock:
            self.running[step.name] = time.monotonic()
            self._line(f"start {step.name}: {step.what}")

    def end(self, step: Step) -> None:
        assert step.outcome is not None
        with self.lock:
            self.running.pop(step.name, None)
            self._line(f"end   {step.name}: {step.outcome.status} {step.outcome.text} "
                       f"({step.seconds:.1f} s) — {self._running()}")

    def heartbeat(self) -> None:
        with self.lock:
            if self.running and time.monotonic() - self.last_line >= HEARTBEAT_SECONDS - 0.5:
                self._line(self._running())


class Demo:
    def __init__(self, run_dir: Path, load_seconds: int, say: Callable[[str], None],
                 jobs: int = DEFAULT_JOBS) -> None:
        self.run_dir = run_dir
        self.load_seconds = load_seconds
        self.say = say
        self.jobs = max(1, jobs)
        self.load_lines: list[str] = []  # the load run's latency figures, for the closing lines

    def harness(self, name: str, *args: str, timeout: float) -> tuple[int | None, str]:
        """Run ``conduit-harness ARGS``; its exit code (None: it did not finish in time) and the end
        of what it said. Everything it said goes to ``logs/<step>.log``."""
        log = self.run_dir / "logs" / f"{_slug(name)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as sink:
            sink.write("$ conduit-harness " + shlex.join(args) + "\n")
            sink.flush()
            try:
                done = subprocess.run([*HARNESS, *args], stdout=sink, stderr=subprocess.STDOUT,
                                      text=True, timeout=timeout,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL)
                code: int | None = done.returncode
            except subprocess.TimeoutExpired:
                code = None
                sink.write(f"\n(stopped after {timeout:.0f} s)\n")
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-4:]
        return code, " | ".join(line.strip() for line in tail)[-300:] + f" (see {log})"

    def node_ready(self) -> bool:
        """Node steps run when Node.js is here; on first use its npm packages are installed."""
        from contract_tests.node import NodeUnavailable, node_client_script

        try:
            node_client_script(self.say)
        except NodeUnavailable as exc:
            self.say(f"skipped: the Node reference client, receiver and mutants ({exc})")
            return False
        return True

    # -- contract -----------------------------------------------------------------------------
    def check_step(self, name: str, kind: str, args: list[str], *, what: str, estimate: float,
                   profile: str | None = None, mutant: str | None = None,
                   expected_rule: str | None = None) -> Step:
        out = self.run_dir / "contract" / _slug(name)
        verdicts_file = out / "verdicts.json"

        def run() -> StepOutcome:
            from contract_tests.suite.scheduling import default_jobs

            # The machine's rule budget (check's default --jobs) shared by the steps running at once.
            jobs = str(max(1, default_jobs() // self.jobs))
            code, said = self.harness(name, "check", *args, "--jobs", jobs, "--report", str(out), timeout=900)
            return judge_check(verdicts_file, expected_rule=expected_rule, exit_code=code, said=said)

        subject = {"name": name, "kind": kind, "profile": profile, "mutant": mutant,
                   "expected_rule": expected_rule,
                   "verdicts": str(verdicts_file.relative_to(self.run_dir)),
                   "junit": str((out / "junit.xml").relative_to(self.run_dir))}
        return Step(name, what, estimate, run, subject)

    def contract_steps(self, languages: set[str]) -> list[Step]:
        from contract_tests.client_profile import find_profile
        from contract_tests.mutants import CLIENT_MUTANTS, RECEIVER_MUTANTS, REFERENCE_CLIENTS
        from contract_tests.receivers import RECEIVER_COMMANDS

        steps = []
        for language, profile in REFERENCE_CLIENTS.items():
            if language in languages:
                steps.append(self.check_step(f"{language}-reference", "client", ["--client-profile", profile],
                                             what="every C-* rule", estimate=70, profile=profile))
        for language, mutant in CLIENT_MUTANT_PICKS:
            if language in languages:
                rule = CLIENT_MUTANTS[mutant]
                profile = REFERENCE_CLIENTS[language]
                base = find_profile(profile).command
                args = ["--client-profile", profile, "--client", f"{base} --mutant {mutant}", "--rules", rule]
                steps.append(self.check_step(f"{language}-reference/{mutant}", "client", args,
                                             what=f"mutant, must fail {rule}", estimate=20 if "terminal" in
                                             mutant else 7, profile=profile, mutant=mutant,
                                             expected_rule=rule))
        receivers = [(lang, None) for lang in RECEIVER_REFERENCES] + RECEIVER_MUTANT_PICKS
        for language, receiver_mutant in receivers:
            if language not in languages:
                continue
            command = shlex.join(RECEIVER_COMMANDS[language](receiver_mutant))
            name = f"{language}-receiver" + (f"/{receiver_mutant}" if receiver_mutant else "")
            rule = RECEIVER_MUTANTS[receiver_mutant] if receiver_mutant else None
            args = ["--client", command] + (["--rules", rule] if rule else [])
            steps.append(self.check_step(name, "receiver", args, estimate=5, mutant=receiver_mutant,
                                         expected_rule=rule,
                                         what=f"mutant, must fail {rule}" if rule else "every W-* rule"))
        return steps

    # -- webhooks -----------------------------------------------------------------------------
    def webhooks(self) -> StepOutcome:
        """A short webhook-chaos session with the reference receiver; its timeline feeds the
        report's webhook statistics."""
        from contract_tests.receivers import ReceiverProcess, python_receiver_command
        from simulator.app import Simulator
        from simulator.background import BackgroundSimulator
        from simulator.recorder import Recorder

        timeline = self.run_dir / "timeline.jsonl"
        with timeline.open("w", encoding="utf-8") as sink:
            simulator = Simulator(scenario="webhook-chaos", time_scale=0.2, seed=7, recorder=Recorder(sink))
            background = BackgroundSimulator(simulator)
            background.start()
            try:
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
            finally:
                background.stop()
        records = [json.loads(line) for line in timeline.read_text(encoding="utf-8").splitlines() if line]
        outcomes = [r.get("outcome") for r in records if r.get("kind") == "webhook_delivery"]
        if not outcomes:
            return StepOutcome(Status.ERROR, "no webhook delivery attempt was recorded")
        return StepOutcome(Status.DONE, f"{len(outcomes)} delivery attempts: " + ", ".join(
            f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes), key=str)))

    # -- load ---------------------------------------------------------------------------------
    def load(self) -> StepOutcome:
        args = ["load", "-u", str(LOAD_USERS), "-r", str(LOAD_SPAWN_RATE), "-t", f"{self.load_seconds}s",
                "--report-dir", str(self.run_dir / "load"), "-q"]
        for threshold in LOAD_THRESHOLDS:
            args += ["--threshold", threshold]
        code, said = self.harness("load", *args, timeout=self.load_seconds + 180)
        outcome = judge_load(self.run_dir / "load" / "summary.json", exit_code=code, said=said)
        if outcome.ran:
            summary = json.loads((self.run_dir / "load" / "summary.json").read_text(encoding="utf-8"))
            self.load_lines = _load_lines(summary)
        return outcome

    # -- all ----------------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        languages = {"python"} | ({"node"} if self.node_ready() else set())
        steps = self.contract_steps(languages)
        steps.append(Step("webhooks", "webhook-chaos scenario → reference receiver, 8 tasks", 5,
                          self.webhooks))
        steps.append(Step("load", f"{self.load_seconds} s, {LOAD_USERS} users (SignalR, polling, auto) "
                                  f"against a fresh simulator", self.load_seconds + 5, self.load))
        return steps

    def execute(self, steps: list[Step], progress: Progress) -> None:
        """Run the steps, at most ``jobs`` at a time, the longest first (so the short ones fill in
        beside the long ones instead of trailing after them)."""

        def attempt(step: Step) -> None:
            progress.start(step)
            started = time.monotonic()
            try:
                step.outcome = step.run()
            except Exception as exc:  # a step that crashed did not run: a harness error, not a crash
                step.outcome = StepOutcome(Status.ERROR, f"{type(exc).__name__}: {exc}")
            step.seconds = time.monotonic() - started
            progress.end(step)

        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="demo-step") as pool:
            pending: set[Future[None]] = {pool.submit(attempt, step)
                                          for step in sorted(steps, key=lambda s: -s.estimate)}
            try:
                while pending:
                    _done, pending = wait(pending, timeout=HEARTBEAT_SECONDS, return_when=FIRST_COMPLETED)
                    progress.heartbeat()
            except BaseException:  # Ctrl-C: the running steps get it too; start no other
                for future in pending:
                    future.cancel()
                raise

    def run(self) -> int:
        started = _now()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        steps = self.steps()
        self.say(f"demo: {len(steps)} steps, up to {self.jobs} at a time; output in {self.run_dir}")
        self.execute(steps, Progress(self.say))
        manifest = {
            "run": self.run_dir.name, "started": started, "finished": _now(),
            "command": "conduit-harness demo",
            "simulator": {"profile": "documented", "scenario": "contract / webhook-chaos / happy-path"},
            "subjects": [s.subject for s in steps if s.subject], "load": "load", "timeline": "timeline.jsonl",
        }
        (self.run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        from reporting import render_report

        page = render_report(self.run_dir)
        latest = self.run_dir.parent / "latest"
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        elif latest.exists():
            shutil.rmtree(latest)
        shutil.copytree(self.run_dir, latest)
        self.say("")
        for line in self.load_lines:
            self.say("load: " + line)
        for line in summary_lines(steps):
            self.say(line)
        self.say(f"report: {latest / 'index.html'}  (this run: {page})")
        return exit_code(steps)


def summary_lines(steps: list[Step]) -> list[str]:
    """The closing lines, every count taken from the steps' outcomes."""
    refs = [s for s in steps if s.is_reference]
    mutants = [s for s in steps if s.is_mutant]
    errors = [s for s in steps if s.outcome is None or s.outcome.status is Status.ERROR]
    failures = [s for s in steps if s.outcome is not None and s.outcome.status is Status.FAIL]
    passed = sum(1 for s in refs if s.outcome is not None and s.outcome.status is Status.PASS)
    caught = sum(1 for s in mutants if s.outcome is not None and s.outcome.status is Status.CAUGHT)
    not_run = sum(1 for s in mutants if s in errors)
    lines = [f"{s.name}: {s.outcome.status} {s.outcome.text}" for s in steps
             if s.subject is None and s.outcome is not None and s.outcome.ran]
    lines += [f"references passing: {passed}/{len(refs)}",
              f"mutants caught: {caught}/{len(mutants)}" + (f" ({not_run} did not run)" if not_run else "")]
    for step in errors:
        lines.append(f"harness error: {step.name} did not run: "
                     + (step.outcome.text if step.outcome else "it was never started"))
    if errors:
        lines.append(f"verdict: HARNESS ERROR ({len(errors)} of {len(steps)} steps did not run)")
    elif failures:
        lines.append("verdict: FAIL: " + "; ".join(f"{s.name}: {s.outcome.text}" for s in failures
                                                   if s.outcome))
    else:
        lines.append("verdict: PASS")
    return lines


def exit_code(steps: list[Step]) -> int:
    """2 when a step did not run, else 1 when one failed, else 0."""
    statuses = {s.outcome.status if s.outcome else Status.ERROR for s in steps}
    if Status.ERROR in statuses:
        return 2
    return 1 if Status.FAIL in statuses else 0


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
    return lines


def _print_now(line: str) -> None:
    print(line, flush=True)  # each line as it happens, also when stdout is a CI log file


def run_demo(report_root: Path, load_seconds: int = DEFAULT_LOAD_SECONDS,
             say: Callable[[str], None] = _print_now, jobs: int = DEFAULT_JOBS) -> int:
    """Run it all; the run goes to ``report_root`` (relative: under the current folder)."""
    run_dir = report_root.resolve() / datetime.now().strftime("%Y%m%d-%H%M%S")
    return Demo(run_dir, load_seconds, say, jobs).run()
