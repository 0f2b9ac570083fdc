"""The simulator notes its own pauses on the timeline (``loop_stall``), so a timing judgement
can tell the client's lateness from the server's."""

from __future__ import annotations

import time

from contract_tests.waiting import wait_until
from simulator.recorder import RecordKind


def test_a_blocked_loop_is_on_the_timeline_with_how_late_it_was(make_simulator) -> None:
    sim = make_simulator()
    recorder = sim.simulator.recorder
    sim.call(time.sleep, 0.15)  # the loop can do nothing else meanwhile, as in a long GC pause
    stalls = wait_until(lambda: recorder.records(RecordKind.LOOP_STALL), 5, "a loop_stall record")
    assert max(r.get("late_ms") for r in stalls) >= 100


def test_the_watch_can_be_turned_off(make_simulator) -> None:
    sim = make_simulator(stall_threshold=None)
    sim.call(time.sleep, 0.15)
    time.sleep(0.1)
    assert not sim.simulator.recorder.records(RecordKind.LOOP_STALL)
