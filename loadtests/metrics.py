"""Every request event's raw response time, kept for exact percentiles, across Locust workers.

Importing this module (the locustfiles do) registers Locust listeners:

- ``request``: append the response time to the sample list of its (request_type, name), count
  failures and error texts; ``SignalR reconnect`` events also keep their wall-clock time (the
  reconnect-storm figures need *when* each client came back);
- ``report_to_master`` (worker): ship the samples gathered since the last report with Locust's
  own periodic stats message; ``worker_report`` (master): merge them, so the master holds every
  sample of every worker;
- ``quitting`` / ``quit`` (master or local): with ``--conduit-report-dir``, write ``samples.json``
  and the summary (``summary.json``, ``summary.md``); with ``--conduit-threshold``, a breach sets
  the exit code to 1. A worker writes ``worker-<index>.json`` with its own totals.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

from locust import events
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from loadtests import options
from loadtests.summary import SAMPLES_FORMAT, build_summary, to_markdown
from loadtests.thresholds import ThresholdError, parse_all

log = logging.getLogger(__name__)

TIMED = frozenset({("SignalR", "reconnect")})
MAX_ERROR_TEXT = 200
SEP = "\x1f"  # joins type and name in message keys (msgpack maps need string keys)


class SampleStore:
    """Raw samples per (request_type, name); ``export``/``merge`` move them between processes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.samples: dict[tuple[str, str], array] = {}
        self.failures: Counter[tuple[str, str]] = Counter()
        self.errors: dict[tuple[str, str], Counter[str]] = {}
        self.timed: dict[tuple[str, str], list[list[float]]] = {}
        # Counts since the start, kept by workers after each export (for worker-<i>.json).
        self.totals: Counter[tuple[str, str]] = Counter()
        self.total_failures: Counter[tuple[str, str]] = Counter()
        self.started = time.time()
        self.ended: float | None = None

    def add(self, request_type: str, name: str, response_time: float, exception: Any) -> None:
        key = (request_type, name)
        bucket = self.samples.get(key)
        if bucket is None:
            bucket = self.samples[key] = array("d")
        bucket.append(float(response_time or 0.0))
        self.totals[key] += 1
        if exception is not None:
            self.failures[key] += 1
            self.total_failures[key] += 1
            text = str(exception) or type(exception).__name__
            self.errors.setdefault(key, Counter())[text[:MAX_ERROR_TEXT]] += 1
        if key in TIMED:
            self.timed.setdefault(key, []).append([time.time(), float(response_time or 0.0),
                                                   1.0 if exception is not None else 0.0])

    def export(self) -> dict[str, Any]:
        """What was gathered since the last export, as msgpack-friendly data; then forget it."""
        data = {
            "samples": {SEP.join(k): v.tolist() for k, v in self.samples.items()},
            "failures": {SEP.join(k): n for k, n in self.failures.items()},
            "errors": {SEP.join(k): dict(c) for k, c in self.errors.items()},
            "timed": {SEP.join(k): v for k, v in self.timed.items()},
        }
        self.samples, self.failures, self.errors, self.timed = {}, Counter(), {}, {}
        return data

    def merge(self, data: dict[str, Any] | None) -> None:
        if not data:
            return
        for joined, values in data.get("samples", {}).items():
            key = tuple(joined.split(SEP, 1))
            self.samples.setdefault(key, array("d")).extend(values)  # type: ignore[arg-type]
        for joined, n in data.get("failures", {}).items():
            self.failures[tuple(joined.split(SEP, 1))] += n  # type: ignore[index]
        for joined, texts in data.get("errors", {}).items():
            self.errors.setdefault(tuple(joined.split(SEP, 1)), Counter()).update(texts)  # type: ignore[arg-type]
        for joined, points in data.get("timed", {}).items():
            self.timed.setdefault(tuple(joined.split(SEP, 1)), []).extend(points)  # type: ignore[arg-type]

    def to_doc(self, **extra: Any) -> dict[str, Any]:
        return {
            "format": SAMPLES_FORMAT,
            "started": self.started,
            "ended": self.ended or time.time(),
            "entries": [
                {"type": t, "name": n, "samples": v.tolist(), "failures": self.failures.get((t, n), 0),
                 "errors": dict(self.errors.get((t, n), {}))}
                for (t, n), v in sorted(self.samples.items())
            ],
            "timed": [{"type": t, "name": n, "points": points}
                      for (t, n), points in sorted(self.timed.items())],
            **extra,
        }


STORE = SampleStore()
_state: dict[str, Any] = {"environment": None, "storm": None, "workers": set()}


def clear_storm() -> None:
    _state["storm"] = None


def record_storm(info: dict[str, Any]) -> None:
    """Called by the reconnect-storm shape (master or local process) with what it did."""
    _state["storm"] = {**(_state["storm"] or {}), **info}


def settings(environment: Any = None) -> options.Settings:
    environment = environment or _state["environment"]
    return options.Settings.load(getattr(environment, "parsed_options", None))


