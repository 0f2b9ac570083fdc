"""Pre-flight: does the client connect at all? Asked once, before the rules.

A client that cannot connect fails every rule, and each failure then reads like a different bug
("no successful handshake for the client's key", eight times over). The pre-flight tracks one
short task the way the client would (SignalR when it declares that role, else polling), watches
the simulator's timeline for the first thing that went wrong, and says it once, with the cause
and the fix. The run then stops.
"""

from __future__ import annotations

import time

from contract_tests.driver import DriverError
from contract_tests.session import ContractRun
from contract_tests.timing import Tolerance
from contract_tests.verdict import Evidence, Measure, Outcome, Statement, Verdict, in_ms
from simulator.recorder import Record, RecordKind

PREFLIGHT_RULE = "PREFLIGHT"  # its verdicts' rule and label: it is no rule of the contract
# A quick task's first event comes 1 s after it is created; a client that has not negotiated and
# completed a handshake (or polled) well within this has not connected.
PREFLIGHT_SECONDS = 8.0
# Once the key was refused, how long a client may take to get in some other way before we say so.
AFTER_REFUSAL_SECONDS = 2.0

FIXES = {
    ("negotiate", "missing key"): "the key must be sent on negotiate too — as `Authorization: Bearer "
                                  "<key>` or `?access_token=<key>`",
    ("negotiate", "unknown key"): "send the key the suite gives in CONDUIT_VIRTUAL_KEY (each run has "
                                  "its own), not a fixed one",
    ("rest", "missing key"): "send the key on every REST call as `Authorization: Bearer <key>`",
    ("rest", "unknown key"): "send the key the suite gives in CONDUIT_VIRTUAL_KEY (each run has its own)",
}
CONNECTION_FIX = ("send the key on the connection too (the WebSocket, SSE or long-polling request) — "
                  "as `?access_token=<key>`, which browsers' WebSockets need, or `Authorization: Bearer`")


def fix_for(stage: str, reason: str) -> str:
    return FIXES.get((stage, reason)) or (CONNECTION_FIX if stage != "rest" else FIXES[("rest", reason)])


def _mine(run: ContractRun, kind: RecordKind) -> list[Record]:
    return [r for r in run.records(kind) if r.get("key") == run.key]


def preflight(run: ContractRun, roles: set[str]) -> Verdict:
    """Track one task and judge only that the client got in: a handshake with its key (SignalR)
    or an answered poll (polling). PASS, or FAIL with the first refusal's cause and fix."""
    via = "signalr" if "signalr" in roles else "polling"
    started = run.client.ready.mono if run.client and run.client.ready else 0.0
    task_id = run.track(script="quick", via=via)
    tracked = time.monotonic()

    def connected() -> list[Record]:
        if via == "signalr":
            return [r for r in _mine(run, RecordKind.HANDSHAKE) if r.get("ok")]
        return [r for r in _mine(run, RecordKind.POLL)
                if r.get("task_id") == task_id and r.get("status") == 200]

    refused_at: list[float] = []

    def settled() -> bool:
        if connected():
            return True
        if run.records(RecordKind.AUTH_REJECTED):
            refused_at.append(refused_at[0] if refused_at else time.monotonic())
            return time.monotonic() - refused_at[0] >= AFTER_REFUSAL_SECONDS
        return False

    run.wait_until(settled, PREFLIGHT_SECONDS, interval=0.05)
    waited = in_ms(time.monotonic() - tracked)
    got_in = connected()
    expected = Statement("a handshake with the client's key" if via == "signalr"
                         else "an answered poll of the task with the client's key")
    if got_in:
        took = got_in[0].mono - started if started else None
        return Verdict(PREFLIGHT_RULE, Outcome.PASS, f"the client connected ({via})", expected=expected,
                       observed=Statement("connected {took} after ready", took=in_ms(took))
                       if took is not None else Statement("connected"))
    rejected = run.records(RecordKind.AUTH_REJECTED)
    evidence = tuple(Evidence(f"{r.get('stage')} {r.get('method')} {r.get('path') or r.get('hub')}: "
                              f"401 ({r.get('reason')})", ok=False) for r in rejected[:10])
    if rejected:
        first = rejected[0]
        stage, reason = str(first.get("stage")), str(first.get("reason"))
        where = "negotiate" if stage == "negotiate" else "the REST API" if stage == "rest" \
            else f"the {stage} connection"
        summary = f"{where} answered 401 ({reason}): {fix_for(stage, reason)} (this breaks C-AUTH)"
        return Verdict(PREFLIGHT_RULE, Outcome.FAIL, summary, expected=expected, details={"breaks": "C-AUTH"},
                       observed=Statement("{rejected} refused, no connection in {waited} after `track`",
                                          rejected=Measure(len(rejected), "requests"), waited=waited),
                       evidence=evidence)
    tried = _mine(run, RecordKind.NEGOTIATE) + _mine(run, RecordKind.POLL)
    if via == "signalr" and _mine(run, RecordKind.NEGOTIATE):
        cause = ("the client negotiated but never completed a SignalR handshake: after connecting it "
                 "must send the handshake ({\"protocol\":\"json\",\"version\":1} and the 0x1E separator)")
    elif tried:
        cause = f"the client made requests but no {via} connection within {PREFLIGHT_SECONDS:g} s"
    else:
        cause = (f"the client made no request to CONDUIT_BASE_URL within {PREFLIGHT_SECONDS:g} s of being "
                 f"told to track a task via {via}: it must connect to the URL in CONDUIT_BASE_URL "
                 "and act on the `track` command")
    return Verdict(PREFLIGHT_RULE, Outcome.FAIL, cause, expected=expected,
                   observed=Statement("no connection in {waited} after `track`", waited=waited),
                   evidence=evidence)



def run_preflight(profile: object, tolerance: Tolerance, seed: int, roles: set[str]) -> tuple[Verdict, str]:
    """The pre-flight with a run of its own: its verdict and the client's stderr tail. The suite's
    test calls it in a serial run; with ``--jobs`` the controller calls it once, before the
    workers get any rule."""
    run = ContractRun(profile, tolerance, seed=seed)  # type: ignore[arg-type]
    try:
        run.start()
        verdict = preflight(run, roles)
    except DriverError as exc:
        verdict = Verdict(PREFLIGHT_RULE, Outcome.FAIL, str(exc))
    finally:
        run.stop()
    return verdict, run.client.stderr_tail if run.client else ""
