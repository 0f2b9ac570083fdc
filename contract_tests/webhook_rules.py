"""The W-* rules of a webhook receiver, as plain async checks (pytest, scripts, the CLI below).

Each check plays Conduit against a receiver given by URL and secret: it sends exact bytes with the
documented headers (``Content-Type: application/json``, ``User-Agent: Conduit-LLM/1.0``,
``X-Webhook-Timestamp``, ``X-Conduit-Signature`` = lowercase hex HMAC-SHA256 of the body) and
returns a :class:`Verdict`. Every request has a timeout and every check sends a bounded number of
requests (the sender refuses to go past ``max_requests``).

    verdicts = await check_receiver("http://127.0.0.1:8080/hook", "whsec_...")
    assert all(v.passed for v in verdicts), "\\n".join(v.explain() for v in verdicts)

``observations`` (optional) is where the receiver reports what it processed: a callable returning
the observations so far, or a live list (e.g. :attr:`ReceiverProcess.observations`), of driver
protocol lines ``{"obs": "webhook", "task_id", "event_type", "accepted"}``. Only W-DUPLICATE's
"processed once" (and W-REJECT's "nothing refused was processed") needs it; without it those parts
are skipped and say so.

CLI::

    python -m contract_tests.webhook_rules --url URL --secret SECRET [--rule W-REJECT ...] [--json]
    python -m contract_tests.webhook_rules --receiver "node my_receiver.mjs"   # driver protocol

Exit status 0 when every rule passed, 1 otherwise, 2 on usage errors.

Every verdict judges only what it sent and saw answered: a request that never reached the receiver
(connection refused) is not judged, and a rule whose provocation did not happen (nothing reached
the receiver; for W-REJECT, a correctly signed control delivery was not accepted, so refusals
prove nothing) is INCONCLUSIVE, saying what was missing - never PASS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shlex
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from contract_tests.verdict import Evidence, Measure, Outcome, Statement, Verdict
from contract_tests.webhook_strategies import (
    HUGE_HEADERS,
    LENIENT_CASES,
    REJECT_CASES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    USER_AGENT,
    EncodedBody,
    HeaderMutation,
    conduit_bytes,
    conduit_shaped_bodies,
    documented_body,
    fixed_encodings,
    outsider_bodies,
    reserialising_encodings,
    sign,
)

RULE_IDS = ("W-ACCEPT", "W-RAW-BODY", "W-REJECT", "W-NO-CRASH", "W-DUPLICATE", "W-FAST-ACK", "W-METHOD")
RULE_TEXT = {
    "W-ACCEPT": "a correctly signed delivery is answered 2xx",
    "W-RAW-BODY": "the signature is checked over the exact bytes: bodies whose re-serialisation differs "
                  "(key order, whitespace, \\u escapes, non-ASCII, numbers such as 1.0 or 1e3) are still "
                  "accepted",
    "W-REJECT": "wrong signature, wrong secret (the empty one and the usual placeholders too), missing / "
                "empty / malformed / truncated / over-long header, tampered body -> 401 (or 403), never 2xx",
    "W-NO-CRASH": "whatever a sender without the secret sends gets a 4xx, never a 2xx, a 5xx or a "
                  "dropped connection (verify, then parse); no signed body Conduit could send gets a 5xx",
    "W-DUPLICATE": "a duplicate delivery is acknowledged 2xx and, where the receiver reports what it "
                   "processed, processed once",
    "W-FAST-ACK": "every delivery is answered within the budget (default 5 s; Conduit gives up at 30 s)",
    "W-METHOD": "non-POST and non-JSON requests get a 4xx, not a 5xx",
}
DEFAULT_SEED = 20250828
DEFAULT_TIMEOUT_S = 10.0

ObservationSource = Callable[[], Iterable[Mapping[str, Any]]] | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class Target:
    """A receiver under test: where it listens, the secret it shares with Conduit, what it reports."""

    url: str
    secret: str
    observations: ObservationSource | None = None


def preview(body: bytes, limit: int = 120) -> str:
    """``repr`` of the first ``limit`` bytes (and how many there are in all)."""
    text = repr(body[:limit])
    return f"{text}{'...' if len(body) > limit else ''} ({len(body)} B)"


# -- the sender -----------------------------------------------------------------------------------
class RequestBudgetExceeded(RuntimeError):
    """A check tried to send more requests than the sender allows."""


@dataclass
class Exchange:
    request: str
    method: str
    body: bytes
    status: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    dropped: bool = False  # the connection was closed or reset without an answer
    timed_out: bool = False
    response: str = ""
    connected: bool = True  # False: the request never reached the receiver (connection refused...)

    @property
    def answered(self) -> bool:
        return self.status is not None

    def is_2xx(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome(self) -> str:
        """How the receiver answered, for people (``401 in 3.2 ms``, ``no answer: ...``)."""
        took = f" after {self.latency_ms:.1f} ms" if self.latency_ms is not None else ""
        if self.status is None:
            return f"no answer: {self.error or 'unknown error'}{took}"
        if self.latency_ms is None:
            return str(self.status)
        return f"{self.status} in {self.latency_ms:.1f} ms"

    def evidence(self, ok: bool | None, mark: str | None = None) -> Evidence:
        """This exchange as a piece of a verdict's evidence (``ok``: it met the rule; None: not
        judged, e.g. it never reached the receiver - marked ``n/j``, and not a failure)."""
        latency = None if self.latency_ms is None else round(self.latency_ms, 2)
        mark = mark or ("ok " if ok else "BAD" if ok is False else "n/j")
        return Evidence(f"{mark} {self.request} -> {self.outcome}", ok is not False, self.request,
                        self.status, latency, self.error)


class _Auto:
    def __repr__(self) -> str:
        return "SIGN"


SIGN: Any = _Auto()  # default of ``signature``: sign the body with the target's secret


class ConduitSender:
    """Delivers webhooks the way Conduit does; one aiohttp session, a fresh connection per request."""

    def __init__(self, url: str, secret: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_requests: int = 1000, user_agent: str = USER_AGENT) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.max_requests = max_requests
        self.user_agent = user_agent
        self.sent = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ConduitSender:
        # force_close: no keep-alive reuse, so a receiver closing an idle connection can never be
        # mistaken for a dropped delivery.
        connector = aiohttp.TCPConnector(force_close=True, limit=16)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def send(self, body: bytes, *, request: str, signature: str | None | _Auto = SIGN,
                   method: str = "POST", content_type: str | None = "application/json",
                   extra_headers: Sequence[tuple[str, str]] = (), timestamp: str | None = None,
                   chunked: bool = False, timeout_s: float | None = None) -> Exchange:
        """Send ``body`` as is. ``signature``: SIGN (the right one), a header value, or None (no header)."""
        if self.sent >= self.max_requests:
            raise RequestBudgetExceeded(f"more than {self.max_requests} requests")
        if self._session is None:
            raise RuntimeError("use `async with ConduitSender(...)`")
        self.sent += 1
        headers: list[tuple[str, str]] = [("User-Agent", self.user_agent),
                                          (TIMESTAMP_HEADER, timestamp or str(int(time.time())))]
        skip: list[str] = []
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        else:
            skip.append("Content-Type")
        if isinstance(signature, _Auto):
            signature = sign(body, self.secret)
        if signature is not None:
            headers.append((SIGNATURE_HEADER, signature))
        headers.extend(extra_headers)
        exchange = Exchange(request=request, method=method, body=body)
        data: Any = body if not chunked else _chunks(body)
        if method in ("GET", "DELETE") and not body:
            data = None
        timeout = aiohttp.ClientTimeout(total=timeout_s if timeout_s is not None else self.timeout_s)
        started = time.monotonic()
        try:
            async with self._session.request(method, self.url, data=data, headers=headers, timeout=timeout,
                                             allow_redirects=False, skip_auto_headers=skip) as response:
                payload = await response.content.read(64 * 1024)
                exchange.status = response.status
                exchange.response = payload[:300].decode("utf-8", "replace")
        except TimeoutError:
            exchange.timed_out = True
            exchange.error = f"timeout after {timeout.total:g} s"
        except aiohttp.ClientConnectorError as exc:
            exchange.connected = False
            exchange.error = f"cannot connect: {exc}"
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError,
                aiohttp.ClientResponseError) as exc:
            exchange.dropped = True
            exchange.error = f"connection dropped: {type(exc).__name__}: {exc}"
        except aiohttp.ClientError as exc:
            exchange.error = f"{type(exc).__name__}: {exc}"
        exchange.latency_ms = (time.monotonic() - started) * 1000.0
        return exchange


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    step = max(1, len(body) // 3)
    for start in range(0, len(body), step):
        yield body[start:start + step]


@contextlib.asynccontextmanager
async def _sending(target: Target, sender: ConduitSender | None,
                   **options: Any) -> AsyncIterator[ConduitSender]:
    if sender is not None:
        yield sender
        return
    async with ConduitSender(target.url, target.secret, **options) as own:
        yield own


def _task_id(rng: random.Random) -> str:
    return f"task_{rng.getrandbits(128):032x}"


def _snapshot(source: ObservationSource) -> list[Mapping[str, Any]]:
    items = source() if callable(source) else source
    return [o for o in list(items) if isinstance(o, Mapping)]


def _processed(source: ObservationSource, task_id: str, event_type: str | None = None) -> int:
    return sum(1 for o in _snapshot(source)
               if o.get("obs") == "webhook" and o.get("accepted") is True and o.get("task_id") == task_id
               and (event_type is None or o.get("event_type") == event_type))


def _statuses(exchanges: Iterable[Exchange]) -> str:
    counts: dict[str, int] = {}
    for e in exchanges:
        key = str(e.status) if e.status is not None else ("dropped" if e.dropped else
                                                            "timeout" if e.timed_out else "error")
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


Judgement = bool | None  # met the rule, broke it, or not judged (the request did not get that far)


def _reached(exchange: Exchange, ok: bool) -> Judgement:
    """``ok`` for a request that reached the receiver; None (not judged) for one that never did."""
    return ok if exchange.connected else None


def _verdict(rule: str, exchanges: Sequence[Exchange], oks: Sequence[Judgement], *, expected: Statement,
             good: str, bad: str, details: dict[str, Any] | None = None, extra_problems: Sequence[str] = (),
             also_observed: str = "", missing: Sequence[str] = (), advisories: Sequence[str] = (),
             extra_evidence: Sequence[Evidence] = ()) -> Verdict:
    """The verdict over one check's exchanges: ``oks`` says which met the rule (None: not judged);
    ``also_observed`` is appended to the observed sentence.

    FAIL when a judged exchange broke the rule or ``extra_problems`` name something; otherwise
    INCONCLUSIVE when some exchange could not be judged, none was, or ``missing`` names a
    provocation that did not happen; PASS only when every exchange was judged and met the rule.
    ``advisories`` go on the verdict as they are and never change its outcome.
    """
    failed = [e for e, ok in zip(exchanges, oks, strict=True) if ok is False]
    unjudged = [e for e, ok in zip(exchanges, oks, strict=True) if ok is None]
    judged = len(exchanges) - len(unjudged)
    gaps = list(missing)
    if unjudged:
        gaps.append(f"{len(unjudged)} of {len(exchanges)} requests were not judged "
                    f"(first: {unjudged[0].request} -> {unjudged[0].outcome})")
    if not judged:
        gaps.insert(0, "no request reached the receiver and was answered")
    if failed or extra_problems:
        outcome = Outcome.FAIL
        parts = [f"{len(failed)} of {judged} {bad}"] if failed else []
        summary = "; ".join(parts + list(extra_problems))
    elif gaps:
        outcome = Outcome.INCONCLUSIVE
        summary = "not judged: " + "; ".join(gaps)
    else:
        outcome, summary = Outcome.PASS, good
    latencies = [e.latency_ms for e in exchanges if e.latency_ms is not None and e.connected]
    measures: dict[str, Measure] = {"bad": Measure(len(failed), "requests"),
                                    "sent": Measure(len(exchanges), "requests"),
                                    "judged": Measure(judged)}
    template = "{judged} of {sent} judged, {bad} broke the rule; " + _statuses(exchanges)
    if latencies:
        measures.update(fastest=Measure(round(min(latencies), 2), "ms"),
                        slowest=Measure(round(max(latencies), 2), "ms"))
        template += "; latencies {fastest}..{slowest}"
    if failed:
        template += "; first bad: " + failed[0].request + " -> " + failed[0].outcome
    return Verdict(rule, outcome, summary, expected=expected,
                   observed=Statement(template + also_observed, **measures),
                   evidence=tuple(e.evidence(ok) for e, ok in zip(exchanges, oks, strict=True))
                   + tuple(extra_evidence),
                   details={**(details or {}), "unjudged": len(unjudged)}, advisories=tuple(advisories))


# -- W-ACCEPT -----------------------------------------------------------------------------------
async def check_accept(target: Target, *, sender: ConduitSender | None = None) -> Verdict:
    """Correctly signed documented deliveries, sent the ways Conduit may send them: all 2xx."""
    rng = random.Random()
    completed_result = {"images": [{"url": "https://cdn.example.com/v1/images/a.png",
                                    "revised_prompt": "a lighthouse at dusk, café ☕"}]}
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("task.progress as the simulator sends it",
         documented_body("task.progress", _task_id(rng), progress=42), {}),
        ("task.completed with a result",
         documented_body("task.completed", _task_id(rng), result=completed_result), {}),
        ("task.failed with an error",
         documented_body("task.failed", _task_id(rng), error="content policy"), {}),
        ("task.failed of a cancelled task", documented_body("task.failed", _task_id(rng), status="cancelled",
                                                             error="cancelled by user"), {}),
        ("Content-Type: application/json; charset=utf-8 (as .NET sends it)",
         documented_body("task.completed", _task_id(rng), result=completed_result),
         {"content_type": "application/json; charset=utf-8"}),
        ("chunked transfer encoding, no Content-Length", documented_body("task.progress", _task_id(rng)),
         {"chunked": True}),
        ("with the task's webhook_headers (X-Tenant-Id)", documented_body("task.progress", _task_id(rng)),
         {"extra_headers": [("X-Tenant-Id", "tenant-42")]}),
    ]
    async with _sending(target, sender) as s:
        exchanges = []
        for label, body, options in cases:
            raw = conduit_bytes(body)
            exchanges.append(await s.send(raw, request=f"POST {label} {preview(raw, 60)}", **options))
    return _verdict("W-ACCEPT", exchanges, [_reached(e, e.is_2xx()) for e in exchanges],
                    expected=Statement("2xx for every correctly signed delivery"),
                    good=f"all {len(exchanges)} correctly signed deliveries answered 2xx",
                    bad="correctly signed deliveries not answered 2xx")


# -- W-RAW-BODY ---------------------------------------------------------------------------------
async def check_raw_body(target: Target, *, sender: ConduitSender | None = None, max_examples: int = 25,
                         seed: int = DEFAULT_SEED, shrink_budget: int = 60) -> Verdict:
    """Bodies whose re-serialisation differs, signed over their exact bytes: all 2xx.

    First the fixed cases of :func:`fixed_encodings` (one per trap), then ``max_examples`` drawn by
    Hypothesis from :func:`reserialising_encodings` (seeded; shrunk on failure, at most
    ``shrink_budget`` extra requests). Failing bodies are in ``details["failing_bodies"]`` and the
    smallest in ``details["smallest_failing_body"]``.
    """
    loop = asyncio.get_running_loop()
    results: list[tuple[EncodedBody, Exchange]] = []
    async with _sending(target, sender) as s:
        for encoded in fixed_encodings(rng=random.Random()):
            request = f"POST {encoded.describe()} {preview(encoded.body, 80)}"
            exchange = await s.send(encoded.body, request=request)
            results.append((encoded, exchange))
        fixed = len(results)
        limit = max_examples + shrink_budget

        def deliver(encoded: EncodedBody) -> bool:
            """Called on Hypothesis's thread: send on the event loop, wait for the answer."""
            if len(results) - fixed >= limit:
                return True  # request budget spent: stop shrinking (counts as passing)
            request = f"POST generated {encoded.describe()} {preview(encoded.body, 80)}"
            future = asyncio.run_coroutine_threadsafe(s.send(encoded.body, request=request), loop)
            try:
                exchange = future.result(timeout=s.timeout_s + 5.0)
            except RequestBudgetExceeded:
                return True  # the sender's cap: stop here too
            results.append((encoded, exchange))
            return exchange.is_2xx()

        hypothesis_outcome = await asyncio.to_thread(_search, deliver, max_examples, seed)
    failing = [(encoded, exchange) for encoded, exchange in results
               if exchange.connected and not exchange.is_2xx()]
    details: dict[str, Any] = {"seed": seed, "fixed_cases": fixed, "generated_requests": len(results) - fixed,
                               "hypothesis": hypothesis_outcome}
    exchanges = [exchange for _, exchange in results]
    oks = [_reached(exchange, exchange.is_2xx()) for exchange in exchanges]
    if failing:
        smallest = min(failing, key=lambda pair: len(pair[0].body))
        details["failing_bodies"] = [encoded.body for encoded, _ in failing[:10]]
        details["smallest_failing_body"] = smallest[0].body
        details["smallest_failing_features"] = smallest[0].style.features()
    also = ""
    if failing:
        encoded, exchange = min(failing, key=lambda pair: len(pair[0].body))
        also = (f"; smallest failing body [{', '.join(encoded.style.features())}]: "
                f"{preview(encoded.body, 300)} -> {exchange.outcome}")
    return _verdict("W-RAW-BODY", exchanges, oks,
                    expected=Statement("2xx for every body signed over its exact bytes, however it is "
                                       "written"),
                    good=f"all {len(exchanges)} differently written bodies accepted "
                         f"({fixed} fixed, {len(exchanges) - fixed} generated, seed {seed})",
                    bad="differently written, correctly signed bodies not accepted", details=details,
                    also_observed=also)


