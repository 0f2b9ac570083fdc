"""The webhook view of the task timeline: each task event becomes one POST.

What the body says is the profile's business (``body_for``), and so is how it is framed (the
profile's :class:`WebhookDialect`: serialiser, Content-Type, extra headers, signature or none).
This module serialises the body once, signs those exact bytes when the dialect signs, applies
faults, and delivers at least once:

- a 2xx is success; 400 is final; any other status, a timeout or a network error is retried after
  each of ``retry_delays`` (× ``time_scale``), re-sending the same bytes and signature;
- one task's deliveries go out in event order (a per-task chain: the next waits for the previous
  one's attempts to finish); other tasks and other receivers are not held up, and each origin
  (scheme, host, port) has at most ``per_origin_limit`` requests in flight;
- every HTTP attempt is a ``webhook_attempt`` record and every delivery ends with one
  ``webhook_delivery`` record (outcome ``delivered`` / ``rejected`` / ``gave_up``, or ``cancelled``
  by :meth:`WebhookDispatcher.stop`, or ``refused`` by the URL policy at send time);
- URLs are checked with :func:`check_webhook_url` (loopback unless allowed): a refused one is a
  ``webhook_refused`` record and no request; redirects are never followed (a 3xx is a failure).

Nothing here raises into the engine: errors are logged and recorded as ``webhook_error``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from simulator.faults import EventFate, FaultController, WebhookFault
from simulator.recorder import Recorder
from simulator.tasks.model import Task, TaskEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Conduit-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
CONTENT_TYPE = "application/json"

# Headers the dispatcher owns: a task's webhook_headers never replace these. Content-Type and the
# signature are the contract's; the timestamp and User-Agent are documented values; the rest frame
# the HTTP message and would corrupt it.
_RESERVED_HEADERS = frozenset({
    "content-type", "content-length", "transfer-encoding", "content-encoding", "host", "connection",
    "user-agent", SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower(),
})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Faults the controller may hand out for webhooks (FaultController.webhook_fault()).
FAULT_MODES = frozenset({"bad_signature", "wrong_secret", "truncated_body", "duplicate", "out_of_order",
                         "slow"})


def sign(body: bytes, secret: str, encoding: Literal["hex", "base64"] = "hex") -> str:
    """HMAC-SHA256 of the exact body bytes, keyed with the UTF-8 secret: lowercase hex (the
    guide's ``X-Conduit-Signature``) or base64 (what the real server's batch sends use)."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256)
    return digest.hexdigest() if encoding == "hex" else base64.b64encode(digest.digest()).decode()


