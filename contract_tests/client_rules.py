"""The C-* rules: how each is provoked on a live run, and how it is judged.

Each ``check_*`` takes a started :class:`ContractRun`, makes the simulator do what exposes the
rule (tasks with chosen scripts, faults), waits as long as the client's declared numbers say it
may take, and returns a :class:`Verdict` built from the simulator's timeline and the client's
stamped observations. Rules never look at the client's internals.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conduit_core.percentiles import percentile
from contract_tests.driver import Observation
from contract_tests.provocation import not_provoked
from contract_tests.session import ContractRun
from contract_tests.timing import ms
from contract_tests.verdict import Measure, Outcome, Statement, Verdict, in_ms
from simulator.recorder import Record, RecordKind

TERMINAL_OBS = ("completed", "failed", "timeout")
TERMINAL_STATUS = ("completed", "failed", "cancelled", "timedout")


# -- shared helpers -------------------------------------------------------------------------------
def _client(run: ContractRun):
    assert run.client is not None
    return run.client


def _polls(run: ContractRun, task_id: str) -> list[Record]:
    return [r for r in run.records(RecordKind.POLL, task_id=task_id) if r.get("key") == run.key]


def _attempts(run: ContractRun, after: float) -> list[Record]:
    """Connection attempts of this client after ``after`` (wall): negotiates (served or refused)
    and WebSocket connects without negotiate."""
    kinds = ("negotiate", "connection_refused", "skip_negotiation")
    found = [r for r in run.records() if r.kind in kinds and r.wall > after and r.get("key") == run.key
             and (r.kind != "connection_refused" or r.get("stage") == "negotiate" or
                  r.get("stage") == "upgrade")]
    return sorted(found, key=lambda r: r.seq)


def _handshakes(run: ContractRun) -> list[Record]:
    return [r for r in run.records(RecordKind.HANDSHAKE, ok=True) if r.get("key") == run.key]


def _wait_connected(run: ContractRun, count: int = 1, timeout: float = 15.0) -> Record | None:
    if count < 1:  # nothing to wait for (a client that never connected)
        return None
    found = run.wait_until(lambda: len(_handshakes(run)) >= count, timeout)
    return _handshakes(run)[count - 1] if found else None


def _terminal_obs(run: ContractRun, task_id: str) -> list[Observation]:
    return [o for o in _client(run).seen() if o.obs in TERMINAL_OBS and o.get("task_id") == task_id]


def _wait_terminal(run: ContractRun, task_id: str, timeout: float) -> Observation | None:
    found = run.wait_until(lambda: _terminal_obs(run, task_id), timeout)
    return found[0] if found else None


def _ended(run: ContractRun, task_id: str) -> bool:
    """Did the task reach a terminal status on the server?"""
    return any(r.get("event") in TERMINAL_STATUS for r in run.records(RecordKind.TASK_EVENT, task_id=task_id))


def _fmt(records: list[Record], t0: float, what: Callable[[Record], str] = lambda r: r.kind) -> list[str]:
    return [f"+{ms(r.wall - t0)} {what(r)}" for r in records]


def _no_client(rule: str) -> Verdict:
    """INCONCLUSIVE: the client never connected, so nothing could be done to its connection."""
    verdict = not_provoked(rule, {"connected": False, "subscribed": False, "drops": 0, "closes": 0},
                           Statement("no successful handshake for the client's key"))
    assert verdict is not None
    return verdict


def _server_closes(run: ContractRun, after: float = 0.0) -> list[Record]:
    """The server's ends of this client's connections (the drop faults) after ``after`` (wall)."""
    return [r for r in run.records(RecordKind.SERVER_CLOSE) if r.get("key") == run.key and r.wall > after]


# -- polling --------------------------------------------------------------------------------------
def check_poll_interval(run: ContractRun) -> Verdict:
    rule, p, tol = "C-POLL-INTERVAL", run.profile, run.tolerance
    interval = p.poll_interval_ms / 1000
    task_id = run.track(script="long", via="polling")
    run.wait_until(lambda: len(_polls(run, task_id)) >= 5 or _terminal_obs(run, task_id),
                   interval * 6 + 10)
    polls = _polls(run, task_id)
    if unprovoked := not_provoked(rule, {"polls": len(polls)},
                                  Statement("{polls} of the task", polls=Measure(len(polls), "polls"))):
        return unprovoked
    gaps = [b.wall - a.wall for a, b in zip(polls, polls[1:], strict=False)]
    early = [g for g in gaps if tol.too_early(interval, g)]
    return Verdict(
        rule, Outcome.judge(not early),
        f"{len(early)} of {len(gaps)} gaps shorter than the declared interval" if early
        else f"{len(gaps)} gaps, none shorter than the declared interval",
        expected=Statement("successive polls ≥ {interval} apart", interval=in_ms(interval)),
        observed=Statement("shortest gap {min_gap} of {gaps}", min_gap=in_ms(min(gaps)),
                           gaps=Measure(len(gaps), "gaps")),
        tolerance=tol.early_statement(),
        evidence=_fmt(polls, polls[0].wall, lambda r: f"poll {r.get('status')}"),
    )


def check_poll_limit(run: ContractRun) -> Verdict:
    rule, p = "C-POLL-LIMIT", run.profile
    interval = p.poll_interval_ms / 1000
    task_id = run.track(script="never", via="polling")
    budget = p.poll_limit * interval * 1.3 + 5
    timeout_obs = run.wait_until(lambda: _client(run).seen("timeout", task_id=task_id), budget)
    time.sleep(min(2 * interval + 0.5, 10))  # would it poll after reporting the timeout?
    polls = _polls(run, task_id)
    if unprovoked := not_provoked(rule, {"polls": len(polls)},
                                  Statement("{polls} of the task", polls=Measure(len(polls), "polls"))):
        return unprovoked
    after = [r for r in polls if timeout_obs and r.wall > timeout_obs[0].wall]
    problems = []
    if len(polls) > p.poll_limit:
        problems.append(f"{len(polls)} polls, over the limit of {p.poll_limit}")
    if not timeout_obs:
        problems.append(f"no timeout reported within {budget:.0f} s")
    if after:
        problems.append(f"{len(after)} poll(s) after reporting the timeout")
    return Verdict(rule, Outcome.judge(not problems),
                   "; ".join(problems) or "stopped at the limit and reported a timeout",
                   expected=Statement("at most {limit}, then a timeout observation",
                                      limit=Measure(p.poll_limit, "polls")),
                   observed=Statement(f"{{polls}}; timeout {'reported' if timeout_obs else 'not reported'}",
                                      polls=Measure(len(polls), "polls")))


def check_poll_stop(run: ContractRun) -> Verdict:
    rule, p = "C-POLL-STOP", run.profile
    interval = p.poll_interval_ms / 1000
    task_id = run.track(script="quick", via="polling")
    run.wait_until(lambda: any(r.get("task_status") in TERMINAL_STATUS for r in _polls(run, task_id)),
                   interval * 4 + 10)
    time.sleep(3 * interval + 0.5)
    polls = _polls(run, task_id)
    first_terminal = next((r for r in polls if r.get("task_status") in TERMINAL_STATUS), None)
    if unprovoked := not_provoked(rule, {"terminal_served": first_terminal is not None},
                                  Statement("{polls}, none answered with a terminal status",
                                            polls=Measure(len(polls), "polls"))):
        return unprovoked
    assert first_terminal is not None
    after = [r for r in polls if r.seq > first_terminal.seq]
    return Verdict(rule, Outcome.judge(not after),
                   f"{len(after)} poll(s) after the terminal status was served" if after
                   else "no poll after the terminal status",
                   expected=Statement("no poll after a terminal status was received"),
                   observed=Statement("{after_terminal} later within {watched}",
                                      after_terminal=Measure(len(after), "polls"),
                                      watched=in_ms(3 * interval + 0.5)),
                   evidence=_fmt(polls, polls[0].wall, lambda r: f"poll → {r.get('task_status')}"))


def check_poll_errors(run: ContractRun) -> Verdict:
    rule, p = "C-POLL-ERRORS", run.profile
    interval = p.poll_interval_ms / 1000
    run.inject("poll_errors", count=2, status=500)
    task_id = run.track(script="quick", via="polling")
    outcome = _wait_terminal(run, task_id, interval * 6 + 10)
    polls = _polls(run, task_id)
    failed = [r for r in polls if r.get("fault")]
    if unprovoked := not_provoked(rule, {"failed_polls": len(failed)},
                                  Statement("{polls} of the task, none answered with the injected error",
                                            polls=Measure(len(polls), "polls"))):
        return unprovoked
    ok = outcome is not None and outcome.obs == "completed"
    return Verdict(rule, Outcome.judge(ok),
                   "kept polling through failed polls and reported the outcome" if ok
                   else "tracking ended or stalled after failed polls",
                   expected=Statement("polling goes on after a 500 and the completion is reported"),
                   observed=Statement(f"{{failed}} failed, {{good}} good; outcome "
                                      f"{outcome.obs if outcome else 'none'}",
                                      failed=Measure(len(failed), "polls"),
                                      good=Measure(len(polls) - len(failed), "polls")),
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
    facts = {"throttled": 0 if faulted is None else 1,
             "after_throttle": 0 if faulted is None else len(polls) - faulted - 1}
    if unprovoked := not_provoked(rule, facts, Statement("{polls} of the task",
                                                         polls=Measure(len(polls), "polls"))):
        return unprovoked
    assert faulted is not None
    gap = polls[faulted + 1].wall - polls[faulted].wall
    ok = not tol.too_early(retry_after, gap)
    return Verdict(rule, Outcome.judge(ok),
                   f"next request {ms(gap)} after a {status} with Retry-After: {retry_after}",
                   expected=Statement(f"≥ {{retry_after}} after the {status}",
                                      retry_after=in_ms(retry_after)),
                   observed=Statement("next poll after {gap}", gap=in_ms(gap)),
                   tolerance=tol.early_statement(),
                   evidence=_fmt(polls, polls[0].wall, lambda r: f"poll {r.get('status')}"))


# -- reconnection ---------------------------------------------------------------------------------
def _drop_time(run: ContractRun) -> float:
    closes = _server_closes(run)
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
    if unprovoked := not_provoked(rule, {"connected": True, "drops": len(_server_closes(run))}):
        return unprovoked
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
    starts = [t0] + [x.wall for x in attempts]
    return Verdict(rule, Outcome.judge(not problems),
                   "; ".join(problems) or "attempts followed the declared delays, then stopped",
                   expected=Statement("delays {delays} then no automatic attempt; a manual restart no "
                                      "sooner than {manual_restart}",
                                      delays=[in_ms(d) for d in delays], manual_restart=in_ms(manual)),
                   observed=Statement("{attempts} after the drop, {gaps} apart",
                                      attempts=Measure(len(attempts), "attempts"),
                                      gaps=[in_ms(b.wall - a)
                                            for a, b in zip(starts, attempts, strict=False)]),
                   tolerance=tol.statement(), evidence=evidence)


def check_reconnect_close(run: ContractRun) -> Verdict:
    rule, p, tol = "C-RECONNECT-CLOSE", run.profile, run.tolerance
    manual = p.manual_restart_ms / 1000
    run.track(script="never", via="signalr")
    if _wait_connected(run) is None:
        return _no_client(rule)
    time.sleep(0.5)
    run.inject("drop_connections", mode="close")
    closes = [r for r in _server_closes(run) if r.get("close_message") and not r.get("allow_reconnect")]
    if unprovoked := not_provoked(rule, {"connected": True, "closes": len(closes)}):
        return unprovoked
    t0 = _drop_time(run)
    window = manual + tol.late_allowance(manual) + 1.5
    run.wait_until(lambda: time.time() > t0 + window, window + 1)
    attempts = _attempts(run, t0)
    early = [a for a in attempts if tol.too_early(manual, a.wall - t0)]
    return Verdict(rule, Outcome.judge(not early and len(attempts) <= 1),
                   f"{len(early)} attempt(s) sooner than the declared manual restart delay" if early
                   else f"{len(attempts)} attempt(s); none automatic" if len(attempts) <= 1
                   else f"{len(attempts)} attempts after a Close without allowReconnect",
                   expected=Statement("no automatic reconnect; a manual restart no sooner than "
                                      "{manual_restart}",
                                      manual_restart=in_ms(manual)),
                   observed=Statement("{attempts} at {after_close} after the close",
                                      attempts=Measure(len(attempts), "attempts"),
                                      after_close=[in_ms(a.wall - t0) for a in attempts]),
                   tolerance=tol.early_statement(), evidence=_fmt(attempts, t0))


def _subscribes(run: ContractRun, task_id: str, target: str) -> list[Record]:
    return [r for r in run.records(RecordKind.INVOCATION, target=target) if r.get("key") == run.key
            and r.get("arguments") == [task_id]]


def check_resubscribe(run: ContractRun) -> Verdict:
    rule, tol = "C-RESUBSCRIBE", run.tolerance
    task_id = run.track(script="long", via="signalr")
    subscribed = bool(run.wait_until(lambda: _subscribes(run, task_id, run.hub("image").subscribe), 15))
    if subscribed:
        run.inject("drop_connections", mode="abort")
    drops = len(_server_closes(run))
    second = _wait_connected(run, 2, timeout=sum(run.profile.reconnect_delays_s[:2]) + 10) if drops else None
    if unprovoked := not_provoked(rule, {"subscribed": subscribed, "drops": drops,
                                         "reconnected": second is not None}):
        return unprovoked
    assert second is not None
    budget = 2.0 + tol.late_floor_s
    again = run.wait_until(lambda: [r for r in _subscribes(run, task_id, run.hub("image").subscribe)
                                    if r.get("connection_id") == second.get("connection_id")], budget)
    return Verdict(rule, Outcome.judge(bool(again)),
                   "subscribed again on the new connection" if again
                   else "no SubscribeToTask for the active task on the new connection",
                   expected=Statement(f"SubscribeToTask({task_id}) within {{budget}} of the reconnect",
                                      budget=in_ms(budget)),
                   observed=Statement("after {resubscribed}", resubscribed=in_ms(again[0].wall - second.wall))
                   if again else Statement("none"))


# C-NO-LOST-TERMINAL's plan. The client subscribes (progress at 1 s proves it), the server drops it
# at DROP_AT_S and refuses the automatic attempts that would bring it back before the task ends;
# the task ends between the drop and the first attempt let through, so the client comes back by its
# own schedule after the end, whatever that schedule's numbers.
AWAY_PROGRESS_AT_S = 1.0
AWAY_DROP_AT_S = 2.0
# The least time, between the drop and an automatic attempt, that leaves room to end a task in the
# middle of it: a correct client is never more than the early tolerance (50 ms) ahead of its delay.
MIN_AWAY_WINDOW_S = 0.6


@dataclass(frozen=True)
class AwayPlan:
    """How to keep a client away while a task ends: refuse the first ``refusals`` automatic
    attempts, end the task ``end_after_drop`` after the drop; attempt ``refusals + 1`` is declared
    ``back_after_drop`` after the drop."""

    refusals: int
    end_after_drop: float
    back_after_drop: float


def plan_away(delays: Sequence[float], minimum: float = MIN_AWAY_WINDOW_S) -> AwayPlan | None:
    """The plan for a declared schedule (seconds): the first automatic attempt at least ``minimum``
    after the drop is let through and the task ends halfway to it; None when no attempt is that
    late (then no task can end between the drop and an automatic return)."""
    total = 0.0
    for refused, delay in enumerate(delays):
        total += delay
        if total >= minimum:
            return AwayPlan(refused, total / 2, total)
    return None


def _away_facts(run: ContractRun, task_id: str, delays: Sequence[float]) -> tuple[dict[str, Any], list[str],
                                                                                   Record | None]:
    """What happened around the drop, read off the timeline: the facts C-NO-LOST-TERMINAL
    requires, the evidence lines, and the handshake that brought the client back."""
    drops = _server_closes(run)
    drop = drops[0] if drops else None
    ended = next((r for r in run.records(RecordKind.TASK_EVENT, task_id=task_id)
                  if r.get("event") in TERMINAL_STATUS), None)
    subscribed = any(drop is not None and r.wall < drop.wall
                     for r in _subscribes(run, task_id, run.hub("image").subscribe))
    shakes = _handshakes(run)
    facts: dict[str, Any] = {"subscribed": subscribed, "drops": len(drops), "ended_while_away": False,
                             "automatic_reconnect_after_end": False}
    if drop is None:
        return facts, [], None
    t0 = drop.wall
    timeline = [(t0, f"the server dropped the connection ({drop.get('mode')})")]
    attempts = _attempts(run, t0)
    timeline += [(a.wall, f"attempt: {a.kind}") for a in attempts]
    evidence = [f"+{ms(at - t0)} {text}" for at, text in sorted(timeline)]
    if ended is None:
        return facts, evidence, None
    timeline.append((ended.wall, f"the task {ended.get('event')} on the server"))
    evidence = [f"+{ms(at - t0)} {text}" for at, text in sorted(timeline)]
    facts["ended_while_away"] = ended.wall > t0 and not any(t0 < h.wall < ended.wall for h in shakes)
    back = next((h for h in shakes if h.wall > ended.wall), None)
    if back is None:
        return facts, evidence, None
    evidence.append(f"+{ms(back.wall - t0)} the client was back (handshake {back.get('connection_id')})")
    tries = [a for a in attempts if a.wall <= back.wall]
    manual = any(o.get("state") == "disconnected" and t0 < o.wall < back.wall
                 for o in _client(run).seen("state"))
    facts["attempts_to_return"] = len(tries)
    facts["automatic_reconnect_after_end"] = len(tries) <= len(delays) and not manual
    if manual:
        evidence.append("the client reported itself disconnected before it was back: a manual restart")
    elif len(tries) > len(delays):
        evidence.append(f"back on attempt {len(tries)}, beyond the {len(delays)} automatic ones")
    return facts, evidence, back


def check_no_lost_terminal(run: ContractRun) -> Verdict:
    rule, p, tol = "C-NO-LOST-TERMINAL", run.profile, run.tolerance
    delays = list(p.reconnect_delays_s)
    plan = plan_away(delays)
    if plan is None:
        return Verdict(rule, Outcome.INCONCLUSIVE,
                       "not provoked: no automatic attempt of the declared schedule comes late enough "
                       "for a task to end between the drop and it",
                       expected=Statement("an automatic attempt ≥ {minimum} after the drop",
                                          minimum=in_ms(MIN_AWAY_WINDOW_S)),
                       observed=Statement("declared delays {delays}", delays=[in_ms(d) for d in delays]))
    end_at = AWAY_DROP_AT_S + plan.end_after_drop
    faults = [{"kind": "refuse_reconnects", "count": plan.refusals, "how": "negotiate_503",
               "at": AWAY_DROP_AT_S}] if plan.refusals else []
    faults.append({"kind": "drop_connections", "mode": "abort", "at": AWAY_DROP_AT_S})
    created = time.time()
    task_id = run.start_scripted("planned-away", [
        {"after": AWAY_PROGRESS_AT_S, "progress": 10},
        {"after": end_at - AWAY_PROGRESS_AT_S, "status": "completed"}], faults)
    _client(run).track(task_id, "image", "signalr")
    interval = p.poll_interval_ms / 1000
    allowed = interval + tol.late_allowance(interval)
    back_by = AWAY_DROP_AT_S + plan.back_after_drop + sum(tol.late_allowance(d)
                                                          for d in delays[:plan.refusals + 1])
    run.wait_until(lambda: _terminal_obs(run, task_id) and len(_handshakes(run)) >= 2,
                   back_by + allowed + 5)
    if time.time() < created + end_at:  # reported before the end (wrong), or nothing happened yet
        run.wait_until(lambda: time.time() > created + end_at + 0.2, end_at + 1)
    facts, evidence, back = _away_facts(run, task_id, delays)
    reports = _terminal_obs(run, task_id)
    outcome = reports[0] if reports else None
    plan_text = Statement("refused {refusals} then let the next attempt through; the task ended {end} "
                          "after the drop", refusals=Measure(plan.refusals, "attempts"),
                          end=in_ms(plan.end_after_drop))
    if unprovoked := not_provoked(rule, facts, plan_text, tuple(evidence)):
        return unprovoked
    assert back is not None
    state = run.task_state(task_id)
    if outcome is None:
        return Verdict(rule, Outcome.FAIL,
                       "the completion that happened while disconnected was never reported",
                       expected=Statement("completed reported ≤ {allowed} after the automatic reconnect",
                                          allowed=in_ms(allowed)),
                       observed=Statement("nothing reported; server status " + str(state["status"])),
                       tolerance=tol.statement(), evidence=tuple(evidence))
    evidence.append(f"+{ms(outcome.wall - _drop_time(run))} the client reported {outcome.obs}")
    latency = outcome.wall - back.wall
    right = outcome.obs == "completed" and run.result_matches(task_id, outcome.get("result"))
    late = latency > allowed
    return Verdict(rule, Outcome.judge(right and not late),
                   "reported the completion that happened while disconnected" if right and not late
                   else "wrong outcome" if not right else "reported too late",
                   expected=Statement("completed with the server's result, ≤ {allowed} after the automatic "
                                      "reconnect", allowed=in_ms(allowed)),
                   observed=Statement(f"{outcome.obs} {{latency}} after the client came back by an automatic "
                                      "reconnect", latency=in_ms(latency)) if latency >= 0
                   else Statement(f"{outcome.obs} {{early}} before the client came back (learned while away)",
                                  early=in_ms(-latency)),
                   tolerance=tol.statement(), evidence=tuple(evidence))


def check_fallback(run: ContractRun) -> Verdict:
    rule, p = "C-FALLBACK", run.profile
    run.inject("refuse_reconnects", count=1000, how="negotiate_503")
    run.inject("refuse_reconnects", count=1000, how="upgrade_refused")
    task_id = run.track(script="quick", via="auto")
    outcome = _wait_terminal(run, task_id, p.poll_interval_ms / 1000 * 3 + 15)
    polls = _polls(run, task_id)
    refused = [r for r in run.records(RecordKind.CONNECTION_REFUSED) if r.get("key") == run.key]
    if unprovoked := not_provoked(rule, {"refused": len(refused), "ended": _ended(run, task_id)},
                                  Statement("{refused} of the client's",
                                            refused=Measure(len(refused), "refused attempts"))):
        return unprovoked
    ok = (outcome is not None and outcome.obs == "completed"
          and run.result_matches(task_id, outcome.get("result")))
    return Verdict(rule, Outcome.judge(ok), "tracked the task by polling and reported its outcome" if ok
                   else "no outcome while SignalR could not connect",
                   expected=Statement("polling fallback reports the completion"),
                   observed=Statement(f"{{polls}}; outcome {outcome.obs if outcome else 'none'}",
                                      polls=Measure(len(polls), "polls")))


# -- outcomes, latency, auth, pool, cleanup -------------------------------------------------------
def _client_connections(run: ContractRun) -> set[str]:
    return {r.get("connection_id") for r in run.records(RecordKind.TRANSPORT_START)
            if r.get("key") == run.key}


def _terminal_seq(run: ContractRun, task_id: str) -> int | None:
    ended = [r for r in run.records(RecordKind.TASK_EVENT, task_id=task_id)
             if r.get("event") in TERMINAL_STATUS]
    return ended[0].get("event_seq") if ended else None


def _delivered(run: ContractRun, task_id: str, event_seq: int | None, *, copy: bool | None = None,
               after: int = 0) -> list[Record]:
    """``event`` records of one of the task's events (a duplicate's copy, or not) that reached
    one of this client's connections, after timeline sequence ``after``."""
    mine = _client_connections(run)
    return [r for r in run.records(RecordKind.EVENT, task_id=task_id, event_seq=event_seq)
            if r.seq > after and mine & set(r.get("connections") or ())
            and (copy is None or bool(r.get("copy_by")) == copy)]


