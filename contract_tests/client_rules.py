"""The C-* rules: how each is provoked on a live run, and how it is judged.

Each ``check_*`` takes a started :class:`ContractRun`, makes the simulator do what exposes the
rule (tasks with chosen scripts, faults), waits as long as the client's declared numbers say it
may take, and returns a :class:`Verdict` built from the simulator's timeline and the client's
stamped observations. Rules never look at the client's internals.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from contract_tests.driver import Observation
from contract_tests.session import ContractRun
from contract_tests.timing import ms
from contract_tests.verdict import Verdict
from simulator.recorder import Record

TERMINAL_OBS = ("completed", "failed", "timeout")
TERMINAL_STATUS = ("completed", "failed", "cancelled", "timedout")


# -- shared helpers -------------------------------------------------------------------------------
def _client(run: ContractRun):
    assert run.client is not None
    return run.client


def _polls(run: ContractRun, task_id: str) -> list[Record]:
    return [r for r in run.records("poll", task_id=task_id) if r.get("key") == run.key]


def _attempts(run: ContractRun, after: float) -> list[Record]:
    """Connection attempts of this client after ``after`` (wall): negotiates (served or refused)
    and WebSocket connects without negotiate."""
    kinds = ("negotiate", "connection_refused", "skip_negotiation")
    found = [r for r in run.records() if r.kind in kinds and r.wall > after and r.get("key") == run.key
             and (r.kind != "connection_refused" or r.get("stage") == "negotiate" or
                  r.get("stage") == "upgrade")]
    return sorted(found, key=lambda r: r.seq)


def _handshakes(run: ContractRun) -> list[Record]:
    return [r for r in run.records("handshake", ok=True) if r.get("key") == run.key]


def _wait_connected(run: ContractRun, count: int = 1, timeout: float = 15.0) -> Record | None:
    found = run.wait_until(lambda: len(_handshakes(run)) >= count, timeout)
    return _handshakes(run)[count - 1] if found else None


def _terminal_obs(run: ContractRun, task_id: str) -> list[Observation]:
    return [o for o in _client(run).seen() if o.obs in TERMINAL_OBS and o.get("task_id") == task_id]


def _wait_terminal(run: ContractRun, task_id: str, timeout: float) -> Observation | None:
    found = run.wait_until(lambda: _terminal_obs(run, task_id), timeout)
    return found[0] if found else None


def _fmt(records: list[Record], t0: float, what: Callable[[Record], str] = lambda r: r.kind) -> list[str]:
    return [f"+{ms(r.wall - t0)} {what(r)}" for r in records]


def _no_client(rule: str) -> Verdict:
    return Verdict(rule, False, "the client never connected to the hub", expected="a SignalR connection",
                   observed="no successful handshake for the client's key")


# -- polling --------------------------------------------------------------------------------------
def check_poll_interval(run: ContractRun) -> Verdict:
    rule, p, tol = "C-POLL-INTERVAL", run.profile, run.tolerance
    interval = p.poll_interval_ms / 1000
    task_id = run.track(script="long", via="polling")
    run.wait_until(lambda: len(_polls(run, task_id)) >= 5 or _terminal_obs(run, task_id),
                   interval * 6 + 10)
    polls = _polls(run, task_id)
    if len(polls) < 2:
        return Verdict(rule, False, f"only {len(polls)} poll(s) seen; cannot judge the interval",
                       expected=f"polls every {ms(interval)}", observed=f"{len(polls)} poll(s)")
    gaps = [b.wall - a.wall for a, b in zip(polls, polls[1:], strict=False)]
    early = [g for g in gaps if tol.too_early(interval, g)]
    return Verdict(
        rule, not early,
        f"{len(early)} of {len(gaps)} gaps shorter than the declared interval" if early
        else f"{len(gaps)} gaps, none shorter than the declared interval",
        expected=f"successive polls ≥ {ms(interval)} apart", observed=f"shortest gap {ms(min(gaps))}",
        tolerance=f"early by at most {ms(tol.early_s)}",
        evidence=_fmt(polls, polls[0].wall, lambda r: f"poll {r.get('status')}"),
        numbers={"min_gap_ms": min(gaps) * 1000, "gaps": len(gaps)},
    )


def check_poll_limit(run: ContractRun) -> Verdict:
    rule, p = "C-POLL-LIMIT", run.profile
    interval = p.poll_interval_ms / 1000
    task_id = run.track(script="never", via="polling")
    budget = p.poll_limit * interval * 1.3 + 5
    timeout_obs = run.wait_until(lambda: _client(run).seen("timeout", task_id=task_id), budget)
    time.sleep(min(2 * interval + 0.5, 10))  # would it poll after reporting the timeout?
    polls = _polls(run, task_id)
    after = [r for r in polls if timeout_obs and r.wall > timeout_obs[0].wall]
    problems = []
    if len(polls) > p.poll_limit:
        problems.append(f"{len(polls)} polls, over the limit of {p.poll_limit}")
    if not timeout_obs:
        problems.append(f"no timeout reported within {budget:.0f} s")
    if after:
        problems.append(f"{len(after)} poll(s) after reporting the timeout")
    return Verdict(rule, not problems, "; ".join(problems) or "stopped at the limit and reported a timeout",
                   expected=f"at most {p.poll_limit} polls, then a timeout observation",
                   observed=f"{len(polls)} polls; timeout {'reported' if timeout_obs else 'not reported'}",
                   numbers={"polls": len(polls), "limit": p.poll_limit})


def check_poll_stop(run: ContractRun) -> Verdict:
    rule, p = "C-POLL-STOP", run.profile
    interval = p.poll_interval_ms / 1000
    task_id = run.track(script="quick", via="polling")
    run.wait_until(lambda: any(r.get("task_status") in TERMINAL_STATUS for r in _polls(run, task_id)),
                   interval * 4 + 10)
    time.sleep(3 * interval + 0.5)
    polls = _polls(run, task_id)
    first_terminal = next((r for r in polls if r.get("task_status") in TERMINAL_STATUS), None)
    if first_terminal is None:
        return Verdict(rule, False, "no poll ever saw the terminal status", observed=f"{len(polls)} polls")
    after = [r for r in polls if r.seq > first_terminal.seq]
    return Verdict(rule, not after,
                   f"{len(after)} poll(s) after the terminal status was served" if after
                   else "no poll after the terminal status",
                   expected="no poll after a terminal status was received",
                   observed=f"{len(after)} later poll(s) within {ms(3 * interval + 0.5)}",
                   evidence=_fmt(polls, polls[0].wall, lambda r: f"poll → {r.get('task_status')}"),
                   numbers={"polls_after_terminal": len(after)})


def check_poll_errors(run: ContractRun) -> Verdict:
    rule, p = "C-POLL-ERRORS", run.profile
    interval = p.poll_interval_ms / 1000
    run.inject("poll_errors", count=2, status=500)
    task_id = run.track(script="quick", via="polling")
    outcome = _wait_terminal(run, task_id, interval * 6 + 10)
    polls = _polls(run, task_id)
    failed = [r for r in polls if r.get("fault")]
    ok = outcome is not None and outcome.obs == "completed"
    return Verdict(rule, ok,
                   "kept polling through failed polls and reported the outcome" if ok
                   else "tracking ended or stalled after failed polls",
                   expected="polling goes on after a 500 and the completion is reported",
                   observed=f"{len(failed)} failed poll(s), {len(polls) - len(failed)} good; "
                            f"outcome {outcome.obs if outcome else 'none'}",
                   evidence=_fmt(polls, polls[0].wall if polls else 0, lambda r: f"poll {r.get('status')}"))


def check_retry_after(run: ContractRun, status: int = 429) -> Verdict:
    rule, p, tol = "C-RETRY-AFTER", run.profile, run.tolerance
    interval = p.poll_interval_ms / 1000
    retry_after = max(1, math.ceil(2 * interval + 0.5))
    run.inject("poll_errors", count=1, status=status, retry_after=retry_after)
    task_id = run.track(script="long", via="polling")
    run.wait_until(lambda: len(_polls(run, task_id)) >= 3, retry_after + interval * 3 + 10)
    polls = _polls(run, task_id)
    faulted = next((i for i, r in enumerate(polls) if r.get("fault")), None)
    if faulted is None or faulted + 1 >= len(polls):
        return Verdict(rule, False, "no poll after the throttled one", observed=f"{len(polls)} polls")
    gap = polls[faulted + 1].wall - polls[faulted].wall
    ok = not tol.too_early(retry_after, gap)
    return Verdict(rule, ok,
                   f"next request {ms(gap)} after a {status} with Retry-After: {retry_after}",
                   expected=f"≥ {ms(retry_after)} after the {status}", observed=ms(gap),
                   tolerance=f"early by at most {ms(tol.early_s)}",
                   evidence=_fmt(polls, polls[0].wall, lambda r: f"poll {r.get('status')}"),
                   numbers={"gap_ms": gap * 1000, "retry_after_s": retry_after})


# -- reconnection ---------------------------------------------------------------------------------
def _drop_time(run: ContractRun) -> float:
    closes = [r for r in run.records("server_close") if r.get("key") == run.key]
    return closes[0].wall if closes else time.time()


def _manual_restart(run: ContractRun, attempt: Record) -> bool:
    """Did the client report itself disconnected before this attempt (a manual restart)?"""
    states = [o for o in _client(run).seen("state") if o.wall < attempt.wall]
    return bool(states) and states[-1].get("state") in ("disconnected", "connecting")


def check_reconnect_schedule(run: ContractRun) -> Verdict:
    rule, p, tol = "C-RECONNECT-SCHEDULE", run.profile, run.tolerance
    delays = list(p.reconnect_delays_s)
    manual = p.manual_restart_ms / 1000
    run.track(script="never", via="signalr")
    if _wait_connected(run) is None:
        return _no_client(rule)
    time.sleep(0.5)
    # Every automatic attempt and one manual restart fail, so the whole schedule is exercised.
    run.inject("refuse_reconnects", count=len(delays) + 5, how="negotiate_503")
    run.inject("drop_connections", mode="abort")
    t0 = _drop_time(run)
    window = sum(delays) + sum(tol.late_allowance(d) for d in delays) + 2
    run.wait_until(lambda: len(_attempts(run, t0)) >= len(delays), window)
    attempts = _attempts(run, t0)
    last = attempts[len(delays) - 1].wall if len(attempts) >= len(delays) else time.time()
    # Stay long enough to see an attempt the schedule does not allow.
    tail = max(delays[-1], manual) + tol.late_allowance(max(delays[-1], manual)) + 1
    run.wait_until(lambda: time.time() > last + tail, tail + 1)
    attempts = _attempts(run, t0)
    problems: list[str] = []
    evidence: list[str] = []
    previous = t0
    for i, attempt in enumerate(attempts):
        gap = attempt.wall - previous
        previous = attempt.wall
        if i < len(delays):
            want = delays[i]
            verdict = ("early" if tol.too_early(want, gap) else "late" if tol.too_late(want, gap) else "ok")
            evidence.append(f"attempt {i + 1}: {ms(gap)} after the previous (declared {ms(want)}) {verdict}")
            if verdict != "ok":
                problems.append(f"attempt {i + 1} {verdict}: {ms(gap)} vs {ms(want)}")
        elif i == len(delays) and not tol.too_early(manual, gap) and _manual_restart(run, attempt):
            evidence.append(f"attempt {i + 1}: manual restart {ms(gap)} after the last (≥ {ms(manual)}) ok")
        else:
            evidence.append(f"attempt {i + 1}: {ms(gap)} after the previous: beyond the schedule")
            problems.append(f"attempt {i + 1} after the schedule ended")
    if len(attempts) < len(delays):
        problems.append(f"only {len(attempts)} of {len(delays)} scheduled attempts")
    return Verdict(rule, not problems,
                   "; ".join(problems) or "attempts followed the declared delays, then stopped",
                   expected=f"delays {[ms(d) for d in delays]} then no automatic attempt",
                   observed=f"{len(attempts)} attempt(s)", tolerance=tol.describe(), evidence=evidence,
                   numbers={"attempts": len(attempts),
                            "gaps_ms": [round((b.wall - a) * 1000) for a, b in
                                        zip([t0] + [x.wall for x in attempts], attempts, strict=False)]})


def check_reconnect_close(run: ContractRun) -> Verdict:
    rule, p, tol = "C-RECONNECT-CLOSE", run.profile, run.tolerance
    manual = p.manual_restart_ms / 1000
    run.track(script="never", via="signalr")
    if _wait_connected(run) is None:
        return _no_client(rule)
    time.sleep(0.5)
    run.inject("drop_connections", mode="close")
    t0 = _drop_time(run)
    window = manual + tol.late_allowance(manual) + 1.5
    run.wait_until(lambda: time.time() > t0 + window, window + 1)
    attempts = _attempts(run, t0)
    early = [a for a in attempts if tol.too_early(manual, a.wall - t0)]
    return Verdict(rule, not early and len(attempts) <= 1,
                   f"{len(early)} attempt(s) sooner than the declared manual restart delay" if early
                   else f"{len(attempts)} attempt(s); none automatic" if len(attempts) <= 1
                   else f"{len(attempts)} attempts after a Close without allowReconnect",
                   expected=f"no automatic reconnect; a manual restart no sooner than {ms(manual)}",
                   observed=", ".join(ms(a.wall - t0) for a in attempts) or "no attempt",
                   tolerance=f"early by at most {ms(tol.early_s)}", evidence=_fmt(attempts, t0))


def _subscribes(run: ContractRun, task_id: str, target: str) -> list[Record]:
    return [r for r in run.records("invocation", target=target) if r.get("key") == run.key
            and r.get("arguments") == [task_id]]


def check_resubscribe(run: ContractRun) -> Verdict:
    rule, tol = "C-RESUBSCRIBE", run.tolerance
    task_id = run.track(script="long", via="signalr")
    if not run.wait_until(lambda: _subscribes(run, task_id, run.hub("image").subscribe), 15):
        return Verdict(rule, False, "the client never subscribed", expected="SubscribeToTask before the drop")
    run.inject("drop_connections", mode="abort")
    second = _wait_connected(run, 2, timeout=sum(run.profile.reconnect_delays_s[:2]) + 10)
    if second is None:
        return Verdict(rule, False, "the client did not reconnect", expected="a reconnect after the drop")
    budget = 2.0 + tol.late_floor_s
    again = run.wait_until(lambda: [r for r in _subscribes(run, task_id, run.hub("image").subscribe)
                                    if r.get("connection_id") == second.get("connection_id")], budget)
    return Verdict(rule, bool(again),
                   "subscribed again on the new connection" if again
                   else "no SubscribeToTask for the active task on the new connection",
                   expected=f"SubscribeToTask({task_id}) within {ms(budget)} of the reconnect",
                   observed=f"after {ms(again[0].wall - second.wall)}" if again else "none")


def _refusals_to_outlast(delays: list[float], seconds: float) -> int:
    total = 0.0
    for i, delay in enumerate(delays):
        total += delay
        if total >= seconds:
            return i
    return len(delays)


def check_no_lost_terminal(run: ContractRun) -> Verdict:
    rule, p, tol = "C-NO-LOST-TERMINAL", run.profile, run.tolerance
    created = time.time()
    task_id = run.track(script="ends-while-away", via="signalr")
    if not run.wait_until(lambda: _client(run).seen("progress", task_id=task_id), 10):
        return Verdict(rule, False, "no progress before the drop", expected="progress 10 at about 1 s")
    # Keep the client away until well after the task ends (4 s after creation).
    away = created + 4.0 + 1.0 - time.time()
    refusals = _refusals_to_outlast(list(p.reconnect_delays_s), away)
    if refusals:
        run.inject("refuse_reconnects", count=refusals, how="negotiate_503")
    connected_before = len(_handshakes(run))
    run.inject("drop_connections", mode="abort")
    wait = sum(p.reconnect_delays_s) + p.manual_restart_ms / 1000 + p.poll_interval_ms / 1000 + 10
    outcome = _wait_terminal(run, task_id, wait)
    back = _handshakes(run)[connected_before:] if len(_handshakes(run)) > connected_before else []
    state = run.task_state(task_id)
    if outcome is None:
        return Verdict(rule, False, "the task's completion was never reported",
                       expected="completed reported within one poll interval of the reconnect",
                       observed=f"reconnected: {'yes' if back else 'no'}; server status {state['status']}")
    allowed = p.poll_interval_ms / 1000 + tol.late_allowance(p.poll_interval_ms / 1000)
    ended = [r.wall for r in run.records("task_event", task_id=task_id) if r.get("event") in TERMINAL_STATUS]
    # Counted from the reconnect, or from the end of the task if the client was back before it
    # (then it learns the end like any other event).
    since = max([back[0].wall] + ended[:1]) if back else None
    late = since is not None and outcome.wall - since > allowed
    away_at_end = bool(back and ended and back[0].wall > ended[0])
    right = outcome.obs == "completed" and run.result_matches(task_id, outcome.get("result"))
    return Verdict(rule, right and not late,
                   "reported the completion that happened while disconnected" if right and not late
                   else "wrong outcome" if not right else "reported too late",
                   expected=f"completed with the server's result, ≤ {ms(allowed)} after reconnecting",
                   observed=f"{outcome.obs} {ms(outcome.wall - since) if since else '?'} after "
                            + ("reconnecting" if away_at_end else "the task ended (the client was back "
                               "before it ended)"),
                   tolerance=run.tolerance.describe())


def check_fallback(run: ContractRun) -> Verdict:
    rule, p = "C-FALLBACK", run.profile
    run.inject("refuse_reconnects", count=1000, how="negotiate_503")
    run.inject("refuse_reconnects", count=1000, how="upgrade_refused")
    task_id = run.track(script="quick", via="auto")
    outcome = _wait_terminal(run, task_id, p.poll_interval_ms / 1000 * 3 + 15)
    polls = _polls(run, task_id)
    ok = (outcome is not None and outcome.obs == "completed"
          and run.result_matches(task_id, outcome.get("result")))
    return Verdict(rule, ok, "tracked the task by polling and reported its outcome" if ok
                   else "no outcome while SignalR could not connect",
                   expected="polling fallback reports the completion",
                   observed=f"{len(polls)} poll(s); outcome {outcome.obs if outcome else 'none'}")


# -- outcomes, latency, auth, pool, cleanup -------------------------------------------------------
def check_outcome(run: ContractRun) -> Verdict:
    rule = "C-OUTCOME"
    # A progress event held back so that it arrives after later ones: progress must not go back.
    stepped = run.create_task("image", "stepped")
    run.inject("delay_event", nth=1, delay=0.4, channel="signalr")
    _client(run).track(stepped, "image", "signalr")
    tasks = [stepped, run.track(script="quick"), run.track(script="fail"), run.track("video", "quick")]
    for task_id in tasks:
        _wait_terminal(run, task_id, 15)
    time.sleep(1.5)  # room for duplicates and late progress
    problems, evidence = [], []
    for task_id in tasks:
        state = run.task_state(task_id)
        seen = [o for o in _client(run).seen() if o.get("task_id") == task_id]
        terminal = [o for o in seen if o.obs in TERMINAL_OBS]
        progress = [o.get("progress") for o in seen if o.obs == "progress"]
        evidence.append(f"{task_id}: server {state['status']}; client "
                        + ", ".join(f"{o.obs}{'=' + str(o.get('progress')) if o.obs == 'progress' else ''}"
                                    for o in seen))
        if len(terminal) != 1:
            problems.append(f"{task_id}: {len(terminal)} terminal reports")
        elif state["status"] == "completed" and (
                terminal[0].obs != "completed" or not run.result_matches(task_id, terminal[0].get("result"))):
            problems.append(f"{task_id}: reported {terminal[0].obs} with another result than the server's")
        elif state["status"] == "failed" and (terminal[0].obs != "failed"
                                              or terminal[0].get("error") != state["error"]):
            problems.append(f"{task_id}: reported {terminal[0].obs} / {terminal[0].get('error')!r}, "
                            f"server failed with {state['error']!r}")
        if any(b < a for a, b in zip(progress, progress[1:], strict=False)):
            problems.append(f"{task_id}: progress went backwards {progress}")
        if terminal and any(o.obs == "progress" and o.wall > terminal[0].wall for o in seen):
            problems.append(f"{task_id}: progress after the terminal report")
    return Verdict(rule, not problems, "; ".join(problems) or "each outcome once, right, progress monotonic",
                   expected="one terminal report per task with the server's result/error; "
                            "progress never backwards nor after the end",
                   observed=f"{len(problems)} problem(s) over {len(tasks)} tasks", evidence=evidence)


def _outcome_problems(run: ContractRun, task_id: str) -> list[str]:
    """What C-OUTCOME finds wrong with one task's reports (empty: nothing)."""
    state = run.task_state(task_id)
    seen = [o for o in _client(run).seen() if o.get("task_id") == task_id]
    terminal = [o for o in seen if o.obs in TERMINAL_OBS]
    progress = [o.get("progress") for o in seen if o.obs == "progress"]
    problems = []
    if len(terminal) != 1:
        problems.append(f"{len(terminal)} terminal reports (server: {state['status']})")
    elif state["status"] == "completed" and (terminal[0].obs != "completed"
                                             or not run.result_matches(task_id, terminal[0].get("result"))):
        problems.append(f"reported {terminal[0].obs} with another result than the server's")
    elif state["status"] in ("failed", "timedout", "cancelled") and terminal[0].obs not in (
            "failed", "timeout"):
        problems.append(f"reported {terminal[0].obs}; the server says {state['status']}")
    elif state["status"] == "failed" and terminal[0].get("error") != state["error"]:
        problems.append(f"error {terminal[0].get('error')!r}, the server's is {state['error']!r}")
    if any(b < a for a, b in zip(progress, progress[1:], strict=False)):
        problems.append(f"progress went backwards {progress}")
    if terminal and any(o.obs == "progress" and o.wall > terminal[0].wall for o in seen):
        problems.append("progress after the terminal report")
    return problems


