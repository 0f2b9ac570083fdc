"""``check``'s wall time against its longest rule, serial and side by side (issue 12, outcome 1).

    .venv/bin/python -m benchmarks.bench_check                    # both fast reference profiles
    .venv/bin/python -m benchmarks.bench_check --documented       # also python-reference (minutes)
    .venv/bin/python -m benchmarks.bench_check --stability 5      # 5 back-to-back runs, a core busy
    .venv/bin/python -m benchmarks.bench_check --profiles python-reference --every-rule 600
                                                # no rule skipped for its length (C-POLL-LIMIT: 60 × 5 s)

For each client profile, ``conduit-harness check --client-profile P`` runs as a subprocess
twice: ``--jobs 1`` (the baseline: one rule after another) and ``--jobs N`` (default: what
``check`` picks, :func:`contract_tests.suite.scheduling.default_jobs`). Each run writes its JUnit
and verdicts; from them:

- **longest rule**: the longest case's time in the serial run (the rule alone, uncontended), and
  in the parallel run;
- **suite wall**: the whole command, start to exit (imports, client probe, pre-flight included);
- the headline **suite wall / longest rule** (target ≤ 1.3) and the CPU-seconds each run used
  (its child processes: check, clients);
- whether both runs gave the same verdicts (label → outcome).

``--stability N`` instead runs the full check of each profile N times back to back, parallel,
while a process of ours keeps one core busy (``while True: pass``, killed after), and reports
whether every run gave the same label → outcome map. Load averages are recorded around every run:
the machine may be shared. Writes ``reports/bench/check.json`` (``check-stability.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, environment, load_average, write_report

FAST = ["python-reference-fast", "node-reference-fast"]
DOCUMENTED = ["python-reference"]


def run_check(profile: str, jobs: int, out: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One ``check`` as a subprocess: wall and CPU time, per-case times and outcomes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "harness.cli", "check", "--client-profile", profile,
            "--jobs", str(jobs), "--report", str(out), *extra]
    before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = load_average()
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - started
    after_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cases = {tc.get("name"): float(tc.get("time") or 0)
             for tc in ET.parse(out / "junit.xml").iter("testcase")}
    verdicts = json.loads((out / "verdicts.json").read_text())
    rules = {name: t for name, t in cases.items() if name.startswith("C-")}
    longest = max(rules.items(), key=lambda kv: kv[1]) if rules else (None, 0.0)
    return {
        "profile": profile, "jobs": jobs, "exit": done.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round(sum(getattr(after_cpu, f) - getattr(before_cpu, f)
                           for f in ("ru_utime", "ru_stime")), 2),
        "longest_rule": longest[0], "longest_rule_s": round(longest[1], 2),
        "rules_sum_s": round(sum(rules.values()), 2),
        "cases_s": {name: round(t, 2) for name, t in rules.items()},
        "outcomes": {v["label"]: v["outcome"] for v in verdicts},
        # Cases judged again alone because their first run failed while the simulator stalled
        # (contract_tests.suite.stalls), and the longest stall any verdict reported.
        "judged_again": {v["label"]: v["details"]["first_run"] for v in verdicts
                         if "first_run" in v.get("details", {})},
        "max_stall_ms": max((v.get("details", {}).get("simulator_stall_ms", 0) for v in verdicts), default=0),
        "load_before": load_before, "load_after": load_average(),
        # What check said about anything that did not pass (its explanations come after the table).
        "said": done.stdout.split("== contract verdicts ==", 1)[-1][-4000:] if done.returncode else "",
    }


def compare(profile: str, jobs: int, work: Path) -> dict[str, Any]:
    serial = run_check(profile, 1, work / f"{profile}-j1")
    parallel = run_check(profile, jobs, work / f"{profile}-j{jobs}")
    longest = serial["longest_rule_s"]
    return {
        "profile": profile, "serial": serial, "parallel": parallel,
        "longest_rule": serial["longest_rule"], "longest_rule_alone_s": longest,
        "suite_wall_over_longest_rule": {run["jobs"]: round(run["wall_s"] / longest, 2) if longest else None
                                         for run in (serial, parallel)},
        "same_verdicts": serial["outcomes"] == parallel["outcomes"],
    }


def every_rule(profile: str, jobs: int, max_rule_seconds: float, work: Path) -> dict[str, Any]:
    """The whole suite with no rule skipped for its length (``--max-rule-seconds``), side by
    side, then its longest case again alone (``--rules LABEL --jobs 1``): suite wall / that case
    alone, without the minutes of a full serial run."""
    extra = ("--max-rule-seconds", str(max_rule_seconds))
    parallel = run_check(profile, jobs, work / f"{profile}-all-j{jobs}", extra)
    longest = parallel["longest_rule"]
    alone = run_check(profile, 1, work / f"{profile}-alone", (*extra, "--rules", str(longest)))
    return {"profile": profile, "parallel": parallel, "longest_rule": longest, "longest_alone": alone,
            "longest_rule_alone_s": alone["longest_rule_s"],
            "suite_wall_over_longest_rule": round(parallel["wall_s"] / alone["longest_rule_s"], 2)
            if alone["longest_rule_s"] else None,
            "every_rule_passed": parallel["exit"] == 0 and set(parallel["outcomes"].values()) == {"PASS"}}


def stability(profiles: list[str], jobs: int, rounds: int, work: Path, busy_cores: int = 1) -> dict[str, Any]:
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy_cores)]
    try:
        runs = [run_check(profile, jobs, work / f"stability-{profile}-{i}")
                for i in range(rounds) for profile in profiles]
    finally:
        for process in busy:
            process.kill()
            process.wait()
    by_profile = {p: [r for r in runs if r["profile"] == p] for p in profiles}
    return {
        "jobs": jobs, "rounds": rounds, "busy_cores": busy_cores,
        "busy_core": "python -c 'while True: pass'",
        "profiles": {p: {"identical_verdicts": all(r["outcomes"] == rs[0]["outcomes"] for r in rs),
                         "walls_s": [r["wall_s"] for r in rs], "exits": [r["exit"] for r in rs],
                         "outcomes": rs[0]["outcomes"],
                         "differences": [{k: (rs[0]["outcomes"].get(k), r["outcomes"].get(k))
                                          for k in set(rs[0]["outcomes"]) | set(r["outcomes"])
                                          if rs[0]["outcomes"].get(k) != r["outcomes"].get(k)} for r in rs],
                         "load": [r["load_before"] for r in rs],
                         "judged_again": [r["judged_again"] for r in rs],
                         "max_stall_ms": [r["max_stall_ms"] for r in rs],
                         "said": [r["said"] for r in rs if r["said"]]}
                     for p, rs in by_profile.items()},
    }


def main() -> int:
    from contract_tests.suite.scheduling import default_jobs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=",".join(FAST), help="client profiles, comma-separated")
    parser.add_argument("--documented", action="store_true", help="also python-reference (minutes)")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="--jobs of the parallel runs")
    parser.add_argument("--stability", type=int, default=0, metavar="N",
                        help="instead: N back-to-back parallel runs of each profile with a core busy")
    parser.add_argument("--busy-cores", type=int, default=1, metavar="N",
                        help="with --stability: how many processes keep a core busy (default 1)")
    parser.add_argument("--every-rule", type=float, default=0, metavar="S",
                        help="instead: each profile's suite with --max-rule-seconds S (nothing skipped for "
                             "its length) side by side, and its longest case alone")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    profiles = [p for p in args.profiles.split(",") if p] + (DOCUMENTED if args.documented else [])
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        if args.every_rule:
            results = [every_rule(p, args.jobs, args.every_rule, Path(tmp)) for p in profiles]
            report = {"environment": environment(), "jobs": args.jobs, "results": results}
            path = write_report("check-every-rule", report, args.out)
            for r in results:
                print(f"{r['profile']}: --jobs {args.jobs} {r['parallel']['wall_s']} s, longest "
                      f"{r['longest_rule']} alone {r['longest_rule_alone_s']} s = "
                      f"{r['suite_wall_over_longest_rule']}×; every rule passed: {r['every_rule_passed']}")
        elif args.stability:
            runs = stability(profiles, args.jobs, args.stability, Path(tmp), args.busy_cores)
            report = {"environment": environment(), **runs}
            path = write_report("check-stability", report, args.out)
            for p, r in report["profiles"].items():
                print(f"{p}: identical verdicts in {args.stability} runs: {r['identical_verdicts']}; "
                      f"walls {r['walls_s']}; judged again alone: "
                      f"{[len(again) for again in r['judged_again']]}; max stall ms {r['max_stall_ms']}")
        else:
            results = [compare(p, args.jobs, Path(tmp)) for p in profiles]
            report = {"environment": environment(), "jobs": args.jobs, "results": results}
            path = write_report("check", report, args.out)
            for r in results:
                print(f"{r['profile']}: longest rule {r['longest_rule']} {r['longest_rule_alone_s']} s; "
                      f"--jobs 1 {r['serial']['wall_s']} s, --jobs {args.jobs} {r['parallel']['wall_s']} s "
                      f"= {r['suite_wall_over_longest_rule'][args.jobs]}× the longest rule; "
                      f"same verdicts: {r['same_verdicts']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