def _duplicate_proved(run: ContractRun, task_id: str) -> str | None:
    """What is missing for 'the terminal event reached the client twice by SignalR' (None: it did)."""
    seq = _terminal_seq(run, task_id)
    if seq is None:
        return "the task never ended"
    if not _delivered(run, task_id, seq, copy=False) or not _delivered(run, task_id, seq, copy=True):
        return "the terminal event and its copy did not both reach the client's connection"
    return None


def _reorder_proved(run: ContractRun, task_id: str) -> str | None:
    """What is missing for 'two of the task's events reached the client swapped' (None: they did)."""
    for swap in run.records(RecordKind.EVENTS_REORDERED, task_id=task_id, after="event"):
        overtaking = _delivered(run, task_id, swap.get("after_event_seq"))
        held = _delivered(run, task_id, swap.get("event_seq"), after=swap.seq)
        if any(set(a.get("connections")) & set(b.get("connections")) for a in overtaking for b in held):
            return None
    return "no held-back event reached the client after the event that overtook it"


def _both_channels_proved(run: ContractRun, task_id: str) -> str | None:
    """What is missing for 'the terminal reached the client by its catch-up poll and by SignalR'."""
    polled = [r for r in _polls(run, task_id)
              if r.get("status") == 200 and r.get("task_status") in TERMINAL_STATUS]
    if not polled:
        return ("no poll of the task was answered with its terminal status "
                "(no catch-up poll after the reconnect)")
    released = run.records(RecordKind.EVENTS_REORDERED, task_id=task_id, after="poll")
    if not released or not _delivered(run, task_id, released[0].get("event_seq"), after=released[0].seq):
        return "the held terminal event did not reach the client alongside the poll's answer"
    return None