def check_outcome_generated(run: ContractRun, examples: int = 4) -> Verdict:
    """C-OUTCOME over Hypothesis-drawn task timelines, each with a drawn fault (a dropped
    connection, a refused reconnect, a held-back event, or none). Seeded (derandomised), so a
    failure replays; the failing timeline and fault are in the verdict."""
    import threading

    from hypothesis import HealthCheck, Phase, given, settings

    from simulator.scenarios import parse_scenario
    from simulator.scenarios.strategies import client_faults, task_scripts

    rule = "C-OUTCOME"
    tried: list[str] = []
    failure: list[str] = []
    counter = iter(range(1_000_000))

    def arm(fault: dict[str, Any]) -> None:
        if fault["kind"] == "refused_drop":
            run.inject("refuse_reconnects", count=1, how="negotiate_503")
            run.inject("drop_connections", mode="abort")
        elif fault["kind"] == "drop_connections":
            run.inject("drop_connections", mode=fault["mode"])
        else:
            run.inject(fault["kind"], **{k: v for k, v in fault.items() if k not in ("kind", "at")})

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
    @given(script=task_scripts(), fault=client_faults())
    def one_timeline(script: dict[str, Any], fault: dict[str, Any] | None) -> None:
        name = f"generated-{next(counter)}"
        parsed = parse_scenario({"name": name, "scripts": {name: script}}, "generated").scripts[name]
        assert run.background is not None
        run.background.call(run.simulator.tasks.register_script, name, parsed)
        engine = run.simulator.tasks
        task_id = run.background.call(lambda: engine.create(_request(run.key), script=name).task_id)
        timer = None
        if fault is not None and fault["kind"] == "delay_event":
            arm(fault)
        elif fault is not None:
            timer = threading.Timer(fault["at"], arm, (fault,))
            timer.start()
        _client(run).track(task_id, "image", "signalr")
        length = sum(float(step.get("after", 0)) for step in script["steps"])
        _wait_terminal(run, task_id, length + sum(run.profile.reconnect_delays_s[:2])
                       + run.profile.poll_interval_ms / 1000 + 10)
        if timer is not None:
            timer.join()
        time.sleep(0.8)  # room for duplicates
        _wait_connected(run, len(_handshakes(run)), timeout=10)
        problems = _outcome_problems(run, task_id)
        what = f"{fault['kind']}{':' + fault['mode'] if 'mode' in fault else ''}" if fault else "none"
        tried.append(f"{task_id}: {len(script['steps'])} steps → {script['steps'][-1]['status']}, "
                     f"fault {what}: {'; '.join(problems) or 'ok'}")
        if problems:
            failure[:] = [f"timeline {script}", f"fault {fault}", *problems]
            raise AssertionError("; ".join(problems))

    with contextlib.suppress(AssertionError):  # the failing example is kept in ``failure``
        one_timeline()
    return Verdict(rule, not failure,
                   f"{len(tried)} generated timeline(s), each with a drawn fault: "
                   + ("all reported right" if not failure else "a timeline was reported wrong"),
                   expected="one right terminal report per task, progress monotonic, whatever the fault",
                   observed="; ".join(failure[2:]) or f"{len(tried)} timelines ok",
                   evidence=tried + failure[:2], numbers={"timelines": len(tried)})