def compact_json(body: Any) -> bytes:
    """The documented profile's serialiser: compact JSON, UTF-8, non-ASCII written as is."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class WebhookSignature:
    """How a dialect signs: which header, which encoding of HMAC-SHA256 over the raw body."""

    header: str = SIGNATURE_HEADER
    encoding: Literal["hex", "base64"] = "hex"


@dataclass(frozen=True)
class WebhookDialect:
    """How one profile frames a webhook: everything about the request except the body's content.

    The defaults are the documented profile's (guide, "Webhook Security").
    """

    content_type: str = CONTENT_TYPE
    signature: WebhookSignature | None = WebhookSignature()  # None: deliveries are not signed
    # Extra headers from the event, e.g. the as-built ``X-Webhook-Type: progress|completion``.
    event_headers: Callable[[TaskEvent], dict[str, str]] | None = None
    serialise: Callable[[Any], bytes] = compact_json
    # The body key that names the event (for the records' ``event_type``).
    event_type_key: str = "event_type"

    def headers_for(self, event: TaskEvent) -> dict[str, str]:
        return dict(self.event_headers(event)) if self.event_headers is not None else {}


DOCUMENTED_DIALECT = WebhookDialect()


def _normalise_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 (Python 3.11 does not call it loopback)
    return address.is_loopback


def check_webhook_url(url: str, allowed_hosts: Iterable[str]) -> str | None:
    """None when ``url`` may receive webhooks, else why not.

    It must be an absolute http(s) URL with a host, and the host must be loopback (127.0.0.0/8,
    ::1, ``localhost``) unless it is listed in ``allowed_hosts`` (names or IP literals,
    case-insensitive, IPv6 with or without brackets). Anything that only *resolves* to loopback
    (``127.1``, ``2130706433``, other names) is refused: the check is on the literal host.
    """
    if isinstance(url, str) and isinstance(allowed_hosts, tuple):
        return _check_webhook_url_cached(url, allowed_hosts)  # the dispatcher's case
    return _check_webhook_url(url, allowed_hosts)


@functools.lru_cache(maxsize=1024)
def _check_webhook_url_cached(url: str, allowed_hosts: tuple[str, ...]) -> str | None:
    # A pure function of its arguments, asked twice per delivery (~10 µs each): remember answers.
    return _check_webhook_url(url, allowed_hosts)


def _check_webhook_url(url: str, allowed_hosts: Iterable[str]) -> str | None:
    if not isinstance(url, str) or not url:
        return "webhook_url must be a non-empty string"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return "webhook_url must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed or out-of-range port
    except ValueError as exc:
        return f"webhook_url is not a valid URL: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"webhook_url must use http or https, not {parts.scheme or 'no scheme'!r}"
    if not parts.hostname:
        return "webhook_url must have a host"
    host = _normalise_host(parts.hostname)
    if _is_loopback(host):
        return None
    allowed = {_normalise_host(h) for h in allowed_hosts}
    if host in allowed:
        return None
    return (f"webhook_url host {parts.hostname!r} is not allowed: only loopback hosts "
            "(127.0.0.0/8, ::1, localhost) or the configured allowed hosts may receive webhooks")


@functools.lru_cache(maxsize=1024)
def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, _normalise_host(parts.hostname or ""), port


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(eq=False)
class _Delivery:
    """One event's webhook: the bytes and headers every attempt re-sends."""

    delivery_id: int
    task: Task
    event: TaskEvent
    url: str
    event_type: str
    body: bytes  # what goes on the wire (the first half of the real body for truncated_body)
    signature: str | None  # None: the dispatcher has no secret (unsigned profile)
    fault: WebhookFault | None
    not_before: float  # loop time: a delay_event fault moves the start
    dialect_headers: list[tuple[str, str]] = field(default_factory=list)  # e.g. X-Webhook-Type
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    ignored_headers: list[str] = field(default_factory=list)
    timestamp: str | None = None  # set at the first attempt, kept for retries and the duplicate
    hold_timer: asyncio.TimerHandle | None = None

    @property
    def fault_mode(self) -> str | None:
        return self.fault.mode if self.fault else None