def check_outcome(run: ContractRun) -> Verdict:
    """Each task's outcome once, right, and progress never backwards, while SignalR repeats and
    reorders events, and a terminal event reaches the client both by SignalR and by its catch-up
    poll. Each delivery fault must be seen reaching the client (else INCONCLUSIVE). An error in
    the harness (a simulator call timing out under load) is INCONCLUSIVE with the error: the rule
    ends in a verdict, never an exception."""
    try:
        return _outcome_under_delivery_faults(run)
    except Exception as exc:  # noqa: BLE001
        return Verdict("C-OUTCOME", Outcome.INCONCLUSIVE,
                       f"the harness could not judge: {type(exc).__name__}: {exc}",
                       expected=Statement("one terminal report per task with the server's result/error; "
                                          "progress never backwards nor after the end"))


def _outcome_under_delivery_faults(run: ContractRun) -> Verdict:
    rule, p = "C-OUTCOME", run.profile
    client = _client(run)
    # Each task gets its own fault, aimed at it alone (task_id), armed before the client tracks it.
    faulted: list[tuple[str, str, str, Callable[[ContractRun, str], str | None]]] = []
    for kind, script, fault, params, proof in (
            ("image", "stepped", "reorder_events", {"events": "progress", "count": 2}, _reorder_proved),
            ("image", "quick", "duplicate_event", {}, _duplicate_proved),
            ("image", "fail", "duplicate_event", {"events": "terminal"}, _duplicate_proved),
            ("video", "quick", "duplicate_event", {}, _duplicate_proved)):
        task_id = run.create_task(kind, script)
        run.inject(fault, task_id=task_id, **params)
        faulted.append((task_id, kind, fault, proof))
    for task_id, kind, _fault, _proof in faulted:
        client.track(task_id, kind, "signalr")
    for task_id, *_ in faulted:
        _wait_terminal(run, task_id, 15)
    time.sleep(1.0)  # room for late reports of a copy
    # Then one task whose terminal event is held until the client's catch-up poll: the client is
    # dropped once the task has ended, and the held event goes out with the poll's answer.
    both = run.create_task("image", "quick")
    run.inject("reorder_events", task_id=both, after="poll", events="terminal")
    client.track(both, "image", "signalr")
    held = run.wait_until(lambda: run.records(RecordKind.FAULT_HIT, fault="reorder_events", task_id=both), 15)
    if held and not run.records(RecordKind.EVENTS_REORDERED, task_id=both):
        run.inject("drop_connections", mode="abort")
    _wait_terminal(run, both, sum(p.reconnect_delays_s[:2]) + p.poll_interval_ms / 1000 + 10)
    time.sleep(1.0)
    faulted.append((both, "image", "reorder_events after poll", _both_channels_proved))

    problems: list[str] = []
    missing: list[str] = []
    evidence: list[str] = []
    for task_id, _kind, fault, proof in faulted:
        lacking = proof(run, task_id)
        found = _outcome_problems(run, task_id)
        if lacking and task_id == both and not _terminal_obs(run, task_id):
            found = []  # never told the end: the provocation, not the reporting, is what is missing
        problems += [f"{task_id}: {problem}" for problem in found]
        if lacking:
            missing.append(f"{task_id} ({fault}): {lacking}")
        seen = [o for o in client.seen() if o.get("task_id") == task_id]
        evidence.append(f"{task_id} [{fault}: {lacking or 'reached the client'}]: server "
                        f"{run.task_state(task_id)['status']}; client "
                        + ", ".join(f"{o.obs}{'=' + str(o.get('progress')) if o.obs == 'progress' else ''}"
                                    for o in seen))
    outcome = Outcome.FAIL if problems else Outcome.INCONCLUSIVE if missing else Outcome.PASS
    summary = ("; ".join(problems) if problems
               else "not every delivery fault reached the client: " + "; ".join(missing) if missing
               else "each outcome once, right, progress monotonic, through duplicated, reordered and "
                    "doubly delivered events")
    return Verdict(rule, outcome, summary,
                   expected=Statement("one terminal report per task with the server's result/error; "
                                      "progress never backwards nor after the end; each of the task's "
                                      "delivery faults reaching the client"),
                   observed=Statement("{problems} over {tasks}, {provoked}",
                                      problems=Measure(len(problems), "problems"),
                                      tasks=Measure(len(faulted), "tasks"),
                                      provoked=Measure(len(faulted) - len(missing), "faults delivered")),
                   evidence=tuple(evidence + missing))


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
    connection, a refused reconnect, a held-back, duplicated or reordered event, or none). Seeded
    (derandomised), so a failure replays; the failing timeline and fault are in the verdict. When
    no drawn fault took effect, nothing was provoked: INCONCLUSIVE.

    A timeline whose end never reached the client by SignalR (the as-built server sends no hub
    event for a timed-out task) can only be learnt by the client's catch-up poll: the client's
    connection is dropped once the task has ended, and its poll after the reconnect must report
    the end like any other.

    Whatever goes wrong in the harness, the rule ends in a verdict: a timeline never raises to
    Hypothesis (a raised failure is replayed, and a replay that passes under other timing is
    reported as flaky, an exception group no ``except AssertionError`` catches), and an error
    that is not the client's makes the verdict INCONCLUSIVE with the error."""
    import threading

    from hypothesis import HealthCheck, Phase, example, given, settings

    from simulator.scenarios import parse_scenario
    from simulator.scenarios.strategies import client_faults, task_scripts

    rule = "C-OUTCOME"
    tried: list[str] = []
    failure: list[str] = []
    broken: list[str] = []  # what kept the harness from judging (not the client's doing)
    took_effect: list[str] = []
    counter = iter(range(1_000_000))

    def arm(fault: dict[str, Any], task_id: str) -> None:
        if fault["kind"] in ("duplicate_event", "reorder_events"):  # aimed at this task alone
            run.inject(fault["kind"], task_id=task_id,
                       **{k: v for k, v in fault.items() if k not in ("kind", "at")})
        elif fault["kind"] == "refused_drop":
            run.inject("refuse_reconnects", count=1, how="negotiate_503")
            run.inject("drop_connections", mode="abort")
        elif fault["kind"] == "drop_connections":
            run.inject("drop_connections", mode=fault["mode"])
        else:
            run.inject(fault["kind"], **{k: v for k, v in fault.items() if k not in ("kind", "at")})

    def judge_timeline(script: dict[str, Any], fault: dict[str, Any] | None) -> None:
        if run.background is None:
            raise RuntimeError("the simulator is not running")
        name = f"generated-{next(counter)}"
        parsed = parse_scenario({"name": name, "scripts": {name: script}}, "generated").scripts[name]
        run.background.call(run.simulator.tasks.register_script, name, parsed)
        engine = run.simulator.tasks
        task_id = run.background.call(lambda: engine.create(_request(run.key), script=name).task_id)
        since = len(run.simulator.recorder)
        timer = None
        if fault is not None and fault["kind"] in ("delay_event", "duplicate_event", "reorder_events"):
            arm(fault, task_id)
        elif fault is not None:
            timer = threading.Timer(fault["at"], arm, (fault, task_id))
            timer.start()
        _client(run).track(task_id, "image", "signalr")
        length = sum(float(step.get("after", 0)) for step in script["steps"])
        catch_up = sum(run.profile.reconnect_delays_s[:2]) + run.profile.poll_interval_ms / 1000 + 10
        # Until the client reports the end, or the task has ended with nothing the dialect sends
        # for it (then waiting longer cannot bring it by SignalR).
        run.wait_until(lambda: _terminal_obs(run, task_id) or _end_unsent(run, task_id), length + catch_up)
        if timer is not None:
            timer.join()
        provoked = ""
        if not _terminal_obs(run, task_id) and _ended(run, task_id) and not _end_delivered(run, task_id):
            # Its end never reached the client by SignalR: a reconnect's catch-up poll is the
            # only way left to learn it.
            provoked = "; its end never came by SignalR, so its connection was dropped for a catch-up poll"
            run.inject("drop_connections", mode="abort")
            _wait_terminal(run, task_id, catch_up)
        time.sleep(0.8)  # room for duplicates
        _wait_connected(run, len(_handshakes(run)) or 1, timeout=10)
        problems = _outcome_problems(run, task_id)
        what = f"{fault['kind']}{':' + fault['mode'] if 'mode' in fault else ''}" if fault else "none"
        hit = fault is not None and _fault_took_effect(run, task_id, since)
        if hit:
            took_effect.append(task_id)
        tried.append(f"{task_id}: {len(script['steps'])} steps → {script['steps'][-1]['status']}, "
                     f"fault {what}{' (took effect)' if hit else ' (no effect)' if fault else ''}"
                     f"{provoked}: {'; '.join(problems) or 'ok'}")
        if problems:
            failure[:] = [f"timeline {script}", f"fault {fault}", *problems]

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
    @given(script=task_scripts(), fault=client_faults())
    # Besides the drawn ones, whatever the seed draws: a duplicated terminal event, and a timeout
    # (no hub event in the as-built dialect) after a held-back progress event.
    @example(script={"steps": [{"after": 1.0, "progress": 50}, {"after": 0.3, "status": "completed"}]},
             fault={"kind": "duplicate_event", "at": 0.0, "events": "terminal"})
    @example(script={"steps": [{"after": 1.0, "progress": 45}, {"after": 0.2, "progress": 81},
                               {"after": 0.3, "status": "timedout"}]},
             fault={"kind": "reorder_events", "at": 0.0, "after": "event", "events": "any", "count": 1})
    def one_timeline(script: dict[str, Any], fault: dict[str, Any] | None) -> None:
        if failure or broken:
            return  # the first wrong (or unjudgeable) timeline decides; the rest are not run
        try:
            judge_timeline(script, fault)
        except Exception as exc:  # noqa: BLE001 - a rule ends in a verdict, never an exception
            broken.append(f"timeline {script}, fault {fault}: {type(exc).__name__}: {exc}")

    try:
        one_timeline()
    except Exception as exc:  # noqa: BLE001 - Hypothesis itself gave up; still a verdict
        broken.append(f"Hypothesis stopped: {type(exc).__name__}: {exc}")
    outcome = (Outcome.FAIL if failure else Outcome.INCONCLUSIVE if broken
               else Outcome.PASS if took_effect else Outcome.INCONCLUSIVE)
    summary = (f"{len(tried)} timeline(s), fixed or drawn, each with its fault: "
               + ("a timeline was reported wrong" if failure
                  else "the harness could not judge: " + "; ".join(broken) if broken
                  else "all reported right" if took_effect
                  else "no drawn fault took effect, so nothing was provoked"))
    return Verdict(rule, outcome, summary,
                   expected=Statement("one right terminal report per task, progress monotonic, whatever the "
                                      "fault"),
                   observed=Statement("{timelines}" + (": " + "; ".join(failure[2:]) if failure else " ok")
                                      + ", {provoked}",
                                      timelines=Measure(len(tried), "timelines"),
                                      provoked=Measure(len(took_effect), "faults took effect")),
                   evidence=tuple(tried + failure[:2] + broken))