def _request(key: str) -> Any:
    from simulator.tasks.model import TaskRequest

    return TaskRequest(kind="image", prompt="generated timeline", model="contract-model", key=key)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def check_latency_signalr(run: ContractRun) -> Verdict:
    rule, budget = "C-LATENCY", run.profile.signalr_p95_ms
    tasks = [run.track(script="quick") for _ in range(4)]
    for task_id in tasks:
        _wait_terminal(run, task_id, 15)
    samples: list[float] = []
    for record in run.records("event"):
        task_id = record.get("task_id")
        if task_id not in tasks or not record.get("recipients"):
            continue
        decode = run.simulator.profile.decode_event
        event = decode(record.get("target"), record.get("arguments") or []) if decode else None
        if event is None:
            continue
        for o in _client(run).seen(task_id=task_id):
            if (event.kind == "progress" and o.obs == "progress" and o.get("progress") == event.progress) or (
                    event.kind == "completed" and o.obs == "completed") or (
                    event.kind in ("failed", "cancelled") and o.obs == "failed"):
                samples.append(o.wall * 1000 - record.get("emit_time_ms"))
                break
    if not samples:
        return Verdict(rule, False, "no event was reported", expected=f"p95 < {budget:.0f} ms")
    p95 = _percentile(samples, 0.95)
    return Verdict(rule, p95 < budget,
                   f"SignalR emit → report p95 {p95:.1f} ms over {len(samples)} events",
                   expected=f"p95 < {budget:.0f} ms", observed=f"p50 {statistics.median(samples):.1f} ms, "
                   f"p95 {p95:.1f} ms, max {max(samples):.1f} ms",
                   numbers={"p50_ms": statistics.median(samples), "p95_ms": p95, "n": len(samples)})


