"""The recorder's memory, garbage-collector cost and read speed, against a plain list of dicts.

    .venv/bin/python -m benchmarks.bench_recorder            # 100,000 records; one hour = 3.6 M
    .venv/bin/python -m benchmarks.bench_recorder --quick    # smoke size

Every measurement runs in a fresh worker process (``--worker``), so RSS starts from the same
interpreter and nothing of one variant stays in another's heap. The workload is the latency
benchmark's load as the simulator records it: 90 % ``event`` records (one ``send_group`` to a
single connection out of 1,000, fields as the hub writes them) and 10 % ``poll`` records (key and
task id of one of the 1,000 clients), every record made JSON-safe first, as the recorder does.

Variants, alternated within each round:

- ``list-of-dicts`` — the baseline: each record a dict (its header and fields) appended to a list,
  which is what the old recorder held (a ``Record`` around a fields dict), filtered with list
  comprehensions;
- ``recorder`` — :class:`simulator.recorder.Recorder` with its default caps;
- ``recorder+candidate`` (with ``--candidate-root``) — the same, ``simulator`` imported from that
  copy. ``--profile`` does not apply here (the workers are single calls; profile them in-process).

Figures per variant: RSS growth per 100,000 records; objects the collector tracks, per record;
the garbage collector's pauses while recording (``gc.callbacks``: collections and longest pause
per generation) and the time of one full ``gc.collect()`` afterwards (the pause a full collection
costs with that heap); write and read cost per record (reads: every ``poll``; one key's polls; one
task's polls).

**One-hour-equivalent run**: the records one hour of that load writes (1,000 events/s → 3.6 M
records), recorded as fast as the worker can, with the recorder's default caps: RSS growth, where
the records live, longest collector pause, and the cost of reading one key's polls back from the
whole hour (spilled). The baseline is not run at that size (~1 KiB per record: several GB on a
shared machine); its figure is the 100,000-record one scaled to 3.6 M, marked ``extrapolated``.
Writes ``reports/bench/recorder.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
    SIM_ROOT_ENV,
    GcWatch,
    apply_sim_root,
    base_parser,
    environment,
    load_average,
    median,
    ratio,
    rss,
    write_report,
)

VARIANTS = ("list-of-dicts", "recorder")
CONNECTIONS = 1000
HOUR_RECORDS = 3_600_000  # 1,000 events/s for 3,600 s


def parse_args(argv: list[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=None, help="records per measurement (default 100000)")
    parser.add_argument("--hour-records", type=int, default=None,
                        help=f"records of the one-hour-equivalent run (default {HOUR_RECORDS}; 0 skips it)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every variant (default 2)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.records = args.records or (10_000 if quick else 100_000)
    args.hour_records = args.hour_records if args.hour_records is not None else (
        60_000 if quick else HOUR_RECORDS)
    args.rounds = args.rounds or (1 if quick else 2)
    return args


# -- the workload ---------------------------------------------------------------------------------
def workload(count: int) -> Any:
    """``(kind, fields)`` for ``count`` records of the latency benchmark's load (see above)."""
    for n in range(count):
        client = n % CONNECTIONS
        if n % 10 == 9:
            yield "poll", {"key": f"vk_bench{client:04d}abcdefghijklmnop",
                           "task_id": f"task_{client:04d}_{n % 7}", "route": "/api/tasks/{task_id}/status",
                           "path": f"/api/tasks/task_{client:04d}/status", "status": 200,
                           "task_status": "running", "fault": False, "retry_after": None}
        else:
            yield "event", {"hub": "/hubs/image-generation", "target": "TaskProgress",
                            "arguments": ["task_bench0123456789abcdef", n],
                            "to": f"group:vkey-vk_bench{client:04d}", "emit_time_ms": time.time() * 1000,
                            "recipients": 1, "connections": [f"conn{client:04d}AbCdEfGhIjKlMnOpQr"]}


