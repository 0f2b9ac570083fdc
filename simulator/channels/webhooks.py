"""The webhook view of the task timeline: each task event becomes one signed POST.

What the body says is the profile's business (``body_for``); this module serialises it once,
signs those exact bytes, applies faults, and delivers at least once:

- a 2xx is success; 400 is final; any other status, a timeout or a network error is retried after
  each of ``retry_delays`` (× ``time_scale``), re-sending the same bytes and signature;
- one task's deliveries go out in event order (a per-task chain: the next starts when the previous
  one's attempts have ended); other tasks and other receivers are not held up. Each receiver URL
  (scheme, host, port, path and query) has its own FIFO of ready deliveries and at most
  ``per_receiver_limit`` long-lived workers, each with one keep-alive connection
  (:mod:`simulator.channels.webhook_http`), so a slow or dead URL delays no other URL, not even
  another path on the same host and port. Workers exit when their FIFO is empty; retries and
  start delays wait on loop timers, holding no worker;
- at most ``max_backlog`` deliveries per receiver URL are unfinished; past that a new event's
  delivery is recorded at once as ``overflow`` and not sent (the engine cannot be made to wait);
- every HTTP attempt is a ``webhook_attempt`` record and every delivery ends with one
  ``webhook_delivery`` record (outcome ``delivered`` / ``rejected`` / ``gave_up``, or ``cancelled``
  by :meth:`WebhookDispatcher.stop`, ``refused`` by the URL policy at send time, or ``overflow``);
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
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yarl

from simulator.channels.webhook_http import Endpoint, Http1Connection, ResponseError
from simulator.faults import EventFate, FaultController, WebhookFault
from simulator.recorder import Recorder, RecordKind
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

# Idle keep-alive connections are closed after this long: below the shortest common server
# keep-alive (uvicorn's 5 s), so a pooled connection is rarely one the server is closing.
KEEPALIVE_S = 4.0

# Faults the controller may hand out for webhooks (FaultController.webhook_fault()).
FAULT_MODES = frozenset({"bad_signature", "wrong_secret", "truncated_body", "duplicate", "out_of_order",
                         "slow"})


def sign(body: bytes, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of the exact body bytes, keyed with the UTF-8 secret."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


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
def _receiver(url: str) -> str:
    """The URL a concurrency limit is kept for: scheme, host and port normalised, no fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{_normalise_host(parts.hostname or '')}:{port}{parts.path or '/'}?{parts.query}"


@functools.lru_cache(maxsize=1024)
def _endpoint(url: str) -> Endpoint:
    """Where ``url``'s requests go (yarl percent-encodes the path and IDNA-encodes the host)."""
    parsed = yarl.URL(url)
    authorization = None
    if parsed.user is not None:
        credentials = f"{parsed.user}:{parsed.password or ''}"
        try:
            encoded = credentials.encode("latin-1")
        except UnicodeEncodeError:
            encoded = credentials.encode("utf-8")
        authorization = f"Basic {base64.b64encode(encoded).decode('ascii')}"
    return Endpoint(host=parsed.raw_host or "", port=parsed.port or 80, tls=parsed.scheme == "https",
                    target=parsed.raw_path_qs or "/", host_header=parsed.host_port_subcomponent or "",
                    authorization=authorization)


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# One encoder for every body: json.dumps with these arguments builds a new encoder per call.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(eq=False, slots=True)
class _Delivery:
    """One event's webhook: the bytes and headers every attempt re-sends, and where it stands."""

    delivery_id: int
    task: Task
    event: TaskEvent
    url: str
    event_type: str
    body: bytes  # what goes on the wire (the first half of the real body for truncated_body)
    signature: str | None  # None: the dispatcher has no secret (unsigned profile)
    fault: WebhookFault | None
    fault_mode: str | None
    not_before: float  # loop time: a delay_event fault moves the start
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    ignored_headers: list[str] = field(default_factory=list)
    timestamp: str | None = None  # set at the first attempt, kept for retries and the duplicate
    hold_timer: asyncio.TimerHandle | None = None
    # Where it stands: attempts of the current send (the duplicate counts afresh), the last status,
    # the timer of a start or retry wait, and the request bytes (built at the first attempt).
    receiver: _Receiver | None = None
    attempts: int = 0
    status: int | None = None
    duplicate: bool = False
    timer: asyncio.TimerHandle | None = None
    request: bytes | None = None