def check_latency_polling(run: ContractRun) -> Verdict:
    rule, p = "C-LATENCY", run.profile
    budget = (p.poll_interval_ms + p.polling_slack_ms) / 1000
    task_id = run.track(script="quick", via="polling")
    outcome = _wait_terminal(run, task_id, budget * 3 + 10)
    events = [r for r in run.records("task_event", task_id=task_id) if r.get("event") == "completed"]
    if outcome is None or not events:
        return Verdict(rule, False, "no completion reported", expected=f"< {ms(budget)} after completion")
    latency = outcome.wall - events[0].wall
    return Verdict(rule, latency < budget, f"polling: completion reported {ms(latency)} after it happened",
                   expected=f"< interval + {ms(p.polling_slack_ms / 1000)} = {ms(budget)}",
                   observed=ms(latency),
                   numbers={"latency_ms": latency * 1000})


def check_auth(run: ContractRun) -> Verdict:
    rule = "C-AUTH"
    task_id = run.track(script="quick", via="signalr")
    _wait_terminal(run, task_id, 15)
    rejected = run.records("auth_rejected")
    negotiates = [r for r in run.records("negotiate") if r.get("key") == run.key]
    connects = [r for r in run.records("transport_start") if r.get("key") == run.key]
    ok = not rejected and bool(negotiates or run.records("skip_negotiation")) and bool(connects)
    return Verdict(rule, ok, "the key was sent on negotiate and on the connection" if ok
                   else f"{len(rejected)} request(s) without a valid key" if rejected
                   else "no authenticated connection",
                   expected="every negotiate and connection request carries the key",
                   observed=f"{len(negotiates)} negotiate(s), {len(connects)} connection(s), "
                            f"{len(rejected)} rejected",
                   evidence=[f"{r.get('stage')}: {r.get('reason')}" for r in rejected])