class WebhookDispatcher:
    """Engine listener that POSTs each task event to the task's ``webhook_url``."""

    def __init__(
        self,
        *,
        secret: str | None,
        recorder: Recorder,
        faults: FaultController,
        body_for: Callable[[Task, TaskEvent], dict[str, Any] | None],
        time_scale: float = 1.0,
        timeout: float = 30.0,
        retry_delays: Sequence[float] = (2.0, 4.0, 8.0),
        allowed_hosts: Iterable[str] = (),
        per_origin_limit: int = 8,
        user_agent: str = "Conduit-LLM/1.0",
        rng: random.Random | None = None,
        dialect: WebhookDialect = DOCUMENTED_DIALECT,
    ) -> None:
        if per_origin_limit < 1:
            raise ValueError("per_origin_limit must be at least 1")
        self.secret = secret
        self.recorder = recorder
        self.faults = faults
        self.body_for = body_for
        self.time_scale = time_scale
        self.timeout = timeout
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self.allowed_hosts = tuple(allowed_hosts)
        self.per_origin_limit = per_origin_limit
        self.user_agent = user_agent
        self.dialect = dialect
        # The key the wrong_secret fault signs with (public so receivers' tests can tell it apart).
        self.wrong_secret = f"wrong-{secret or ''}"
        self._rng = rng or random.Random()
        self._client_timeout = aiohttp.ClientTimeout(total=self.timeout)
        self._session: aiohttp.ClientSession | None = None
        self._stopped = False
        self._ids = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._tails: dict[str, asyncio.Task[None]] = {}  # task_id → its last scheduled delivery
        self._held: dict[str, list[_Delivery]] = {}  # task_id → out_of_order deliveries held back
        self._origins: dict[tuple[str, str, int], asyncio.Semaphore] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopped = False
        if self._session is None:
            self._session = self._new_session()

    def _new_session(self) -> aiohttp.ClientSession:
        # No connector-wide limit: concurrency is bounded per origin by our own semaphores, so a
        # dead receiver can never use up slots another receiver needs.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    async def stop(self) -> None:
        """Cancel held, pending and retrying deliveries (each recorded as ``cancelled``)."""
        self._stopped = True
        for held in self._held.values():
            for delivery in held:
                if delivery.hold_timer is not None:
                    delivery.hold_timer.cancel()
                self._record_delivery(delivery, "cancelled", 0, None, duplicate=False)
        self._held.clear()
        pending = list(self._pending)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._pending.clear()
        self._tails.clear()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def drain(self, timeout: float) -> None:
        """Wait until no delivery is pending, held or retrying; TimeoutError after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._pending or self._held:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"webhook deliveries still pending after {timeout} s: "
                                   f"{len(self._pending)} running, "
                                   f"{sum(map(len, self._held.values()))} held")
            if self._pending:
                await asyncio.wait(set(self._pending), timeout=remaining)
            else:
                await asyncio.sleep(min(0.01, remaining))

    @property
    def pending(self) -> int:
        """Deliveries not finished yet (running, waiting in a chain, or held back)."""
        return len(self._pending) + sum(map(len, self._held.values()))

    # -- the engine listener ------------------------------------------------------------------
    def __call__(self, task: Task, event: TaskEvent) -> None:
        try:
            self._accept(task, event)
        except Exception as exc:  # never into the engine
            log.exception("webhook dispatch of %s #%s failed", task.task_id, event.seq)
            self._record_error(task, event, "dispatch", exc)

    def _accept(self, task: Task, event: TaskEvent) -> None:
        url = task.request.webhook_url
        if not url or self._stopped:
            return
        problem = check_webhook_url(url, self.allowed_hosts)
        if problem is not None:
            self.recorder.record("webhook_refused", task_id=task.task_id, key=task.key, event_seq=event.seq,
                                 url=url, error=problem)
            return
        try:
            body = self.body_for(task, event)
        except Exception as exc:
            log.exception("webhook body for %s #%s failed", task.task_id, event.seq)
            self._record_error(task, event, "body_for", exc)
            return
        if body is None:
            return
        try:
            raw = self.dialect.serialise(body)
        except (TypeError, ValueError) as exc:
            self._record_error(task, event, "serialise", exc)
            return
        # Fault questions are asked now, in event order: event_fate's Nth-event bookkeeping
        # assumes the question comes while that event is the latest one published.
        try:
            fate = self.faults.event_fate("webhook", event)
        except Exception as exc:  # a broken fault must not cost the delivery
            log.exception("event_fate failed for %s #%s", task.task_id, event.seq)
            self._record_error(task, event, "event_fate", exc)
            fate = EventFate()
        if fate.drop:
            self.recorder.record("event_dropped", channel="webhook", task_id=task.task_id,
                                 event_seq=event.seq, fault_id=fate.fault_id)
            return
        loop = asyncio.get_running_loop()
        if fate.delay > 0:
            self.recorder.record("event_delayed", channel="webhook", task_id=task.task_id,
                                 event_seq=event.seq, delay_s=fate.delay, fault_id=fate.fault_id)
        try:
            fault = self.faults.webhook_fault()
        except Exception as exc:
            log.exception("webhook_fault failed for %s #%s", task.task_id, event.seq)
            self._record_error(task, event, "webhook_fault", exc)
            fault = None
        if fault is not None and fault.mode not in FAULT_MODES:
            log.warning("unknown webhook fault mode %r ignored", fault.mode)
            self.recorder.record("webhook_error", task_id=task.task_id, event_seq=event.seq, stage="fault",
                                 error=f"unknown webhook fault mode {fault.mode!r}", fault_id=fault.fault_id)
            fault = None
        delivery = self._build(task, event, url, body, raw, fault, loop.time() + max(fate.delay, 0.0))

        held = self._held.pop(task.task_id, [])
        if fault is not None and fault.mode == "out_of_order":
            # Held until the task's next delivery has gone out (or for ``delay`` if none comes).
            held.append(delivery)
            self._held[task.task_id] = held
            delivery.hold_timer = loop.call_later(fault.delay, self._release_held, delivery)
            self.recorder.record("webhook_held", task_id=task.task_id, event_seq=event.seq,
                                 delivery=delivery.delivery_id, max_hold_s=fault.delay,
                                 fault_id=fault.fault_id)
            return
        self._enqueue(delivery)
        for earlier in held:  # out_of_order deliveries go right after this one
            if earlier.hold_timer is not None:
                earlier.hold_timer.cancel()
            self.recorder.record("webhook_released", task_id=task.task_id, event_seq=earlier.event.seq,
                                 delivery=earlier.delivery_id, after_event_seq=event.seq,
                                 reason="next_delivery")
            self._enqueue(earlier)

    def _build(self, task: Task, event: TaskEvent, url: str, body: dict[str, Any], raw: bytes,
               fault: WebhookFault | None, not_before: float) -> _Delivery:
        mode = fault.mode if fault else None
        scheme = self.dialect.signature
        signature: str | None = None
        # An unsigned dialect has no signature for bad_signature/wrong_secret to spoil: those
        # faults then change nothing (the records still name them).
        if scheme is not None and self.secret is not None:
            signature = sign(raw, self.secret, scheme.encoding)
            if mode == "bad_signature":
                correct = signature
                while signature == correct:
                    forged = self._rng.getrandbits(256).to_bytes(32, "big")
                    signature = (forged.hex() if scheme.encoding == "hex"
                                 else base64.b64encode(forged).decode())
            elif mode == "wrong_secret":
                signature = sign(raw, self.wrong_secret, scheme.encoding)
        wire = raw[: len(raw) // 2] if mode == "truncated_body" else raw
        event_type = body.get(self.dialect.event_type_key) if isinstance(body, dict) else None
        self._ids += 1
        delivery = _Delivery(
            delivery_id=self._ids, task=task, event=event, url=url,
            event_type=str(event_type) if event_type is not None else event.kind.value,
            body=wire, signature=signature, fault=fault, not_before=not_before,
            dialect_headers=list(self.dialect.headers_for(event).items()),
        )
        reserved = _RESERVED_HEADERS | {name.lower() for name, _ in delivery.dialect_headers}
        if scheme is not None:
            reserved |= {scheme.header.lower()}
        for name, value in (task.request.webhook_headers or {}).items():
            name, value = str(name), str(value)
            if name.lower() in reserved or not name or not set(name) <= _TOKEN_CHARS \
                    or any(c in value for c in "\r\n\0"):
                delivery.ignored_headers.append(name)
            else:
                delivery.extra_headers.append((name, value))
        if delivery.ignored_headers:
            log.info("task %s: webhook_headers %s ignored", task.task_id, delivery.ignored_headers)
        return delivery

    def _release_held(self, delivery: _Delivery) -> None:
        """An out_of_order delivery whose task sent nothing more within the hold time."""
        held = self._held.get(delivery.task.task_id)
        if not held or delivery not in held:
            return
        held.remove(delivery)
        if not held:
            del self._held[delivery.task.task_id]
        delivery.hold_timer = None
        self.recorder.record("webhook_released", task_id=delivery.task.task_id, event_seq=delivery.event.seq,
                             delivery=delivery.delivery_id, after_event_seq=None, reason="timeout")
        self._enqueue(delivery)

    # -- the per-task chain -------------------------------------------------------------------
    def _enqueue(self, delivery: _Delivery) -> None:
        task_id = delivery.task.task_id
        previous = self._tails.get(task_id)
        runner = asyncio.get_running_loop().create_task(
            self._run(delivery, previous), name=f"webhook {task_id} #{delivery.event.seq}")
        self._tails[task_id] = runner
        self._pending.add(runner)
        runner.add_done_callback(lambda done: self._finished(task_id, done))

    def _finished(self, task_id: str, runner: asyncio.Task[None]) -> None:
        self._pending.discard(runner)
        if self._tails.get(task_id) is runner:
            del self._tails[task_id]
        if not runner.cancelled() and runner.exception() is not None:
            log.error("webhook runner failed", exc_info=runner.exception())

    async def _run(self, delivery: _Delivery, previous: asyncio.Task[None] | None) -> None:
        delivering = False
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # never cancels or re-raises the previous one
            wait = delivery.not_before - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
            if delivery.fault_mode == "slow" and delivery.fault is not None:
                await asyncio.sleep(delivery.fault.delay)
            delivering = True
            await self._deliver(delivery, duplicate=False)
            if delivery.fault_mode == "duplicate":
                await self._deliver(delivery, duplicate=True)
        except asyncio.CancelledError:
            if not delivering:  # cancelled before its first attempt; _deliver records its own
                self._record_delivery(delivery, "cancelled", 0, None, duplicate=False)
            raise
        except Exception as exc:  # a bug here must not kill the loop or the task's chain
            log.exception("webhook delivery %s failed", delivery.delivery_id)
            self._record_error(delivery.task, delivery.event, "deliver", exc)

    # -- one delivery: attempts and retries ---------------------------------------------------
    async def _deliver(self, delivery: _Delivery, *, duplicate: bool) -> None:
        attempts = 0
        status: int | None = None
        try:
            problem = check_webhook_url(delivery.url, self.allowed_hosts)  # defence in depth
            if problem is not None:
                self.recorder.record("webhook_refused", task_id=delivery.task.task_id, key=delivery.task.key,
                                     event_seq=delivery.event.seq, url=delivery.url, error=problem)
                self._record_delivery(delivery, "refused", 0, None, duplicate=duplicate)
                return
            while True:
                attempts += 1
                status, error = await self._attempt(delivery, attempts, duplicate)
                if status is not None and 200 <= status < 300:
                    outcome = "delivered"
                    break
                if status == 400:
                    outcome = "rejected"
                    break
                if attempts > len(self.retry_delays):
                    outcome = "gave_up"
                    break
                await asyncio.sleep(self.retry_delays[attempts - 1] * self.time_scale)
        except asyncio.CancelledError:
            self._record_delivery(delivery, "cancelled", attempts, status, duplicate=duplicate)
            raise
        self._record_delivery(delivery, outcome, attempts, status, duplicate=duplicate)

    async def _attempt(
        self, delivery: _Delivery, attempt: int, duplicate: bool,
    ) -> tuple[int | None, str | None]:
        if delivery.timestamp is None:
            delivery.timestamp = str(int(time.time()))
        headers = [("Content-Type", self.dialect.content_type), ("User-Agent", self.user_agent),
                   *delivery.dialect_headers, (TIMESTAMP_HEADER, delivery.timestamp),
                   *delivery.extra_headers]
        if delivery.signature is not None and self.dialect.signature is not None:
            headers.append((self.dialect.signature.header, delivery.signature))
        status: int | None = None
        error: str | None = None
        origin = _origin(delivery.url)
        semaphore = self._origins.get(origin)
        if semaphore is None:  # setdefault would build a Semaphore on every attempt
            semaphore = self._origins[origin] = asyncio.Semaphore(self.per_origin_limit)
        async with semaphore:
            started = time.monotonic()
            try:
                if self._session is None:
                    self._session = self._new_session()
                async with self._session.post(
                    delivery.url, data=delivery.body, headers=headers, allow_redirects=False,
                    timeout=self._client_timeout,
                ) as response:
                    status = response.status
                    await response.content.read(64 * 1024)  # enough to free the connection
            except TimeoutError:
                error = f"timeout after {self.timeout:g} s"
            except aiohttp.ClientError as exc:
                error = _error_text(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = _error_text(exc)
                log.warning("webhook POST to %s failed unexpectedly: %s", delivery.url, error)
            latency_ms = (time.monotonic() - started) * 1000.0
        self.recorder.record(
            "webhook_attempt", task_id=delivery.task.task_id, key=delivery.task.key,
            event_type=delivery.event_type, event_seq=delivery.event.seq, url=delivery.url, attempt=attempt,
            status=status, latency_ms=round(latency_ms, 3), error=error, fault=delivery.fault_mode,
            duplicate=duplicate, signature=delivery.signature, body_bytes=len(delivery.body),
            delivery=delivery.delivery_id, timestamp=delivery.timestamp,
        )
        return status, error

    # -- records ------------------------------------------------------------------------------
    def _record_delivery(self, delivery: _Delivery, outcome: str, attempts: int, status: int | None, *,
                         duplicate: bool) -> None:
        self.recorder.record(
            "webhook_delivery", task_id=delivery.task.task_id, key=delivery.task.key,
            event_type=delivery.event_type, event_seq=delivery.event.seq, url=delivery.url, outcome=outcome,
            attempts=attempts, status=status, fault=delivery.fault_mode,
            fault_id=delivery.fault.fault_id if delivery.fault else None, duplicate=duplicate,
            delivery=delivery.delivery_id, ignored_headers=list(delivery.ignored_headers),
        )

    def _record_error(self, task: Task, event: TaskEvent, stage: str, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            self.recorder.record("webhook_error", task_id=task.task_id, event_seq=event.seq, stage=stage,
                                 error=_error_text(exc))
