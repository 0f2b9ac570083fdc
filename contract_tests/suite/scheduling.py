"""Running the rules side by side (``check --jobs N``): which runs first, and where.

Every C-* rule case already has its own simulator, key and client process, so the cases are
independent; the suite marks them ``independent``. With ``--jobs N`` (N > 1) the suite's
plugin runs the pre-flight in the pytest process as usual, then runs the independent cases at
most N at a time, each in a child forked from that process, longest first (by
:func:`contract_tests.client_rules.estimated_seconds`, the estimate ``--max-rule-seconds`` uses),
and a freed slot takes the longest case left, so the suite's wall time approaches its longest
rule. Everything else (the W-* rules, whose receiver is one process for the module) then runs
in the pytest process, in order.

Why forked children rather than pytest-xdist workers: a child of the warm pytest process starts
in milliseconds with the suite already imported and the session fixtures (the client's profile
and roles) already set up, where each xdist worker is a fresh interpreter that imports
hypothesis, faker and aiohttp (2–3 CPU-seconds each, measured; eight of them cost three times a
whole serial run's CPU on this two-core machine), and xdist starts a test on a worker only once
it has the next one queued there, which can put the longest rule behind another. A child runs
its case with :func:`_pytest.runner.runtestprotocol` without logging and sends the reports back
through a pipe as pytest serialises them (``pytest_report_to_serializable``, which the plugin
extends with the verdict), and the parent logs them: JUnit, the progress lines, the table and
verdicts.json are made from those reports exactly as in a serial run.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from _pytest.runner import runtestprotocol

# Each rule spends most of its time waiting on its schedule: a serial run of the fast Python
# reference used 9 CPU-seconds in 70 s (0.13 of a core, simulator and client together). Four rules
# per core then use about half of each core, which leaves the rest idle so that the simulators
# and clients get a CPU when their timers fire and the timing judgements keep their margins.
# Measured on this 2-core machine with one core kept busy by another process (load average
# 0.6-1.9): 5 back-to-back runs of each fast reference at 8 jobs gave the same verdicts every
# time (benchmarks/bench_check.py --stability). Under heavier load (4-6) the Node reference's
# verdicts once changed: the simulator's loop itself ran late, mostly because each child's first
# full collection walked the heap it inherited (now frozen, see run_side_by_side). A FAIL or
# INCONCLUSIVE judged while the simulator stalled is run again alone (contract_tests.suite.stalls).
RULES_PER_CORE = 4


def default_jobs() -> int:
    """How many rules ``check`` runs at once unless told: :data:`RULES_PER_CORE` per usable core
    (1 where processes cannot fork)."""
    if not hasattr(os, "fork"):
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, RULES_PER_CORE * cores)


def longest_first(items: list[pytest.Item], seconds: Callable[[pytest.Item], float]) -> list[pytest.Item]:
    """``items`` longest estimate first (ties keep the catalogue's order)."""
    return sorted(items, key=lambda item: -seconds(item))


@dataclass
class _Child:
    item: pytest.Item
    pid: int
    fd: int
    started: float
    data: bytearray = field(default_factory=bytearray)


Failed = Callable[[pytest.Item, str], pytest.TestReport]


def run_side_by_side(items: list[pytest.Item], jobs: int, deadline_s: float, *,
                     stop: Callable[[str], None], failed: Failed) -> list[tuple[pytest.Item, str]]:
    """Run ``items`` (in the order given, at most ``jobs`` at once) each in a forked child, and
    log their reports here as they finish. A child that outlives ``deadline_s`` (the suite's
    per-test timeout) is killed, and one that sends no reports is logged as ``failed(item, why)``;
    ``stop(message)`` ends the run when a child's fixture did (a harness error).

    Returns the cases that asked to be judged again on a run of their own, each with its first
    run's note (:mod:`contract_tests.suite.stalls`); their first reports are not logged."""
    again: list[tuple[pytest.Item, str]] = []
    # Everything alive now (pytest, Hypothesis, the suite: a big heap) is shared with the
    # children; frozen, their collector never scans it. Unfrozen, a child's first full collection
    # walked all of it, touching (and so copying) every page: the simulator's loop in that child
    # stalled 300-450 ms with eight children on two cores (Python's gc.freeze advice for fork).
    gc.collect()
    gc.freeze()
    queue = list(items)
    running: dict[int, _Child] = {}
    selector = selectors.DefaultSelector()
    try:
        while queue or running:
            while queue and len(running) < jobs and not _stopping(queue[0].session):
                child = _fork(queue.pop(0))
                running[child.fd] = child
                selector.register(child.fd, selectors.EVENT_READ)
            if not running:
                break
            for key, _ in selector.select(timeout=1.0):
                child = running[key.fd]
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    child.data += chunk
                    continue
                selector.unregister(key.fd)
                os.close(key.fd)
                os.waitpid(child.pid, 0)
                del running[key.fd]
                _log(child.item, bytes(child.data), stop, failed, again)
            now = time.monotonic()
            for fd, child in list(running.items()):
                if now - child.started > deadline_s:
                    _end(child)
                    selector.unregister(fd)
                    os.close(fd)
                    del running[fd]
                    _log(child.item, json.dumps({"error": f"timeout: over {deadline_s:g} s"}).encode(),
                         stop, failed, again)
    finally:
        for child in running.values():  # a harness error or Ctrl-C ended the run
            _end(child)
        selector.close()
        gc.unfreeze()  # this process goes on (the W-* rules): its collector sees everything again
    return again


def _end(child: _Child, grace_s: float = 10.0) -> None:
    """Interrupt a child as Ctrl-C would, so that its rule stops its client and simulator, and
    kill it if it has not exited within ``grace_s``."""
    try:
        os.kill(child.pid, signal.SIGINT)
        waited = time.monotonic() + grace_s
        while time.monotonic() < waited:
            if os.waitpid(child.pid, os.WNOHANG)[0]:
                return
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        os.waitpid(child.pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass  # already gone


def _stopping(session: pytest.Session) -> bool:
    return bool(session.shouldstop or session.shouldfail)


def _fork(item: pytest.Item) -> _Child:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the case, send its reports, leave without any cleanup
        code = 0
        try:
            os.close(read_fd)
            payload = _run_here(item)
            with os.fdopen(write_fd, "wb") as out:
                out.write(json.dumps(payload).encode())
        except BaseException:  # noqa: BLE001 - nothing may escape into the parent's code
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return _Child(item, pid, read_fd, time.monotonic())


def _run_here(item: pytest.Item) -> dict[str, object]:
    config = item.config
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None and capture.is_globally_capturing():
        # Capture files of its own: the ones inherited from the parent are shared by every child.
        capture.stop_global_capturing()
        capture.start_global_capturing()
    try:
        reports = runtestprotocol(item, log=False, nextitem=None)
    except pytest.exit.Exception as stop:
        return {"exit": str(stop.msg), "returncode": stop.returncode}
    return {"reports": [config.hook.pytest_report_to_serializable(config=config, report=r) for r in reports]}


def _log(item: pytest.Item, raw: bytes, stop: Callable[[str], None], failed: Failed,
         again: list[tuple[pytest.Item, str]]) -> None:
    config = item.config
    try:
        payload = json.loads(raw) if raw else {"error": "the child process died without reporting"}
    except ValueError:
        payload = {"error": "the child process sent a broken report"}
    if "exit" in payload:
        stop(str(payload["exit"]))
    note = next((data["conduit_run_again"] for data in payload.get("reports", [])
                 if isinstance(data, dict) and data.get("conduit_run_again")), None)
    if note:
        again.append((item, str(note)))
        return
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    if "error" in payload:
        item.ihook.pytest_runtest_logreport(report=failed(item, str(payload["error"])))
    for data in payload.get("reports", []):
        report = config.hook.pytest_report_from_serializable(config=config, data=data)
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