def _max_concurrent(run: ContractRun) -> tuple[int, list[str]]:
    live: set[str] = set()
    peak = 0
    evidence = []
    for r in run.records():
        if r.get("key") != run.key or r.kind not in ("transport_start", "disconnect"):
            continue
        cid = r.get("connection_id")
        if r.kind == "transport_start":
            live.add(cid)
        else:
            live.discard(cid)
        peak = max(peak, len(live))
        evidence.append(f"{r.kind} {cid} ({r.get('hub')}) → {len(live)} open")
    return peak, evidence


def check_pool(run: ContractRun) -> Verdict:
    rule, limit = "C-POOL", run.profile.max_connections
    tasks = [run.track("image" if i % 2 else "video", "long") for i in range(limit + 3)]
    run.wait_until(lambda: all(_client(run).seen("progress", task_id=t) for t in tasks), 15)
    peak, evidence = _max_concurrent(run)
    return Verdict(rule, peak <= limit, f"peak {peak} concurrent connection(s) for {len(tasks)} tasks",
                   expected=f"≤ {limit}", observed=str(peak), evidence=evidence[-12:],
                   numbers={"peak_connections": peak})


def check_cleanup(run: ContractRun) -> Verdict:
    rule, tol = "C-CLEANUP", run.tolerance
    tasks = {run.track("image", "quick"): "image", run.track("video", "quick"): "video"}
    for task_id in tasks:
        _wait_terminal(run, task_id, 15)
    budget = 2.0 + tol.late_floor_s
    run.wait_until(lambda: all(_subscribes(run, t, run.hub(k).unsubscribe) for t, k in tasks.items()),
                   budget)
    missing = [t for t, k in tasks.items() if not _subscribes(run, t, run.hub(k).unsubscribe)]
    return Verdict(rule, not missing, f"{len(missing)} finished task(s) never unsubscribed" if missing
                   else "every finished task was unsubscribed",
                   expected=f"Unsubscribe… within {ms(budget)} of the terminal event",
                   observed=", ".join(missing) or "all unsubscribed")