def _ended(run: ContractRun, task_id: str) -> bool:
    return _terminal_seq(run, task_id) is not None


def _end_unsent(run: ContractRun, task_id: str) -> bool:
    """Has the task ended with nothing the served dialect sends by SignalR for its end (the
    as-built server has no hub event for a timed-out task)?"""
    if run.background is None or not _ended(run, task_id):
        return False

    def unsent() -> bool:
        task = run.simulator.tasks.get(task_id)
        ends = [e for e in task.events if e.kind.terminal]
        return bool(ends) and not run.simulator.profile.signalr_events(task, ends[-1])

    return bool(run.background.call(unsent))


def _end_delivered(run: ContractRun, task_id: str) -> bool:
    """Did the task's terminal event reach one of the client's connections by SignalR?"""
    return bool(_delivered(run, task_id, _terminal_seq(run, task_id)))


def _fault_took_effect(run: ContractRun, task_id: str, since: int) -> bool:
    """Did a fault change what reached this task's client after timeline sequence ``since``: one
    of its events delayed, a copy of one delivered to the client, two of its events delivered
    swapped, a reconnect refused, or the client's connection dropped while the task was still
    running? A held-back event that went out in its turn, or a copy of an event the dialect
    does not send, changed nothing."""
    ended = [r.wall for r in run.records(RecordKind.TASK_EVENT, task_id=task_id)
             if r.get("event") in TERMINAL_STATUS]
    for r in run.records():
        if r.seq <= since:
            continue
        if r.kind == RecordKind.EVENT_DELAYED and r.get("task_id") == task_id:
            return True
        if r.kind == RecordKind.FAULT_HIT and r.get("task_id") == task_id:
            if r.get("fault") == "reorder_events":
                if _reorder_proved(run, task_id) is None or _both_channels_proved(run, task_id) is None:
                    return True
            elif r.get("fault") == "duplicate_event":
                if _delivered(run, task_id, r.get("event_seq"), copy=True, after=since):
                    return True
            else:
                return True
        refused = r.kind == RecordKind.FAULT_HIT and r.get("fault") == "refuse_reconnects"
        if refused and r.get("key") == run.key:
            return True
        if r.kind == RecordKind.SERVER_CLOSE and r.get("key") == run.key and (not ended or r.wall < ended[0]):
            return True
    return False


