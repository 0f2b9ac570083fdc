"""The simulator's own pauses, on its timeline.

Every timing the simulator stamps (an event's emit time, a poll's arrival, when a connection
dropped) is only as good as its event loop's promptness. When the loop runs late (the machine is
busy, a garbage collection, a slow handler), a client's delay looks longer than it was. A ticker
asks for a wake-up every :data:`TICK_S` and records a ``loop_stall`` whenever it woke at least
``threshold`` late, with how late: so a timing verdict can tell "the client was late" from "we
were", and a benchmark can tell the simulator's pauses from the network's.

Cost: one wake-up per tick (about 100 a second, a few microseconds each); at most one record per
tick, and only while the loop is late.
"""

from __future__ import annotations

import asyncio

from simulator.recorder import Recorder, RecordKind

# How often the ticker asks to wake up, in seconds: the resolution of a measured pause.
TICK_S = 0.01
# The least lateness worth a record, in seconds (``Simulator(stall_threshold=...)``).
DEFAULT_STALL_THRESHOLD_S = 0.02


async def watch_loop(recorder: Recorder, threshold: float = DEFAULT_STALL_THRESHOLD_S,
                     tick: float = TICK_S) -> None:
    """Record a ``loop_stall`` (``late_ms``: how much later than asked the loop woke us) each
    time the running loop wakes this task ``threshold`` seconds late or more. Runs until
    cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + tick
        await asyncio.sleep(tick)
        late = loop.time() - asked
        if late >= threshold:
            recorder.record(RecordKind.LOOP_STALL, late_ms=round(late * 1000, 1))