CHECKS: dict[str, list[tuple[str, Callable[..., Verdict], dict[str, Any]]]] = {
    "C-POLL-INTERVAL": [("polling", check_poll_interval, {})],
    "C-POLL-LIMIT": [("polling", check_poll_limit, {})],
    "C-POLL-STOP": [("polling", check_poll_stop, {})],
    "C-POLL-ERRORS": [("polling", check_poll_errors, {})],
    "C-RETRY-AFTER": [("429", check_retry_after, {"status": 429}),
                      ("503", check_retry_after, {"status": 503})],
    "C-RECONNECT-SCHEDULE": [("signalr", check_reconnect_schedule, {})],
    "C-RECONNECT-CLOSE": [("signalr", check_reconnect_close, {})],
    "C-RESUBSCRIBE": [("signalr", check_resubscribe, {})],
    "C-NO-LOST-TERMINAL": [("signalr", check_no_lost_terminal, {})],
    "C-FALLBACK": [("auto", check_fallback, {})],
    "C-OUTCOME": [("signalr", check_outcome, {}), ("generated", check_outcome_generated, {})],
    "C-LATENCY": [("signalr", check_latency_signalr, {}), ("polling", check_latency_polling, {})],
    "C-AUTH": [("signalr", check_auth, {})],
    "C-POOL": [("signalr", check_pool, {})],
    "C-CLEANUP": [("signalr", check_cleanup, {})],
}


def estimated_seconds(rule: str, run_profile: Any) -> float:
    """Roughly how long a rule's check waits, from the client's declared numbers."""
    p = run_profile
    interval = p.poll_interval_ms / 1000
    if rule == "C-POLL-LIMIT":
        return p.poll_limit * interval * 1.3 + 5
    if rule == "C-RECONNECT-SCHEDULE":
        tail = max(p.reconnect_delays_s[-1], p.manual_restart_ms / 1000)
        return (sum(p.reconnect_delays_s) + tail) * 1.2 + 5
    if rule.startswith("C-POLL") or rule == "C-RETRY-AFTER":
        return interval * 6 + 5
    return 15.0