def _request(key: str) -> Any:
    from simulator.tasks.model import TaskRequest

    return TaskRequest(kind="image", prompt="generated timeline", model="contract-model", key=key)


def check_latency_signalr(run: ContractRun) -> Verdict:
    rule, budget = "C-LATENCY", run.profile.signalr_p95_ms
    tasks = [run.track(script="quick") for _ in range(4)]
    for task_id in tasks:
        _wait_terminal(run, task_id, 15)
    samples: list[float] = []
    for record in run.records(RecordKind.EVENT):
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
    sent = [r for r in run.records(RecordKind.EVENT) if r.get("task_id") in tasks and r.get("recipients")]
    if unprovoked := not_provoked(rule, {"samples": len(samples), "channel_used": len(sent)},
                                  Statement("{sent} sent over SignalR, {reported} of them reported",
                                            sent=Measure(len(sent), "events"),
                                            reported=Measure(len(samples), "events"))):
        return unprovoked
    ordered = sorted(samples)
    p95 = percentile(ordered, 95) or 0.0
    return Verdict(rule, Outcome.judge(p95 < budget),
                   f"SignalR emit → report p95 {p95:.1f} ms over {len(samples)} events",
                   expected=Statement("p95 < {budget}", budget=Measure(budget, "ms")),
                   observed=Statement("p50 {p50}, p95 {p95}, max {max} over {events}",
                                      p95=Measure(round(p95, 3), "ms"),
                                      p50=Measure(round(percentile(ordered, 50) or 0.0, 3), "ms"),
                                      max=Measure(round(ordered[-1], 3), "ms"),
                                      events=Measure(len(samples), "events")))


