"""A FAIL or INCONCLUSIVE the harness itself may have caused is judged again, on a run of its own.

A timing rule compares what the client did with times the simulator stamped: when an event was
emitted, when a connection dropped, when a poll arrived. Those stamps are only as good as the
simulator's event loop, and on a busy machine (rules side by side with ``--jobs``, another
program taking a core) that loop can wake tens of milliseconds late; a client that was on time
then looks late, or the fault a rule arranged lands too late to provoke anything (an
INCONCLUSIVE). The simulator records its own lateness on the timeline (``loop_stall``, see
:mod:`simulator.loop_watch`), so a rule's run knows how late the harness was.

The policy, in one place: a case whose verdict is FAIL or INCONCLUSIVE while the simulator
stalled longer than ``--max-stall-ms`` (default :data:`DEFAULT_MAX_STALL_MS`, the contract's
tightest tolerance: a delay may be early by at most 50 ms) is run once more, with no other rule
beside it (after the side-by-side phase with ``--jobs``; at once in a serial run), and that
second run's verdict is the one reported, with the first run's outcome and stall among its
evidence. The second verdict
stands whatever the machine does meanwhile: it was the best run the machine allowed.

A PASS is not run again, because a stall mostly makes a client look late. It could also hide a
fault (an attempt that came too early, stamped late), so every verdict whose run stalled over the
limit, PASS included, says so in its evidence with the number: a reader sees which verdicts the
machine's load touched.
"""

from __future__ import annotations

import dataclasses

import pytest

from contract_tests.verdict import Evidence, Outcome, Verdict
from simulator.loop_watch import DEFAULT_STALL_THRESHOLD_S

DEFAULT_MAX_STALL_MS = 50.0

# In the pytest process while cases run side by side (the children inherit it): a stalled verdict
# there asks to be run again alone instead of being judged again at once.
SIDE_BY_SIDE = pytest.StashKey[bool]()
# Case node id → what its first run found, for the run that judges it again (inherited by it).
FIRST_RUNS = pytest.StashKey[dict[str, str]]()
# On an item, in a side-by-side child: the note its run again will carry (rides on the report).
RUN_AGAIN = pytest.StashKey[str]()


def stall_threshold(limit_ms: float) -> float:
    """What the simulator should record (seconds): its usual threshold, or finer when the limit
    is below it, so that every stall the limit counts is on the timeline."""
    return min(DEFAULT_STALL_THRESHOLD_S, limit_ms / 1000) if limit_ms > 0 else DEFAULT_STALL_THRESHOLD_S


def stalled_verdict(verdict: Verdict, stall_ms: float, limit_ms: float) -> bool:
    """Whether ``verdict`` is a FAIL or INCONCLUSIVE judged while the simulator stalled longer
    than allowed."""
    return (verdict.outcome in (Outcome.FAIL, Outcome.INCONCLUSIVE)
            and limit_ms > 0 and stall_ms > limit_ms)


def first_run_note(verdict: Verdict, stall_ms: float, limit_ms: float, beside: bool) -> str:
    where = "beside other rules" if beside else "in this process"
    return (f"first run ({where}): {verdict.outcome.value} ({verdict.summary}) while the simulator's "
            f"event loop stalled up to {stall_ms:.0f} ms (over --max-stall-ms {limit_ms:g}); "
            "judged again on a run of its own")


def with_stalls(verdict: Verdict, stall_ms: float, limit_ms: float, first_run: str | None = None) -> Verdict:
    """``verdict`` with what the machine's load did to it in front of its evidence: the first
    run's note when this is a second run, and this run's stall when over the limit."""
    lines = [Evidence(first_run)] if first_run else []
    if limit_ms > 0 and stall_ms > limit_ms:
        lines.append(Evidence(f"the simulator's event loop stalled up to {stall_ms:.0f} ms during this run "
                              f"(over --max-stall-ms {limit_ms:g}): the machine was busy; fewer --jobs or a "
                              "quieter machine give timing more room"))
    if not lines:
        return verdict
    details = {**verdict.details, "simulator_stall_ms": round(stall_ms, 1)}
    if first_run:
        details["first_run"] = first_run
    return dataclasses.replace(verdict, evidence=(*lines, *verdict.evidence), details=details)