# -- listeners ---------------------------------------------------------------------------------
@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    options.add_arguments(parser)


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    _state["environment"] = environment
    if isinstance(environment.runner, WorkerRunner):
        return
    try:
        parse_all(settings(environment).thresholds)
    except ThresholdError as exc:
        log.error("%s", exc)
        environment.process_exit_code = 2
        if environment.runner is not None:
            environment.runner.quit()


@events.request.add_listener
def _on_request(request_type: str, name: str, response_time: float, response_length: int,
                exception: Any = None, **_: Any) -> None:
    STORE.add(request_type, name, response_time, exception)


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    data["conduit_samples"] = STORE.export()


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    if "conduit_samples" in data:
        _state["workers"].add(client_id)
    STORE.merge(data.get("conduit_samples"))


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    STORE.reset()
    _state["workers"] = set()


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    STORE.ended = time.time()


@events.quitting.add_listener
def _on_quitting(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        _write_worker_totals(environment)
        return
    summary = write_reports(environment, announce=True)
    if summary is not None and summary.get("verdict") == "fail" and environment.process_exit_code is None:
        environment.process_exit_code = 1


@events.quit.add_listener
def _on_quit(exit_code: int, **_: Any) -> None:
    environment = _state["environment"]
    if environment is not None and not isinstance(environment.runner, WorkerRunner):
        write_reports(environment)  # again: a master has every worker's final report by now
        _rewrite_final_csv(environment)


def _rewrite_final_csv(environment: Any) -> None:
    """Locust rewrites ``<prefix>_stats.csv`` once a second and not at exit, so its file can miss
    the last second (and a master the workers' final reports). Write the final table once more,
    with Locust's own columns and rows, so the CSV and our samples count the same requests."""
    prefix = getattr(getattr(environment, "parsed_options", None), "csv_prefix", None)
    if not prefix:
        return
    table = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("_stats.csv", table.requests_csv), ("_failures.csv", table.failures_csv)):
        try:
            with open(prefix + suffix, "w", newline="", encoding="utf-8") as handle:
                write(csv.writer(handle))
        except OSError:
            log.exception("could not rewrite %s%s", prefix, suffix)


# -- files -------------------------------------------------------------------------------------
def _report_dir(environment: Any) -> Path | None:
    directory = settings(environment).conduit_report_dir
    return Path(directory) if directory else None


def write_reports(environment: Any, announce: bool = False) -> dict[str, Any] | None:
    """Build the summary (when there is a report directory or a threshold) and write the files
    (when there is a report directory)."""
    directory = _report_dir(environment)
    if directory is None and not settings(environment).thresholds:
        return None
    shape = getattr(environment, "shape_class", None)
    finish = getattr(shape, "finish_storm", None)
    if callable(finish):
        try:
            finish()
        except Exception:
            log.exception("reconnect storm: could not read the simulator's timeline")
    runner = environment.runner
    # Workers that sent samples (runner.clients is empty once they have quit).
    workers = len(_state["workers"]) if isinstance(runner, MasterRunner) else None
    doc = STORE.to_doc(storm=_state["storm"], workers=workers)
    try:
        thresholds = parse_all(settings(environment).thresholds)
    except ThresholdError:
        thresholds = []
    parsed = getattr(environment, "parsed_options", None)
    run = {"host": environment.host, "users": getattr(parsed, "num_users", None),
           "spawn_rate": getattr(parsed, "spawn_rate", None), "run_time": getattr(parsed, "run_time", None),
           "user_classes": sorted(getattr(u, "__name__", str(u)) for u in environment.user_classes),
           "shape": type(shape).__name__ if shape is not None else None}
    summary = build_summary(doc, run, thresholds)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        _write_json(directory / "samples.json", doc)
        _write_json(directory / "summary.json", summary, indent=2)
        (directory / "summary.md").write_text(to_markdown(summary), encoding="utf-8")
    for verdict in summary["thresholds"] if announce else ():
        if not verdict["ok"]:
            reason = f", {verdict['reason']}" if verdict["reason"] else ""
            log.warning("threshold breached: %s (actual %s%s)", verdict["expression"],
                        verdict["actual_text"] or "-", reason)
    return summary


def _write_worker_totals(environment: Any) -> None:
    directory = _report_dir(environment)
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    index = getattr(environment.runner, "worker_index", os.getpid())
    totals = [{"type": t, "name": n, "count": c, "failures": STORE.total_failures.get((t, n), 0)}
              for (t, n), c in sorted(STORE.totals.items())]
    _write_json(directory / f"worker-{index}.json",
                {"worker_index": index, "pid": os.getpid(), "totals": totals})


def _write_json(path: Path, data: Any, indent: int | None = None) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    separators = None if indent else (",", ":")
    tmp.write_text(json.dumps(data, indent=indent, separators=separators, default=str), encoding="utf-8")
    tmp.replace(path)