def check_latency_polling(run: ContractRun) -> Verdict:
    rule, p = "C-LATENCY", run.profile
    budget = (p.poll_interval_ms + p.polling_slack_ms) / 1000
    task_id = run.track(script="quick", via="polling")
    outcome = _wait_terminal(run, task_id, budget * 3 + 10)
    events = [r for r in run.records(RecordKind.TASK_EVENT, task_id=task_id) if r.get("event") == "completed"]
    polls = _polls(run, task_id)
    if unprovoked := not_provoked(rule, {"samples": int(outcome is not None and bool(events)),
                                         "channel_used": len(polls)},
                                  Statement("{polls} of the task; completion "
                                            + ("reported" if outcome else "not reported"),
                                            polls=Measure(len(polls), "polls"))):
        return unprovoked
    assert outcome is not None
    latency = outcome.wall - events[0].wall
    return Verdict(rule, Outcome.judge(latency < budget),
                   f"polling: completion reported {ms(latency)} after it happened",
                   expected=Statement("< interval + {slack} = {budget}",
                                      slack=in_ms(p.polling_slack_ms / 1000),
                                      budget=in_ms(budget)),
                   observed=Statement("reported {latency} after the completion", latency=in_ms(latency)))


def check_auth(run: ContractRun) -> Verdict:
    rule = "C-AUTH"
    task_id = run.track(script="quick", via="signalr")
    _wait_terminal(run, task_id, 15)
    rejected = run.records(RecordKind.AUTH_REJECTED)
    negotiates = [r for r in run.records(RecordKind.NEGOTIATE) if r.get("key") == run.key]
    connects = [r for r in run.records(RecordKind.TRANSPORT_START) if r.get("key") == run.key]
    tried = len(rejected) + len(negotiates) + len(connects) + len(run.records(RecordKind.SKIP_NEGOTIATION))
    if unprovoked := not_provoked(rule, {"attempts": tried}, Statement("no negotiate or connection request")):
        return unprovoked
    ok = not rejected and bool(negotiates or run.records(RecordKind.SKIP_NEGOTIATION)) and bool(connects)
    return Verdict(rule, Outcome.judge(ok), "the key was sent on negotiate and on the connection" if ok
                   else f"{len(rejected)} request(s) without a valid key" if rejected
                   else "no authenticated connection",
                   expected=Statement("every negotiate and connection request carries the key"),
                   observed=Statement("{rejected} rejected of {negotiates} and {connections}",
                                      rejected=Measure(len(rejected), "requests"),
                                      negotiates=Measure(len(negotiates), "negotiates"),
                                      connections=Measure(len(connects), "connections")),
                   evidence=tuple(f"{r.get('stage')}: {r.get('reason')}" for r in rejected))


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
    followed = sum(1 for t in tasks if _client(run).seen("progress", task_id=t))
    opened = [r for r in run.records(RecordKind.TRANSPORT_START) if r.get("key") == run.key]
    if unprovoked := not_provoked(rule, {"connections_opened": len(opened), "over_limit": followed > limit},
                                  Statement("{opened}; progress reported for {followed} at once",
                                            opened=Measure(len(opened), "connections"),
                                            followed=Measure(followed, "tasks"))):
        return unprovoked
    return Verdict(rule, Outcome.judge(peak <= limit),
                   f"peak {peak} concurrent connection(s) for {len(tasks)} tasks",
                   expected=Statement("at most {limit} open at once", limit=Measure(limit, "connections")),
                   observed=Statement("peak {peak} open at once", peak=Measure(peak, "connections")),
                   evidence=tuple(evidence[-12:]))


