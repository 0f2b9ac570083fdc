"""The load client's event measurements, fed messages directly (no socket, no Locust)."""

from __future__ import annotations

from typing import Any

from conduit_core.signalr import Invocation
from loadtests.signalr_client import EMIT_TIME_HEADER, HUBS, Received, SignalRClient


def client() -> tuple[SignalRClient, list[tuple[Any, ...]]]:
    reports: list[tuple[Any, ...]] = []
    signalr = SignalRClient("http://127.0.0.1:9", HUBS["image"].path, "vk_x",
                            report=lambda *args: reports.append(args))
    return signalr, reports


def test_latency_comes_from_the_emit_header() -> None:
    signalr, reports = client()
    seen: list[tuple[list[Any], float | None]] = []
    signalr.on("taskprogress", lambda args, received: seen.append((args, received.emit_ms)))
    signalr._on_invocation(Invocation("TaskProgress", ["t1", 10], headers={EMIT_TIME_HEADER: "1000.5"}),
                           Received(1.0505, None, 64))
    assert len(reports) == 1
    name, ms, length, error = reports[0]
    assert (name, length, error) == ("latency TaskProgress", 64, None)
    assert abs(ms - 50.0) < 1e-6
    assert seen == [(["t1", 10], 1000.5)]  # handlers match case-insensitively, as the TS client


def test_without_the_header_gaps_between_a_tasks_events_are_measured() -> None:
    """A real Conduit sends no emit time: the client measures inter-event times per task id."""
    signalr, reports = client()
    signalr._on_invocation(Invocation("TaskProgress", ["t1", 10]), Received(10.0, None, 40))
    signalr._on_invocation(Invocation("TaskProgress", ["t2", 10]), Received(10.1, None, 40))
    signalr._on_invocation(Invocation("TaskProgress", ["t1", 50]), Received(10.75, None, 40))
    signalr._on_invocation(Invocation("TaskCompleted", ["t1", {}]), Received(11.0, None, 90))
    signalr.forget("t1")
    signalr._on_invocation(Invocation("TaskProgress", ["t1", 5]), Received(20.0, None, 40))
    assert [(name, round(ms, 3)) for name, ms, _, _ in reports] == [
        ("gap TaskProgress", 750.0), ("gap TaskCompleted", 250.0)]
