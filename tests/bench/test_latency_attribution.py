"""bench_latency puts its largest emit → receive samples down to a server pause or to something
outside the server by matching them to the server loop's ``loop_stall`` records. The benchmark
itself is too slow for the suite; these check the matching on made-up records, so its verdicts
(including "too small to place") stay honest when the code changes."""

from __future__ import annotations

from benchmarks.bench_latency import loop_summary, slow_samples, stalls_in_window

T0 = 1000.0  # the window's start, Unix seconds
TICK_MS = 10.0  # the ticker's period: the matching margin


def test_a_sample_spanning_a_server_stall_is_put_down_to_the_server() -> None:
    stalls = [{"wall": 1001.050, "late_ms": 30.0}]  # late from 1001.020 to 1001.050
    slow = slow_samples([(40.0, 1_001_030.0)], stalls, TICK_MS, T0)
    assert slow["max"]["where"] == "server pause"
    assert slow["max"]["server_late_ms"] == 30.0
    assert slow["over_20ms_server_pause"] == 1


def test_a_long_sample_with_no_stall_near_it_was_delayed_outside_the_server() -> None:
    stalls = [{"wall": 1001.050, "late_ms": 30.0}]
    slow = slow_samples([(25.0, 1_001_500.0)], stalls, TICK_MS, T0)
    assert slow["max"]["where"] == "outside the server"
    assert slow["over_20ms_outside_server"] == 1


def test_a_stall_just_outside_the_span_still_counts_within_one_tick() -> None:
    # The sample ends at 1001.100; the stall's lateness starts 8 ms later, within the margin.
    stalls = [{"wall": 1001.118, "late_ms": 10.0}]
    assert slow_samples([(30.0, 1_001_070.0)], stalls, TICK_MS, T0)["max"]["where"] == "server pause"


def test_a_short_sample_with_no_stall_is_not_claimed_for_either_side() -> None:
    # A server pause under threshold (5 ms) + one tick (10 ms) may leave no record at all.
    slow = slow_samples([(12.0, 1_001_700.0)], [], TICK_MS, T0)
    assert slow["max"]["where"] == "too small to place"


def test_an_unwatched_server_gives_no_verdict() -> None:
    assert slow_samples([(50.0, 1_001_000.0)], None, TICK_MS, T0)["max"]["where"] == "not measured"
    assert loop_summary(None) == {"measured": False}


def test_the_window_counts_the_stalls_that_overlap_it() -> None:
    stalls = [{"wall": 999.0, "late_ms": 50.0},  # before the window
              {"wall": 1000.010, "late_ms": 30.0},  # began before t0, ended inside
              {"wall": 1002.0, "late_ms": 6.0}]
    inside = stalls_in_window(stalls, T0, 1003.0)
    assert loop_summary(inside) == {"measured": True, "longest_late_ms": 30.0,
                                    "pauses_ge_5ms": 2, "pauses_over_20ms": 1}
    assert loop_summary([])["longest_late_ms"] is None  # never 5 ms late: nothing to report, not 0
