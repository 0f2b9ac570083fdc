"""Hypothesis strategies for task timelines and fault schedules that can actually be *run*.

Importable by users for their own tests (``from simulator.scenarios.strategies import
task_scripts, client_faults``): every value is in the scenario file schema, so it can be written
to YAML, passed to :func:`~simulator.scenarios.parse_scenario`, or registered on a running
simulator with ``TaskEngine.register_script``. Steps are short (sub-second), so a drawn timeline
plays out in a few seconds of real time.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_ERRORS = st.sampled_from(["Model overloaded", "Content policy violation", "Provider timeout",
                           "Invalid size for this model"])
_RESULTS = st.fixed_dictionaries({
    "images": st.lists(st.fixed_dictionaries({"url": st.sampled_from(
        ["https://cdn.example.test/a.png", "https://cdn.example.test/b.png"])}), min_size=1, max_size=2),
    "seed": st.integers(0, 2**31 - 1),
}) | st.none()


@st.composite
def task_scripts(draw: st.DrawFn, *, first_after: float = 1.0, max_steps: int = 5,
                 max_step_s: float = 0.5) -> dict[str, Any]:
    """A script: non-decreasing progress steps, then completed (with or without an explicit
    result), failed or timed out. ``first_after`` gives a client time to subscribe."""
    progress = sorted(draw(st.lists(st.integers(0, 99), max_size=max_steps)))
    gaps = st.integers(0, int(max_step_s * 1000)).map(lambda ms: ms / 1000)
    steps: list[dict[str, Any]] = []
    for i, value in enumerate(progress):
        steps.append({"after": first_after if i == 0 else draw(gaps), "progress": value})
    end = draw(st.sampled_from(["completed", "completed", "failed", "timedout"]))
    last: dict[str, Any] = {"after": first_after if not steps else draw(gaps), "status": end}
    if end == "completed":
        result = draw(_RESULTS)
        if result is not None:
            last["result"] = result
    elif end == "failed":
        last["error"] = draw(_ERRORS)
    return {"steps": [*steps, last]}


@st.composite
def client_faults(draw: st.DrawFn, *, earliest: float = 1.2, latest: float = 2.5) -> dict[str, Any] | None:
    """A fault a correct client must ride out without losing the outcome, and when to arm it
    (``at``, seconds after the task is created): none, a dropped connection (abortive, bare
    WebSocket close, or Close with allowReconnect), one refused reconnect then a drop, one of the
    next events held back, the task's SignalR events (or its terminal one) sent twice, or its
    consecutive SignalR events swapped.

    ``duplicate_event`` and ``reorder_events`` come without a ``task_id``: add the tracked task's
    (as the contract suite does) or they touch every task of the run."""
    kind = draw(st.sampled_from(["none", "drop", "refused-drop", "delay", "duplicate", "reorder"]))
    if kind == "none":
        return None
    at = draw(st.integers(int(earliest * 10), int(latest * 10))) / 10
    if kind == "drop":
        return {"kind": "drop_connections", "at": at,
                "mode": draw(st.sampled_from(["abort", "clean", "close_reconnect"]))}
    if kind == "refused-drop":
        return {"kind": "refused_drop", "at": at}
    if kind == "duplicate":
        return {"kind": "duplicate_event", "at": 0.0, "events": draw(st.sampled_from(["any", "terminal"]))}
    if kind == "reorder":
        return {"kind": "reorder_events", "at": 0.0, "after": "event",
                "events": draw(st.sampled_from(["any", "progress"])), "count": draw(st.integers(1, 2))}
    return {"kind": "delay_event", "at": 0.0, "nth": draw(st.integers(1, 3)),
            "delay": draw(st.integers(1, 6)) / 10, "channel": "signalr"}


@st.composite
def scenarios(draw: st.DrawFn, *, scripts: int = 3) -> dict[str, Any]:
    """A whole runnable scenario mapping: a few scripts, weights between them, no faults."""
    drawn = {f"s{i}": draw(task_scripts()) for i in range(draw(st.integers(1, scripts)))}
    weights = {name: draw(st.integers(1, 10)) for name in drawn}
    return {"name": "generated", "description": "drawn by simulator.scenarios.strategies",
            "scripts": drawn, "rules": [{"weights": weights}]}
