"""pytest-benchmark support: pair each simulator benchmark with its baseline, write the ratios.

Only ``benchmarks/test_bench_protocol.py`` is collected here (the default ``pytest`` run has
``testpaths = tests`` and never comes here). Each case runs twice — ``role`` ``simulator`` and
``baseline`` — in the same session (pytest-benchmark's own figures), and the simulator test also
measures the two interleaved, block by block, for the ratio; at the end
``reports/bench/protocol_ratios.json`` gets::

    ratio = baseline time / simulator time   (median over interleaved pairs;
                                              1.0 = as fast as the plain call, 0.5 = twice as slow)
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.common import REPORT_DIR, SIM_ROOT_ENV, environment, load_average

# case -> role -> statistics (seconds)
RESULTS: dict[str, dict[str, dict[str, float]]] = {}
# case -> interleaved comparison
INTERLEAVED: dict[str, dict[str, float]] = {}


class Pairs:
    """What a benchmark test calls after ``benchmark(...)`` to file its figures."""

    def record(self, case: str, role: str, benchmark: Any) -> None:
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable / --benchmark-skip: nothing was measured
            return
        s = stats.stats
        RESULTS.setdefault(case, {})[role] = {
            "median_s": s.median, "mean_s": s.mean, "min_s": s.min, "stddev_s": s.stddev,
            "rounds": s.rounds, "ops": s.ops,
        }


    def interleave(self, case: str, simulator_fn: Any, baseline_fn: Any, *, pairs: int = 301,
                   block_s: float = 200e-6) -> None:
        """The ratio measured pair by pair: a block of simulator calls, then a block of baseline
        calls (order alternating), ``pairs`` times; the median of the per-pair ratios. Both
        halves of a pair run within a millisecond, so a change in the machine's speed (a
        neighbour's load, a migrated vCPU) hits both alike — which the separate pytest-benchmark
        runs, seconds apart, cannot promise."""
        import gc
        import statistics
        import time

        def per_call(fn: Any, n: int) -> float:
            started = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - started) / n

        n_sim = max(1, int(block_s / max(per_call(simulator_fn, 50), 1e-9)))
        n_base = max(1, int(block_s / max(per_call(baseline_fn, 50), 1e-9)))
        ratios = []
        gc.collect()
        gc.disable()
        try:
            for i in range(pairs):
                if i % 2:
                    base = per_call(baseline_fn, n_base)
                    sim = per_call(simulator_fn, n_sim)
                else:
                    sim = per_call(simulator_fn, n_sim)
                    base = per_call(baseline_fn, n_base)
                ratios.append(base / sim)
        finally:
            gc.enable()
        quartiles = statistics.quantiles(ratios, n=4)
        INTERLEAVED[case] = {"ratio": statistics.median(ratios), "q1": quartiles[0], "q3": quartiles[2],
                             "pairs": pairs}


@pytest.fixture(scope="session")
def pairs() -> Pairs:
    return Pairs()


def pytest_configure(config: pytest.Config) -> None:
    """With ``CONDUIT_BENCH_SIM_ROOT`` the simulator must come from there; the project's own pytest
    plugin imports it from the installed checkout first unless disabled."""
    import os
    from pathlib import Path

    import simulator

    root = os.environ.get(SIM_ROOT_ENV)
    if root and Path(simulator.__file__).resolve().parent.parent != Path(root).resolve():
        raise pytest.UsageError(
            f"{SIM_ROOT_ENV}={root} but simulator was already imported from "
            f"{Path(simulator.__file__).parent} (a plugin imported it first: try "
            "`-p no:conduit_harness`)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not RESULTS:
        return
    ratios: dict[str, Any] = {}
    for case in sorted(set(RESULTS) | set(INTERLEAVED)):
        roles = RESULTS.get(case, {})
        sim, base = roles.get("simulator"), roles.get("baseline")
        entry: dict[str, Any] = {
            "simulator_median_us": round(sim["median_s"] * 1e6, 3) if sim else None,
            "baseline_median_us": round(base["median_s"] * 1e6, 3) if base else None,
        }
        inter = INTERLEAVED.get(case)
        if inter:
            entry["ratio"] = round(inter["ratio"], 3)
            entry["ratio_iqr"] = [round(inter["q1"], 3), round(inter["q3"], 3)]
            entry["overhead_factor"] = round(1 / inter["ratio"], 3)
        if sim and base and sim["median_s"] > 0 and sim["min_s"] > 0:
            entry["simulator_min_us"] = round(sim["min_s"] * 1e6, 3)
            entry["baseline_min_us"] = round(base["min_s"] * 1e6, 3)
            entry["ratio_of_medians"] = round(base["median_s"] / sim["median_s"], 3)
            entry["ratio_of_mins"] = round(base["min_s"] / sim["min_s"], 3)
        entry["baseline"] = BASELINES.get(case)
        ratios[case] = entry
    report = {
        "benchmark": "protocol",
        "environment": environment(),
        "load_average_end": load_average(),
        "definition": "ratio = baseline time / simulator time per call, the median over interleaved "
                      "pairs of ~200 us blocks (1.0 = as fast as the plain call; 0.5 = twice as slow; "
                      "ratio_iqr = its quartiles); overhead_factor = 1 / ratio. ratio_of_medians and "
                      "ratio_of_mins come from the separate pytest-benchmark runs (seconds apart, so "
                      "more exposed to changes in the machine's load); *_median_us / *_min_us are "
                      "pytest-benchmark's per-call figures",
        "ratios": ratios,
    }
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "protocol_ratios.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


# What each case is compared against (filled in by test_bench_protocol.py at import).
BASELINES: dict[str, str] = {}