class _Receiver:
    """One receiver URL's deliveries: a FIFO of those ready to go, and its workers.

    Workers are tasks that take the next ready delivery, make one attempt and go back for more;
    one exits when nothing is ready, and a new one starts when a delivery becomes ready while
    fewer than ``per_receiver_limit`` run. Each keeps one keep-alive connection; an exiting worker
    leaves it in ``idle`` for the next (closed after :data:`KEEPALIVE_S` without use).
    """

    __slots__ = ("key", "endpoint", "ready", "workers", "waiting", "idle", "backlog", "expiry")

    def __init__(self, key: str, endpoint: Endpoint) -> None:
        self.key = key
        self.endpoint = endpoint
        self.ready: deque[_Delivery] = deque()
        self.workers = 0  # running worker tasks
        self.waiting = 0  # of those, not in an attempt (about to take the next ready delivery)
        self.idle: list[Http1Connection] = []
        self.backlog = 0  # unfinished deliveries for this URL (bounded by max_backlog)
        self.expiry: asyncio.TimerHandle | None = None


class WebhookDispatcher:
    """Engine listener that POSTs each task event to the task's ``webhook_url``.

    ``per_receiver_limit``: requests in flight (= workers, = connections) per receiver URL.
    ``max_backlog``: unfinished deliveries kept per receiver URL; past it a new event's delivery
    is not queued but recorded at once as outcome ``overflow`` (0 attempts), so a dead receiver
    cannot grow memory without bound and every event still ends with one ``webhook_delivery``.
    """

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
        per_receiver_limit: int = 8,
        max_backlog: int = 10_000,
        user_agent: str = "Conduit-LLM/1.0",
        rng: random.Random | None = None,
    ) -> None:
        if per_receiver_limit < 1:
            raise ValueError("per_receiver_limit must be at least 1")
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        self.secret = secret
        self.recorder = recorder
        self.faults = faults
        self.body_for = body_for
        self.time_scale = time_scale
        self.timeout = timeout
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self.allowed_hosts = tuple(allowed_hosts)
        self.per_receiver_limit = per_receiver_limit
        self.max_backlog = max_backlog
        self.user_agent = user_agent
        # The key the wrong_secret fault signs with (public so receivers' tests can tell it apart).
        self.wrong_secret = f"wrong-{secret or ''}"
        self._secret_key = secret.encode("utf-8") if secret is not None else None
        self._rng = rng or random.Random()
        self._ssl: ssl.SSLContext | None = None  # made at the first https receiver
        self._stopped = False
        self._ids = 0
        self._unfinished = 0  # deliveries in some chain (waiting, ready, in flight, retrying)
        self._idle = asyncio.Event()  # set while nothing is unfinished or held (for drain)
        self._idle.set()
        self._chains: dict[str, deque[_Delivery]] = {}  # task_id → its deliveries; the first is current
        self._held: dict[str, list[_Delivery]] = {}  # task_id → out_of_order deliveries held back
        self._receivers: dict[str, _Receiver] = {}  # receiver URL → its queue and workers
        self._workers: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopped = False

    async def stop(self) -> None:
        """Cancel held, pending and retrying deliveries (each recorded as ``cancelled``)."""
        self._stopped = True
        for held in self._held.values():
            for delivery in held:
                if delivery.hold_timer is not None:
                    delivery.hold_timer.cancel()
                self._record_delivery(delivery, "cancelled", 0, None, duplicate=False)
        self._held.clear()
        for chain in self._chains.values():
            for delivery in chain:
                if delivery.timer is not None:
                    delivery.timer.cancel()
                self._record_delivery(delivery, "cancelled", delivery.attempts, delivery.status,
                                      duplicate=delivery.duplicate)
        self._chains.clear()
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        self._workers.clear()
        for receiver in self._receivers.values():
            if receiver.expiry is not None:
                receiver.expiry.cancel()
            for connection in receiver.idle:
                connection.close()
        self._receivers.clear()
        self._unfinished = 0
        self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Wait until no delivery is pending, held or retrying; TimeoutError after ``timeout`` s."""
        if not self._unfinished and not self._held:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"webhook deliveries still pending after {timeout} s: "
                               f"{self._unfinished} running, "
                               f"{sum(map(len, self._held.values()))} held") from None

    @property
    def pending(self) -> int:
        """Deliveries not finished yet (running, waiting in a chain, or held back)."""
        if self._held:
            return self._unfinished + sum(map(len, self._held.values()))
        return self._unfinished

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
            self.recorder.record(RecordKind.WEBHOOK_REFUSED, task_id=task.task_id, key=task.key,
                                 event_seq=event.seq,
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
            raw = _encode_json(body).encode()
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
            self.recorder.record(RecordKind.EVENT_DROPPED, channel="webhook", task_id=task.task_id,
                                 event_seq=event.seq, fault_id=fate.fault_id)
            return
        loop = asyncio.get_running_loop()
        if fate.delay > 0:
            self.recorder.record(RecordKind.EVENT_DELAYED, channel="webhook", task_id=task.task_id,
                                 event_seq=event.seq, delay_s=fate.delay, fault_id=fate.fault_id)
        try:
            fault = self.faults.webhook_fault()
        except Exception as exc:
            log.exception("webhook_fault failed for %s #%s", task.task_id, event.seq)
            self._record_error(task, event, "webhook_fault", exc)
            fault = None
        if fault is not None and fault.mode not in FAULT_MODES:
            log.warning("unknown webhook fault mode %r ignored", fault.mode)
            self.recorder.record(RecordKind.WEBHOOK_ERROR, task_id=task.task_id, event_seq=event.seq,
                                 stage="fault",
                                 error=f"unknown webhook fault mode {fault.mode!r}", fault_id=fault.fault_id)
            fault = None
        delivery = self._build(task, event, url, body, raw, fault, loop.time() + max(fate.delay, 0.0))
        receiver = self._receivers.get(_receiver(url))
        if receiver is not None and receiver.backlog >= self.max_backlog:
            log.warning("webhook receiver %s has %d deliveries pending: %s #%s not queued", url,
                        receiver.backlog, task.task_id, event.seq)
            self._record_delivery(delivery, "overflow", 0, None, duplicate=False)
            return

        held = self._held.pop(task.task_id, [])
        if fault is not None and fault.mode == "out_of_order":
            # Held until the task's next delivery has gone out (or for ``delay`` if none comes).
            held.append(delivery)
            self._held[task.task_id] = held
            self._idle.clear()
            delivery.hold_timer = loop.call_later(fault.delay, self._release_held, delivery)
            self.recorder.record(RecordKind.WEBHOOK_HELD, task_id=task.task_id, event_seq=event.seq,
                                 delivery=delivery.delivery_id, max_hold_s=fault.delay,
                                 fault_id=fault.fault_id)
            return
        self._enqueue(delivery)
        for earlier in held:  # out_of_order deliveries go right after this one
            if earlier.hold_timer is not None:
                earlier.hold_timer.cancel()
            self.recorder.record(RecordKind.WEBHOOK_RELEASED, task_id=task.task_id,
                                 event_seq=earlier.event.seq,
                                 delivery=earlier.delivery_id, after_event_seq=event.seq,
                                 reason="next_delivery")
            self._enqueue(earlier)

    def _build(self, task: Task, event: TaskEvent, url: str, body: dict[str, Any], raw: bytes,
               fault: WebhookFault | None, not_before: float) -> _Delivery:
        mode = fault.mode if fault else None
        signature: str | None = (hmac.new(self._secret_key, raw, hashlib.sha256).hexdigest()
                                 if self._secret_key is not None else None)  # = sign(raw, secret)
        if mode == "bad_signature":
            correct = signature
            while signature == correct:
                signature = f"{self._rng.getrandbits(256):064x}"
        elif mode == "wrong_secret":
            signature = sign(raw, self.wrong_secret)
        wire = raw[: len(raw) // 2] if mode == "truncated_body" else raw
        event_type = body.get("event_type") if isinstance(body, dict) else None
        self._ids += 1
        delivery = _Delivery(
            delivery_id=self._ids, task=task, event=event, url=url,
            event_type=str(event_type) if event_type is not None else event.kind.value,
            body=wire, signature=signature, fault=fault, fault_mode=mode, not_before=not_before,
        )
        for name, value in (task.request.webhook_headers or {}).items():
            name, value = str(name), str(value)
            if name.lower() in _RESERVED_HEADERS or not name or not set(name) <= _TOKEN_CHARS \
                    or any(c in value for c in "\r\n\0"):
                delivery.ignored_headers.append(name)
            else:
                delivery.extra_headers.append((name, value))
        if delivery.ignored_headers:
            log.info("task %s: webhook_headers %s ignored", task.task_id, delivery.ignored_headers)
        return delivery

    def _headers(self, delivery: _Delivery) -> list[tuple[str, str]]:
        """The headers of every attempt of ``delivery`` (Host and Content-Length are added on the wire)."""
        headers = [("Content-Type", CONTENT_TYPE), ("User-Agent", self.user_agent),
                   (TIMESTAMP_HEADER, delivery.timestamp or ""), *delivery.extra_headers]
        if delivery.signature is not None:
            headers.append((SIGNATURE_HEADER, delivery.signature))
        return headers

    def _release_held(self, delivery: _Delivery) -> None:
        """An out_of_order delivery whose task sent nothing more within the hold time."""
        held = self._held.get(delivery.task.task_id)
        if not held or delivery not in held:
            return
        held.remove(delivery)
        if not held:
            del self._held[delivery.task.task_id]
        delivery.hold_timer = None
        self.recorder.record(RecordKind.WEBHOOK_RELEASED, task_id=delivery.task.task_id,
                             event_seq=delivery.event.seq,
                             delivery=delivery.delivery_id, after_event_seq=None, reason="timeout")
        self._enqueue(delivery)

    # -- the per-task chain -------------------------------------------------------------------
    # A task's deliveries wait in its chain; only the first is under way (waiting for its start,
    # ready for a worker, in flight or waiting to retry). When it has ended (and its duplicate, if
    # any), the next one starts: per-task order holds across retries.
    def _enqueue(self, delivery: _Delivery) -> None:
        key = _receiver(delivery.url)
        receiver = self._receivers.get(key)
        if receiver is None:
            receiver = self._receivers[key] = _Receiver(key, _endpoint(delivery.url))
        elif receiver.expiry is not None:
            receiver.expiry.cancel()
            receiver.expiry = None
        receiver.backlog += 1
        delivery.receiver = receiver
        if not self._unfinished:
            self._idle.clear()
        self._unfinished += 1
        task_id = delivery.task.task_id
        chain = self._chains.get(task_id)
        if chain is None:
            self._chains[task_id] = deque((delivery,))
            self._begin(delivery)
        else:
            chain.append(delivery)

    def _begin(self, delivery: _Delivery) -> None:
        """``delivery`` is now its task's current one: start it, after any delay or slow fault."""
        problem = check_webhook_url(delivery.url, self.allowed_hosts)  # defence in depth
        if problem is not None:
            self.recorder.record(RecordKind.WEBHOOK_REFUSED, task_id=delivery.task.task_id,
                                 key=delivery.task.key,
                                 event_seq=delivery.event.seq, url=delivery.url, error=problem)
            self._record_delivery(delivery, "refused", 0, None, duplicate=delivery.duplicate)
            self._sent(delivery)
            return
        loop = asyncio.get_running_loop()
        wait = delivery.not_before - loop.time() if not delivery.duplicate else 0.0
        if delivery.fault_mode == "slow" and not delivery.duplicate and delivery.fault is not None:
            wait = max(wait, 0.0) + delivery.fault.delay
        if wait > 0:
            delivery.timer = loop.call_later(wait, self._ready, delivery)
        else:
            self._ready(delivery)

    def _ready(self, delivery: _Delivery) -> None:
        """Its next attempt may go now: queue it for its receiver's workers."""
        delivery.timer = None
        receiver = delivery.receiver
        assert receiver is not None
        receiver.ready.append(delivery)
        if receiver.waiting < len(receiver.ready) and receiver.workers < self.per_receiver_limit:
            receiver.workers += 1
            receiver.waiting += 1
            worker = asyncio.get_running_loop().create_task(self._work(receiver))
            self._workers.add(worker)
            worker.add_done_callback(self._worker_done)

    def _worker_done(self, worker: asyncio.Task[None]) -> None:
        self._workers.discard(worker)
        if not worker.cancelled() and worker.exception() is not None:
            log.error("webhook worker failed", exc_info=worker.exception())

    def _attempted(self, delivery: _Delivery) -> None:
        """After an attempt: done (and the duplicate, if any, goes next), or a retry later."""
        status = delivery.status
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        elif status == 400:
            outcome = "rejected"
        elif delivery.attempts > len(self.retry_delays):
            outcome = "gave_up"
        else:
            delivery.timer = asyncio.get_running_loop().call_later(
                self.retry_delays[delivery.attempts - 1] * self.time_scale, self._ready, delivery)
            return
        self._record_delivery(delivery, outcome, delivery.attempts, status, duplicate=delivery.duplicate)
        self._sent(delivery)

    def _sent(self, delivery: _Delivery) -> None:
        if delivery.fault_mode == "duplicate" and not delivery.duplicate:
            delivery.duplicate, delivery.attempts, delivery.status = True, 0, None
            self._begin(delivery)
            return
        self._finish(delivery)

    def _finish(self, delivery: _Delivery) -> None:
        """``delivery`` has ended: its task's next one starts."""
        task_id = delivery.task.task_id
        chain = self._chains.get(task_id)
        if chain is not None and chain and chain[0] is delivery:
            chain.popleft()
            if chain:
                self._begin(chain[0])
            else:
                del self._chains[task_id]
        receiver = delivery.receiver
        if receiver is not None:
            receiver.backlog -= 1
            self._retire_if_unused(receiver)
        self._unfinished -= 1
        if not self._unfinished and not self._held:
            self._idle.set()

    def _retire_if_unused(self, receiver: _Receiver) -> None:
        """Forget a receiver nothing is pending for (its idle connections after KEEPALIVE_S)."""
        if receiver.backlog or receiver.workers or self._stopped:
            return
        if receiver.idle:
            if receiver.expiry is None:
                receiver.expiry = asyncio.get_running_loop().call_later(
                    KEEPALIVE_S, self._expire, receiver)
        elif self._receivers.get(receiver.key) is receiver:
            del self._receivers[receiver.key]

    def _expire(self, receiver: _Receiver) -> None:
        receiver.expiry = None
        if receiver.backlog or receiver.workers:
            return
        for connection in receiver.idle:
            connection.close()
        receiver.idle.clear()
        if self._receivers.get(receiver.key) is receiver:
            del self._receivers[receiver.key]

    # -- the workers: one attempt at a time on one keep-alive connection ----------------------
    async def _work(self, receiver: _Receiver) -> None:
        connection: Http1Connection | None = None
        ready = receiver.ready
        waiting = True  # counted in receiver.waiting (not in an attempt)
        try:
            while ready and not self._stopped:
                delivery = ready.popleft()
                receiver.waiting -= 1
                waiting = False
                try:
                    connection = await self._attempt(delivery, receiver, connection)
                    receiver.waiting += 1  # before the next delivery is made ready: this worker takes it
                    waiting = True
                    self._attempted(delivery)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug here must not kill the worker or the task's chain
                    log.exception("webhook delivery %s failed", delivery.delivery_id)
                    self._record_error(delivery.task, delivery.event, "deliver", exc)
                    if not waiting:
                        receiver.waiting += 1
                        waiting = True
                    self._finish(delivery)
        except asyncio.CancelledError:
            if connection is not None:
                connection.abort()
                connection = None
            raise
        finally:
            receiver.workers -= 1
            if waiting:
                receiver.waiting -= 1
            if connection is not None:
                if connection.reusable and not self._stopped and len(receiver.idle) < self.per_receiver_limit:
                    connection.idle_since = asyncio.get_running_loop().time()
                    receiver.idle.append(connection)
                else:
                    connection.close()
            self._retire_if_unused(receiver)

    async def _connection(self, receiver: _Receiver, deadline: float) -> Http1Connection:
        """A pooled connection still open, else a new one (connecting counts towards the timeout)."""
        loop = asyncio.get_running_loop()
        while receiver.idle:
            connection = receiver.idle.pop()
            if connection.reusable and loop.time() - connection.idle_since < KEEPALIVE_S:
                return connection
            connection.close()
        endpoint = receiver.endpoint
        if endpoint.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        opening = Http1Connection.open(endpoint, self._ssl)
        return await asyncio.wait_for(opening, max(deadline - loop.time(), 0.0))

    async def _attempt(self, delivery: _Delivery, receiver: _Receiver,
                       connection: Http1Connection | None) -> Http1Connection | None:
        """One POST of ``delivery``, recorded; returns the connection to keep using (None: closed)."""
        delivery.attempts += 1
        request = delivery.request
        if request is None:  # the first attempt: the same bytes for retries and the duplicate
            delivery.timestamp = str(int(time.time()))
            endpoint = receiver.endpoint
            headers = self._headers(delivery)
            if endpoint.authorization is not None and not any(
                    name.lower() == "authorization" for name, _ in delivery.extra_headers):
                headers.append(("Authorization", endpoint.authorization))  # user info in the URL
            head = "".join([f"POST {endpoint.target} HTTP/1.1\r\nHost: {endpoint.host_header}\r\n",
                            *[f"{name}: {value}\r\n" for name, value in headers],
                            f"Content-Length: {len(delivery.body)}\r\n\r\n"])
            request = delivery.request = head.encode("utf-8") + delivery.body
        status: int | None = None
        error: str | None = None
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.timeout
        try:
            if connection is None or not connection.reusable:
                connection = await self._connection(receiver, deadline)
            status = await connection.request(request, deadline, loop)
        except TimeoutError:
            error = f"timeout after {self.timeout:g} s"
        except (OSError, ResponseError) as exc:
            error = _error_text(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = _error_text(exc)
            log.warning("webhook POST to %s failed unexpectedly: %s", delivery.url, error)
        latency_ms = (loop.time() - started) * 1000.0
        if error is not None and connection is not None:
            connection.abort()
            connection = None
        delivery.status = status
        task = delivery.task
        self.recorder.record(
            RecordKind.WEBHOOK_ATTEMPT, task_id=task.task_id, key=task.key,
            event_type=delivery.event_type, event_seq=delivery.event.seq, url=delivery.url,
            attempt=delivery.attempts, status=status, latency_ms=round(latency_ms, 3), error=error,
            fault=delivery.fault_mode, duplicate=delivery.duplicate, signature=delivery.signature,
            body_bytes=len(delivery.body), delivery=delivery.delivery_id, timestamp=delivery.timestamp,
        )
        return connection

    # -- records ------------------------------------------------------------------------------
    def _record_delivery(self, delivery: _Delivery, outcome: str, attempts: int, status: int | None, *,
                         duplicate: bool) -> None:
        self.recorder.record(
            RecordKind.WEBHOOK_DELIVERY, task_id=delivery.task.task_id, key=delivery.task.key,
            event_type=delivery.event_type, event_seq=delivery.event.seq, url=delivery.url, outcome=outcome,
            attempts=attempts, status=status, fault=delivery.fault_mode,
            fault_id=delivery.fault.fault_id if delivery.fault else None, duplicate=duplicate,
            delivery=delivery.delivery_id, ignored_headers=list(delivery.ignored_headers),
        )

    def _record_error(self, task: Task, event: TaskEvent, stage: str, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            self.recorder.record(RecordKind.WEBHOOK_ERROR, task_id=task.task_id, event_seq=event.seq,
                                 stage=stage,
                                 error=_error_text(exc))