def check_cleanup(run: ContractRun) -> Verdict:
    rule, tol = "C-CLEANUP", run.tolerance
    tasks = {run.track("image", "quick"): "image", run.track("video", "quick"): "video"}
    for task_id in tasks:
        _wait_terminal(run, task_id, 15)
    budget = 2.0 + tol.late_floor_s
    run.wait_until(lambda: all(_subscribes(run, t, run.hub(k).unsubscribe) for t, k in tasks.items()),
                   budget)
    facts = {"all_subscribed": all(_subscribes(run, t, run.hub(k).subscribe) for t, k in tasks.items()),
             "all_ended": all(_ended(run, t) for t in tasks)}
    if unprovoked := not_provoked(rule, facts):
        return unprovoked
    missing = [t for t, k in tasks.items() if not _subscribes(run, t, run.hub(k).unsubscribe)]
    return Verdict(rule, Outcome.judge(not missing),
                   f"{len(missing)} finished task(s) never unsubscribed" if missing
                   else "every finished task was unsubscribed",
                   expected=Statement("Unsubscribe… within {budget} of the terminal event",
                                      budget=in_ms(budget)),
                   observed=Statement("{missing} never unsubscribed" + (": " + ", ".join(missing) if missing
                                                                          else ""),
                                      missing=Measure(len(missing), "tasks")))