class ListOfDicts:
    """The baseline store: what the old recorder kept, filtered the way it filtered."""

    def __init__(self) -> None:
        from simulator.jsonsafe import json_safe_fields

        self._safe = json_safe_fields
        self._records: list[dict[str, Any]] = []

    def record(self, kind: str, /, **fields: Any) -> None:
        fields = self._safe(fields)
        self._records.append({"seq": len(self._records) + 1, "kind": kind, "wall": time.time(),
                              "mono": time.monotonic(), "fields": fields})

    def records(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return [r for r in list(self._records) if (kind is None or r["kind"] == kind)
                and all(r["fields"].get(k) == v for k, v in match.items())]


def make_store(variant: str, max_records: int | None) -> Any:
    if variant.startswith("list-of-dicts"):
        return ListOfDicts()
    from simulator.recorder import Recorder

    # Default caps unless told (a candidate may be an older recorder without caps).
    return Recorder(max_records=max_records) if max_records else Recorder()


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import simulator.jsonsafe  # noqa: F401  (imported before the RSS baseline)
    import simulator.recorder  # noqa: F401

    count = spec["records"]
    store = make_store(spec["variant"], spec.get("max_records"))
    gc.collect()
    rss_before, objects_before = rss(), len(gc.get_objects())
    watch = GcWatch()
    started = time.perf_counter()
    for kind, fields in workload(count):
        store.record(kind, **fields)
    write_s = time.perf_counter() - started
    during = watch.report()
    full_s, _ = timed(gc.collect)
    grown = rss() - rss_before
    out: dict[str, Any] = {
        "variant": spec["variant"], "records": count,
        "rss_growth_mb": round(grown / 2**20, 1),
        "rss_per_100k_mb": round(grown / 2**20 * 100_000 / count, 1),
        "bytes_per_record": round(grown / count),
        "tracked_objects_per_record": round((len(gc.get_objects()) - objects_before) / count, 4),
        "gc_while_recording": during,
        "full_collection_after_ms": round(full_s * 1000, 2),
        "write_us_per_record": round(write_s / count * 1e6, 2),
    }
    client = CONNECTIONS // 2 + 9  # a client that polls (n % 10 == 9): 1/1,000 of the polls
    key, task = f"vk_bench{client:04d}abcdefghijklmnop", f"task_{client:04d}_3"
    seconds, polls = timed(lambda: store.records("poll"))
    out["read_all_polls"] = {"records": len(polls), "ms": round(seconds * 1000, 1),
                             "us_per_record": round(seconds / max(1, len(polls)) * 1e6, 2)}
    del polls
    seconds, polls = timed(lambda: store.records("poll", key=key))
    out["read_one_key_polls"] = {"records": len(polls), "ms": round(seconds * 1000, 2)}
    seconds, polls = timed(lambda: store.records("poll", task_id=task))
    out["read_one_task_polls"] = {"records": len(polls), "ms": round(seconds * 1000, 2)}
    if hasattr(store, "stats"):
        out["recorder"] = store.stats()
        seconds, page = timed(lambda: store.page(kinds={"poll"}, key=key, limit=1000))
        out["timeline_page_one_key_ms"] = round(seconds * 1000, 2)
    return out


def spawn(spec: dict[str, Any], timeout: float, candidate_root: Path | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its JSON answer. A ``+candidate`` variant
    imports ``simulator`` from ``candidate_root``."""
    command = [sys.executable, "-m", "benchmarks.bench_recorder", "--worker", json.dumps(spec)]
    env = dict(os.environ)
    if spec["variant"].endswith("+candidate") and candidate_root is not None:
        env[SIM_ROOT_ENV] = str(candidate_root.resolve())
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"worker {spec} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_sim_root(args.sim_root)
    if args.worker is not None:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    report: dict[str, Any] = {"benchmark": "recorder", "environment": environment(),
                              "load_average_start": load_average(),
                              "settings": {"records": args.records, "hour_records": args.hour_records,
                                           "rounds": args.rounds, "connections": CONNECTIONS,
                                           "mix": "90% event (send_group to 1 of 1,000), 10% poll"}}
    rounds: list[dict[str, Any]] = []
    variants = [*VARIANTS, *(["recorder+candidate"] if args.candidate_root else [])]
    for number in range(args.rounds):
        for variant in variants if number % 2 == 0 else reversed(variants):
            result = spawn({"variant": variant, "records": args.records}, timeout=600,
                           candidate_root=args.candidate_root)
            result["round"] = number + 1
            rounds.append(result)
            print(f"round {number + 1} {variant}: {result['rss_per_100k_mb']} MB per 100k records, "
                  f"{result['tracked_objects_per_record']} tracked objects/record, "
                  f"full gc {result['full_collection_after_ms']} ms, "
                  f"write {result['write_us_per_record']} µs/record", flush=True)
    report["rounds"] = rounds
    summary: dict[str, Any] = {}
    for variant in variants:
        mine = [r for r in rounds if r["variant"] == variant]
        summary[variant] = {
            "rss_per_100k_mb": median(r["rss_per_100k_mb"] for r in mine),
            "tracked_objects_per_record": median(r["tracked_objects_per_record"] for r in mine),
            "full_collection_after_ms": median(r["full_collection_after_ms"] for r in mine),
            "longest_gc_pause_while_recording_ms": max(max(r["gc_while_recording"]["max_pause_ms"])
                                                       for r in mine),
            "write_us_per_record": median(r["write_us_per_record"] for r in mine),
            "read_all_polls_us_per_record": median(r["read_all_polls"]["us_per_record"] for r in mine),
            "read_one_key_polls_ms": median(r["read_one_key_polls"]["ms"] for r in mine),
        }
    base, mine = summary["list-of-dicts"], summary["recorder"]
    for variant in variants[1:]:
        summary[f"ratio_rss_{variant}_to_baseline"] = ratio(summary[variant]["rss_per_100k_mb"],
                                                            base["rss_per_100k_mb"])
    report["summary"] = summary
    if args.hour_records:
        # --quick shrinks the cap so that the smoke run spills too.
        hour = spawn({"variant": "recorder", "records": args.hour_records,
                      "max_records": 10_000 if args.quick else None}, timeout=3600)
        scale = args.hour_records / args.records
        hour["baseline_rss_growth_mb_extrapolated"] = round(
            base["rss_per_100k_mb"] * args.hour_records / 100_000, 1)
        hour["definition"] = (f"{args.hour_records:,} records of the mix above (1,000 events/s for "
                              f"{args.hour_records / 1000:,.0f} s), recorded as fast as possible")
        hour["scale_to_measurement"] = round(scale, 1)
        report["hour_equivalent"] = hour
        print(f"one-hour-equivalent ({args.hour_records:,} records): RSS +{hour['rss_growth_mb']} MB "
              f"(baseline extrapolated +{hour['baseline_rss_growth_mb_extrapolated']} MB), "
              f"longest gc pause {max(hour['gc_while_recording']['max_pause_ms'])} ms, "
              f"one key's polls read back in {hour['read_one_key_polls']['ms']} ms", flush=True)
    report["load_average_end"] = load_average()
    path = write_report("recorder", report, args.out)
    print(f"recorder: {mine['rss_per_100k_mb']} MB per 100k records vs {base['rss_per_100k_mb']} MB "
          f"(list of dicts); written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