def _search(deliver: Callable[[EncodedBody], bool], max_examples: int, seed: int) -> str:
    """Run Hypothesis over :func:`reserialising_encodings`; what it concluded."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as seeded

    if max_examples <= 0:
        return "skipped"

    class _Refused(AssertionError):
        pass

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
              verbosity=Verbosity.quiet, report_multiple_bugs=False, print_blob=False)
    @seeded(seed)
    @given(reserialising_encodings())
    def accepted(encoded: EncodedBody) -> None:
        if not deliver(encoded):
            raise _Refused("not accepted")

    try:
        accepted()
    except _Refused:
        return "falsified (shrunk)"
    except Exception as exc:  # Flaky when the request budget ran out mid-shrink, or a sending error
        return f"stopped: {type(exc).__name__}: {str(exc)[:200]}"
    return "passed"


# -- W-REJECT -----------------------------------------------------------------------------------
def _mutated(mutation: HeaderMutation, secret: str, rng: random.Random,
             index: int) -> tuple[str, bytes, str | None]:
    event_type = ("task.progress", "task.completed", "task.failed")[index % 3]
    body = conduit_bytes(documented_body(event_type, _task_id(rng), progress=index * 7 % 101))
    signed = mutation.apply(body, secret)
    shown = "(none)" if signed.signature is None else repr(signed.signature[:80])
    request = f"POST {mutation.describe()}; {SIGNATURE_HEADER}: {shown}; body {preview(signed.body, 60)}"
    return request, signed.body, signed.signature


def _claimed_task_id(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    task_id = value.get("task_id") if isinstance(value, dict) else None
    return task_id if isinstance(task_id, str) else None


def _usable_cases(cases: Sequence[HeaderMutation], secret: str) -> tuple[list[HeaderMutation], list[str]]:
    """The cases that are forgeries for this secret; the placeholders skipped because they *are* it."""
    usable: list[HeaderMutation] = []
    skipped: list[str] = []
    for mutation in cases:
        if mutation.kind == "placeholder-secret" and mutation.placeholder == secret:
            skipped.append(mutation.placeholder)
        else:
            usable.append(mutation)
    return usable, skipped


async def check_reject(target: Target, *, sender: ConduitSender | None = None,
                       cases: Sequence[HeaderMutation] = REJECT_CASES, settle_s: float = 0.3) -> Verdict:
    """Every must-reject mutation of a correctly signed delivery: 401 or 403, never 2xx.

    The forgeries include bodies signed with the empty secret and with every one of
    :data:`PLACEHOLDER_SECRETS` (but the target's own). A correctly signed control delivery goes
    first: when it is not accepted, refusals show nothing about the signature check, so the verdict
    is INCONCLUSIVE unless a forgery was accepted (then FAIL all the same). A forgery that got no
    answer is not judged here (W-NO-CRASH judges that). With observations, also: none of them was
    reported as processed (``accepted: true``).
    """
    rng = random.Random()
    usable, skipped = _usable_cases(cases, target.secret)
    exchanges: list[Exchange] = []
    task_ids: list[str] = []
    async with _sending(target, sender) as s:
        control_body = conduit_bytes(documented_body("task.progress", _task_id(rng), progress=5))
        control = await s.send(control_body, request="POST control: a correctly signed task.progress")
        for index, mutation in enumerate(usable):
            request, body, signature = _mutated(mutation, target.secret, rng, index)
            exchanges.append(await s.send(body, request=request, signature=signature))
            claimed = _claimed_task_id(body)
            if claimed:
                task_ids.append(claimed)
    problems: list[str] = []
    if target.observations is not None:
        await asyncio.sleep(settle_s)
        processed = [t for t in task_ids if _processed(target.observations, t)]
        if processed:
            problems.append(f"{len(processed)} refused deliveries reported as processed (accepted: true)")
    oks = [None if not e.answered else e.status in (401, 403) for e in exchanges]
    missing = [] if control.is_2xx() else [
        f"the correctly signed control delivery was answered {control.outcome}, not 2xx, so refusing "
        "the forgeries shows nothing about checking signatures (see W-ACCEPT)"]
    placeholders = sum(1 for m in usable if m.kind == "placeholder-secret")
    also = f"; {placeholders} placeholder secrets tried"
    if skipped:
        also += f" ({len(skipped)} skipped: the receiver's own secret is {skipped[0]!r}, a placeholder)"
    return _verdict("W-REJECT", exchanges, oks,
                    expected=Statement("401 or 403 for every badly signed or tampered delivery"),
                    good=f"all {len(exchanges)} bad signatures and tampered bodies refused with 401/403 "
                         f"({placeholders} placeholder secrets among them)",
                    bad="bad signatures or tampered bodies not refused with 401/403",
                    extra_problems=problems, missing=missing, also_observed=also,
                    extra_evidence=[control.evidence(control.is_2xx(), "ctl")],
                    details={"processed_check": target.observations is not None,
                             "control_status": control.status, "placeholders_tried": placeholders,
                             "placeholders_skipped": skipped})


# -- W-NO-CRASH ---------------------------------------------------------------------------------
def _no_5xx(exchange: Exchange) -> Judgement:
    """Judged when it reached the receiver: answered, and below 500."""
    return _reached(exchange, exchange.status is not None and exchange.status < 500)


def _refused(exchange: Exchange) -> Judgement:
    """Judged when it reached the receiver: answered with a 4xx (what an outsider must get)."""
    return _reached(exchange, exchange.status is not None and 400 <= exchange.status < 500)


async def check_no_crash(target: Target, *, sender: ConduitSender | None = None) -> Verdict:
    """The threat model, made explicit.

    Judged: everything a sender *without* the secret can send - the must-reject header mutations,
    each of :func:`outsider_bodies` (malformed, 100 000 levels deep, invalid UTF-8, oversized)
    unsigned and wrongly signed, and :data:`HUGE_HEADERS` - must be answered with a 4xx (a 2xx,
    3xx or 5xx, a dropped connection or no answer breaks the rule: a correct receiver verifies
    before it parses, so it refuses them all; a receiver that skips verification therefore fails
    this rule as well as W-REJECT, which judges the forgeries one by one); and signed bodies
    Conduit could send (:func:`conduit_shaped_bodies`, and the lenient header spellings of a
    right MAC) must be answered below 500. Not judged: the same pathological bodies *signed* -
    only a holder of the secret can send them - whose 5xx or dropped connection becomes an
    advisory on the verdict. Those go last, so a receiver they bring down has been judged already.
    """
    rng = random.Random()
    outsider_bad = f"outsider-{secrets.token_hex(8)}-{target.secret}"  # a wrong secret, certainly
    exchanges: list[Exchange] = []
    oks: list[Judgement] = []
    advisories: list[str] = []
    extra: list[Evidence] = []
    pathological = outsider_bodies()
    async with _sending(target, sender) as s:
        forgeries = [m for m in REJECT_CASES if m.kind != "placeholder-secret" or m.param == 0]
        for index, mutation in enumerate(forgeries):
            request, body, signature = _mutated(mutation, target.secret, rng, index)
            exchanges.append(await s.send(body, request=f"{request} (no secret)", signature=signature))
            oks.append(_refused(exchanges[-1]))
        for name, body in pathological.items():
            for how, signature in (("unsigned", None), ("wrongly signed", sign(body, outsider_bad))):
                request = f"POST {how} {name} {preview(body, 60)}"
                exchanges.append(await s.send(body, request=request, signature=signature))
                oks.append(_refused(exchanges[-1]))
        document = conduit_bytes(documented_body("task.progress", _task_id(rng)))
        for name, (header, value) in HUGE_HEADERS.items():
            signature = value if header == SIGNATURE_HEADER else sign(document, outsider_bad)
            extra_headers = [] if header == SIGNATURE_HEADER else [(header, value)]
            exchanges.append(await s.send(document, request=f"POST with {name}, no secret",
                                          signature=signature, extra_headers=extra_headers))
            oks.append(_refused(exchanges[-1]))
        for name, body in conduit_shaped_bodies(rng).items():
            exchanges.append(await s.send(body, request=f"POST signed {name} {preview(body, 60)}"))
            oks.append(_no_5xx(exchanges[-1]))
        for index, mutation in enumerate(LENIENT_CASES):
            request, body, signature = _mutated(mutation, target.secret, rng, index)
            exchanges.append(await s.send(body, request=f"{request} (signed)", signature=signature))
            oks.append(_no_5xx(exchanges[-1]))
        for name, body in pathological.items():
            request = f"POST signed pathological {name} {preview(body, 60)}"
            exchange = await s.send(body, request=request)
            finding = exchange.connected and (exchange.status is None or exchange.status >= 500)
            extra.append(exchange.evidence(None, "adv" if finding else "---"))
            if finding:
                advisories.append(
                    f"a signed {name} got {exchange.outcome}: only a holder of the secret can send it "
                    "(Conduit never does), so this is not a failure - but a parser that a body can "
                    "crash is worth hardening (e.g. catch RecursionError next to ValueError)")
    return _verdict("W-NO-CRASH", exchanges, oks,
                    expected=Statement("a 4xx for whatever a sender without the secret sends, and an "
                                       "answer below 500 for every signed body Conduit could send"),
                    good=f"all {len(exchanges)} requests from outsiders refused with a 4xx and every "
                         "Conduit-shaped signed body answered below 500"
                         + (f"; {len(advisories)} {'advisory' if len(advisories) == 1 else 'advisories'} "
                            "on signed pathological bodies" if advisories else ""),
                    bad="requests from outsiders were not refused with a 4xx, or got a 5xx, a dropped "
                        "connection or no answer",
                    advisories=advisories, extra_evidence=extra,
                    also_observed=f"; {len(pathological)} signed pathological bodies not judged "
                                  f"({len(advisories)} got a 5xx or no answer: advisories)",
                    details={"signed_pathological": len(pathological), "advisories": len(advisories)})


# -- W-DUPLICATE --------------------------------------------------------------------------------
async def check_duplicate(target: Target, *, sender: ConduitSender | None = None, settle_s: float = 2.0,
                          grace_s: float = 0.3) -> Verdict:
    """The same delivery twice (same bytes, signature and timestamp header): 2xx both times.

    With observations: that delivery is reported processed exactly once, and a *different* event
    of the same task (sent after it) exactly once too - a receiver that dedups too broadly fails.
    """
    rng = random.Random()
    task_id = _task_id(rng)
    first = documented_body("task.progress", task_id, progress=30)
    other = documented_body("task.completed", task_id)
    body, other_body = conduit_bytes(first), conduit_bytes(other)
    timestamp = str(int(time.time()))
    async with _sending(target, sender) as s:
        exchanges = [
            await s.send(body, request=f"POST delivery of {task_id} task.progress", timestamp=timestamp),
            await s.send(body, request="POST the same delivery again (same bytes, signature, timestamp)",
                         timestamp=timestamp),
            await s.send(other_body, request="POST a different event of the same task (task.completed)"),
        ]
    oks = [_reached(exchanges[0], exchanges[0].is_2xx()), _reached(exchanges[1], exchanges[1].is_2xx()),
           _reached(exchanges[2], True)]
    problems: list[str] = []
    details: dict[str, Any] = {"processed_once_checked": target.observations is not None, "task_id": task_id}
    if target.observations is not None:
        source = target.observations
        # Wait for the reports of what was acknowledged (a refused delivery need not show up).
        awaited = [event for event, exchange in (("task.progress", exchanges[0]),
                                                 ("task.completed", exchanges[2])) if exchange.is_2xx()]
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline and not all(_processed(source, task_id, e) for e in awaited):
            await asyncio.sleep(0.02)
        await asyncio.sleep(grace_s)  # let a second processing show up
        once = _processed(source, task_id, "task.progress")
        distinct = _processed(source, task_id, "task.completed")
        details.update(processed=once, processed_other_event=distinct)
        if once != 1:
            problems.append(f"the duplicated delivery was reported processed {once} times (want exactly 1)")
        if exchanges[2].is_2xx() and distinct != 1:
            problems.append(f"a different event of the same task was reported processed {distinct} times "
                            "(want exactly 1)")
    good = "the duplicate was acknowledged 2xx" + (
        " and processed once" if target.observations is not None
        else "; processed-once not checked (no observation source)")
    also = (f"; processed {details['processed']}x (other event {details['processed_other_event']}x)"
            if target.observations is not None else "")
    return _verdict("W-DUPLICATE", exchanges, oks,
                    expected=Statement("2xx for both copies; processed exactly once"),
                    good=good, bad="copies of the delivery not acknowledged 2xx", details=details,
                    extra_problems=problems, also_observed=also)


# -- W-FAST-ACK ---------------------------------------------------------------------------------
async def check_fast_ack(target: Target, *, sender: ConduitSender | None = None, budget_s: float = 5.0,
                         timeout_s: float | None = None) -> Verdict:
    """Four deliveries at once (three events, one ~512 KB body): each answered within ``budget_s``.

    Requests give up after ``timeout_s`` (default: budget + 2 s), so a slow receiver costs at most
    that long. Latencies are in ``details["latencies_ms"]``.
    """
    rng = random.Random()
    large = documented_body("task.completed", _task_id(rng), result={
        "images": [{"url": "https://cdn.example.com/v1/images/large.png"}],
        "blob": "0123456789abcdef" * 32_000})
    bodies = [
        ("task.progress", documented_body("task.progress", _task_id(rng), progress=10)),
        ("task.completed", documented_body("task.completed", _task_id(rng))),
        ("task.failed", documented_body("task.failed", _task_id(rng))),
        ("task.completed, ~512 KB", large),
    ]
    limit = timeout_s if timeout_s is not None else budget_s + 2.0
    async with _sending(target, sender) as s:
        raws = [(label, conduit_bytes(body)) for label, body in bodies]
        exchanges = list(await asyncio.gather(*(
            s.send(raw, request=f"POST {label} ({len(raw)} B)", timeout_s=limit) for label, raw in raws)))
    budget_ms = budget_s * 1000.0
    oks = [_reached(e, e.answered and e.latency_ms is not None and e.latency_ms <= budget_ms)
           for e in exchanges]
    latencies = [None if e.latency_ms is None else round(e.latency_ms, 2) for e in exchanges]
    slowest = max((value or 0.0) for value in latencies)
    verdict = _verdict("W-FAST-ACK", exchanges, oks,
                       expected=Statement("every delivery answered within {budget}",
                                          budget=Measure(budget_s, "s")),
                       good=f"all {len(exchanges)} deliveries answered within {budget_s:g} s "
                            f"(max {slowest:.1f} ms)",
                       bad=f"deliveries not answered within {budget_s:g} s",
                       details={"budget_s": budget_s, "latencies_ms": latencies, "timeout_s": limit})
    return verdict


# -- W-METHOD -----------------------------------------------------------------------------------
async def check_method(target: Target, *, sender: ConduitSender | None = None) -> Verdict:
    """Other methods, non-JSON content types and invalid JSON: a 4xx each, never 2xx or 5xx."""
    rng = random.Random()
    doc = conduit_bytes(documented_body("task.progress", _task_id(rng)))
    invalid = b'{"event_type":"task.completed","task_id":"' + _task_id(rng).encode() + b'",'
    cases: list[tuple[str, bytes, dict[str, Any]]] = [
        ("GET", b"", {"method": "GET", "content_type": None, "signature": None}),
        ("PUT a signed documented body", doc, {"method": "PUT"}),
        ("PATCH a signed documented body", doc, {"method": "PATCH"}),
        ("DELETE", b"", {"method": "DELETE", "content_type": None, "signature": None}),
        ("POST text/plain, signed", b"hello, webhook", {"content_type": "text/plain"}),
        ("POST a signed form body", b"event_type=task.completed&task_id=x",
         {"content_type": "application/x-www-form-urlencoded"}),
        ("POST without Content-Type, signed", b"not json at all", {"content_type": None}),
        ("POST application/json with invalid JSON, signed", invalid, {}),
        ("POST application/json with invalid JSON, unsigned", invalid, {"signature": None}),
    ]
    async with _sending(target, sender) as s:
        exchanges = [await s.send(body, request=f"{label} {preview(body, 50)}", **options)
                     for label, body, options in cases]
    oks = [_reached(e, e.status is not None and 400 <= e.status < 500) for e in exchanges]
    return _verdict("W-METHOD", exchanges, oks,
                    expected=Statement("a 4xx for every non-POST or non-JSON request"),
                    good=f"all {len(exchanges)} non-POST / non-JSON requests answered 4xx",
                    bad="non-POST / non-JSON requests not answered 4xx")


# -- all rules ----------------------------------------------------------------------------------
RuleCheck = Callable[..., Awaitable[Verdict]]
CHECKS: dict[str, RuleCheck] = {
    "W-ACCEPT": check_accept,
    "W-RAW-BODY": check_raw_body,
    "W-REJECT": check_reject,
    "W-NO-CRASH": check_no_crash,
    "W-DUPLICATE": check_duplicate,
    "W-FAST-ACK": check_fast_ack,
    "W-METHOD": check_method,
}


async def check_receiver(url: str, secret: str, *, rules: Iterable[str] | None = None,
                         observations: ObservationSource | None = None, budget_s: float = 5.0,
                         max_examples: int = 25, seed: int = DEFAULT_SEED,
                         timeout_s: float = DEFAULT_TIMEOUT_S, max_requests: int = 1000) -> list[Verdict]:
    """Run the W-* rules (all by default, in RULE_IDS order) against one receiver; one Verdict each."""
    selected = list(RULE_IDS) if rules is None else list(dict.fromkeys(rules))
    unknown = [r for r in selected if r not in CHECKS]
    if unknown:
        raise ValueError(f"unknown rules {unknown}; known: {', '.join(RULE_IDS)}")
    target = Target(url, secret, observations)
    verdicts: list[Verdict] = []
    async with ConduitSender(url, secret, timeout_s=timeout_s, max_requests=max_requests) as sender:
        for rule in selected:
            options: dict[str, Any] = {}
            if rule == "W-FAST-ACK":
                options["budget_s"] = budget_s
            elif rule == "W-RAW-BODY":
                options.update(max_examples=max_examples, seed=seed)
            try:
                verdicts.append(await CHECKS[rule](target, sender=sender, **options))
            except Exception as exc:
                # The rule was not exercised: nothing to judge the receiver by.
                verdicts.append(Verdict(rule, Outcome.INCONCLUSIVE,
                                        f"the check could not run: {type(exc).__name__}: {exc}",
                                        expected=Statement(RULE_TEXT[rule]), observed=Statement("no result")))
    return verdicts


# -- CLI ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m contract_tests.webhook_rules",
        description="Check a webhook receiver against the W-* rules of the Conduit contract.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the receiver's webhook URL (already running)")
    where.add_argument("--receiver", help="a command to start under the driver protocol (its ready line "
                                          "gives the URL; its webhook observations are used)")
    parser.add_argument("--secret", default=os.environ.get("CONDUIT_WEBHOOK_SECRET"),
                        help="the signing secret (default: $CONDUIT_WEBHOOK_SECRET; with --receiver a "
                             "random one is made when unset)")
    parser.add_argument("--rule", action="append", choices=RULE_IDS, help="check only this rule (repeatable)")
    parser.add_argument("--budget", type=float, default=5.0, help="W-FAST-ACK budget in seconds (default 5)")
    parser.add_argument("--examples", type=int, default=25, help="W-RAW-BODY generated examples (default 25)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="W-RAW-BODY Hypothesis seed")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per-request timeout (s)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    parser.add_argument("--verbose", action="store_true", help="print every request, not only the bad ones")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    secret = args.secret
    process = None
    if args.receiver:
        from contract_tests.receivers import ReceiverProcess

        secret = secret or f"whsec_{secrets.token_hex(16)}"
        process = ReceiverProcess(shlex.split(args.receiver), secret=secret)
        try:
            process.start()
        except (OSError, RuntimeError) as exc:
            print(f"could not start the receiver: {exc}", file=sys.stderr)
            return 2
        url, observations = process.webhook_url, process.observations
    else:
        if not secret:
            print("--secret (or CONDUIT_WEBHOOK_SECRET) is required with --url", file=sys.stderr)
            return 2
        url, observations = args.url, None
    try:
        verdicts = asyncio.run(check_receiver(
            url, secret, rules=args.rule, observations=observations, budget_s=args.budget,
            max_examples=args.examples, seed=args.seed, timeout_s=args.timeout))
    finally:
        if process is not None:
            process.stop()
    if args.json:
        print(json.dumps([v.to_json() for v in verdicts], indent=2, ensure_ascii=False))
    else:
        for verdict in verdicts:
            verbose = args.verbose or not verdict.passed or bool(verdict.advisories)
            print(verdict.explain(all_evidence=args.verbose) if verbose else str(verdict))
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