_CASES: dict[str, list[tuple[str, Callable[..., Verdict], dict[str, Any]]]] = {
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


def _outcome_facts(run: ContractRun) -> dict[str, Any]:
    """C-OUTCOME's provocation, read off the whole run: the tasks of this client's key whose events
    the hub sent to one of its connections, and whether every one of its tasks ended."""
    mine = {r.get("connection_id") for r in _handshakes(run)}
    created = [r.get("task_id") for r in run.records(RecordKind.TASK_CREATED) if r.get("key") == run.key]
    delivered = {r.get("task_id") for r in run.records(RecordKind.EVENT)
                 if r.get("task_id") in created and mine.intersection(r.get("connections") or ())}
    return {"delivered_tasks": len(delivered),
            "all_ended": bool(created) and all(_ended(run, t) for t in created)}


# Rules whose provocation is checked on the whole run after the check (rather than inside it).
_RUN_FACTS: dict[str, Callable[[ContractRun], dict[str, Any]]] = {"C-OUTCOME": _outcome_facts}


def _labelled(label: str, check: Callable[..., Verdict]) -> Callable[..., Verdict]:
    """``check``, whose verdict carries ``label`` (the rule and, when it has several, the case);
    for the rules of :data:`_RUN_FACTS`, INCONCLUSIVE when the run shows them unprovoked."""

    @functools.wraps(check)
    def labelled(run: ContractRun, **kwargs: Any) -> Verdict:
        verdict = check(run, **kwargs)
        facts = _RUN_FACTS.get(verdict.rule)
        if facts is not None and verdict.outcome in (Outcome.PASS, Outcome.FAIL):
            verdict = not_provoked(verdict.rule, facts(run), evidence=(f"as judged: {verdict}",)) or verdict
        return verdict.with_label(label)

    return labelled


# rule → its cases (variant, check, keyword arguments); a rule with several cases labels each
# verdict ``RULE[variant]`` (``C-RETRY-AFTER[429]``) so that no two rows of a report look alike.
CHECKS: dict[str, list[tuple[str, Callable[..., Verdict], dict[str, Any]]]] = {
    rule: [(variant, _labelled(f"{rule}[{variant}]" if len(cases) > 1 else rule, check), kwargs)
           for variant, check, kwargs in cases]
    for rule, cases in _CASES.items()
}


# The fixed part of a case: its simulator, the client's start, a quick task. Each case alone took
# 0.3-2.5 s plus what its declared numbers make it wait (benchmarks/bench_check.py, 2026-12-02).
CASE_BASE_S = 3.0
# C-OUTCOME[generated] runs a fixed number of drawn timelines: 15.2-15.6 s alone, with the fast
# numbers and the documented ones alike; C-OUTCOME[signalr], its fixed faults: 6.6-7.0 s.
OUTCOME_GENERATED_S = 18.0
OUTCOME_SIGNALR_S = 9.0


def estimated_seconds(rule: str, run_profile: Any, case: str = "") -> float:
    """Roughly how long a rule's check (``case``: one of its cases, by label) waits, from the
    client's declared numbers; a little over what it took when measured, since the suite skips
    a case whose estimate is over ``--max-rule-seconds`` and runs the longest first."""
    p = run_profile
    interval = p.poll_interval_ms / 1000
    if rule == "C-POLL-LIMIT":
        return p.poll_limit * interval * 1.3 + 5
    if rule == "C-RECONNECT-SCHEDULE":
        tail = max(p.reconnect_delays_s[-1], p.manual_restart_ms / 1000)
        return (sum(p.reconnect_delays_s) + tail) * 1.2 + 5
    if rule == "C-NO-LOST-TERMINAL":
        plan = plan_away(p.reconnect_delays_s)
        return 0.0 if plan is None else AWAY_DROP_AT_S + plan.back_after_drop * 1.2 + interval * 1.2 + 6
    if rule.startswith("C-POLL") or rule == "C-RETRY-AFTER":
        return interval * 6 + 5
    if rule == "C-RECONNECT-CLOSE":  # 4.1 s (1 s manual restart), 8.5 s (5 s)
        return CASE_BASE_S + 1.5 * p.manual_restart_ms / 1000
    if rule == "C-FALLBACK" or case == "C-LATENCY[polling]":  # 2.5 s (400 ms polls), 5.5 s (5 s)
        return CASE_BASE_S + interval
    if rule == "C-RESUBSCRIBE":
        return CASE_BASE_S + 1.2 * (p.reconnect_delays_s[0] if p.reconnect_delays_s else 0.0)
    if rule == "C-OUTCOME":
        return OUTCOME_GENERATED_S if case.endswith("[generated]") else OUTCOME_SIGNALR_S
    return CASE_BASE_S
