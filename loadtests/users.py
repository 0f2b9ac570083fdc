"""The load users. Each holds its clients; every measurement is a Locust request event.

HTTP calls (create, poll, webhook deliveries) go through Locust's ``FastHttpSession``
(geventhttpclient; see :mod:`loadtests.rest_client`), SignalR through
:mod:`loadtests.signalr_client`.

==================  ============================================================================
user                what one iteration does
==================  ============================================================================
PollingUser         create a task (REST), poll its status route (the profile's) every
                    ``--conduit-poll-interval`` s (first poll at once; honours Retry-After) until
                    it ends
SignalRUser         stay connected to the task kind's hub (WebSockets, JSON or MessagePack);
                    create a task, ``SubscribeToTask``, wait for its completed / failed event,
                    unsubscribe. On reconnect: subscribe again and poll each open task once.
                    ``--conduit-signalr-mode listen``: only stay connected and measure events
AutoUser            the guide's RealTimeClient: SignalR when it can connect, polling otherwise;
                    a task whose connection is lost for good is finished by polling
WebhookSenderUser   plays Conduit against *your* webhook receiver (the Locust host): per task,
                    signed deliveries task.progress 10/50/90 then task.completed (or task.failed)
==================  ============================================================================

Request names (``request_type`` / ``name``):

- ``REST``: ``POST /v1/images/generations/async``;
- ``Poll``: ``GET /api/tasks/{id}/status`` (``GET /v1/images/generations/{id}/status`` or
  ``GET /v1/videos/generations/tasks/{id}`` with ``--conduit-profile conduit-2025.08``);
  ``delay processing`` / ``delay completed`` (a poll that sees a new state: how long ago the server
  changed it, from ``updated_at``/``updatedAt``);
- ``SignalR``: ``negotiate``, ``connect``, ``handshake json``, ``invoke SubscribeToTask``,
  ``latency TaskProgress``, ``latency_approx ImageGenerationProgress`` (from the event's own
  timestamp, when the server sends no emit-time header), ``gap TaskProgress``, ``reconnect``;

The dialect (hub names, event shapes, status routes) is the simulator profile's
(``--conduit-profile``), read from its tables (``client_hubs``, ``decode_event``, ``status_paths``).
- ``e2e image completed`` (created → terminal state seen) under the channel that saw the end
  (``SignalR`` or ``Poll``);
- ``Webhook``: ``POST task.progress``, ``POST task.completed``, ``POST task.failed``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import uuid
from datetime import datetime
from functools import partial
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.event import Event as GeventEvent
from gevent.lock import Semaphore
from locust import User, between, task
from locust.contrib.fasthttp import FastHttpSession
from locust.exception import StopUser

from loadtests import rest_client
from loadtests.options import Settings
from loadtests.rest_client import Reply
from loadtests.signalr_client import Received, SignalRClient, SignalRError
from simulator.profiles import Profile
from simulator.security import control_headers

log = logging.getLogger(__name__)

CREATE_PATHS = {"image": "/v1/images/generations/async", "video": "/v1/videos/generations/async"}
TERMINAL = frozenset({"completed", "failed", "cancelled", "timedout"})
# The guide's onclose handler restarts a closed connection after 5 s; so do we, before a task.
MANUAL_RESTART_S = 5.0
# AutoUser: how long it polls before trying SignalR again after a failed connect.
AUTO_RETRY_CONNECT_S = 10.0
# A listening user wakes when its connection is closed for good (on_closed), else after this long:
# thousands of listeners waking every few seconds for nothing cost more CPU than their events.
LISTEN_SLEEP_S = 60.0

_key_lock = Semaphore()
_keys: dict[str, str | None] = {}


class TaskTimeout(Exception):
    pass


def event_time_ms(profile: Profile, target: str, arguments: list[Any]) -> float | None:
    """The emit time an event carries itself (Unix ms), when the profile's dialect stamps events."""
    decode = profile.decode_event
    event = decode(target, arguments) if decode is not None else None
    return event.emitted_ms if event is not None else None


def resolve_key(host: str, settings: Settings) -> str | None:
    """The virtual key: the option / environment, else (against the simulator) one new key per
    process from ``POST /_sim/keys`` (with the control token). That set-up call goes through the
    session's user agent directly, so it is not a Locust request event."""
    if settings.conduit_key:
        return settings.conduit_key
    with _key_lock:
        if host not in _keys:
            key = None
            headers = {"Content-Type": "application/json",
                       **control_headers(settings.conduit_control_token or "")}
            session = rest_client.make_session(host, None, None, timeout=10)
            try:
                response = session.client.urlopen(host.rstrip("/") + "/_sim/keys", method="POST",
                                                  payload=b"{}", headers=headers)
                if response.status_code == 201:
                    key = json.loads(response.content).get("key")
            except (OSError, ValueError, AttributeError):  # geventhttpclient's errors are OSErrors
                key = None
            finally:
                session.client.close()
            if key is None:
                log.error("no virtual key: pass --conduit-key or set CONDUIT_VIRTUAL_KEY "
                          "(%s has no /_sim/keys to make one)", host)
            _keys[host] = key
        return _keys[host]


class TaskTracker:
    """One created task until its terminal state is seen (by an event or a poll)."""

    __slots__ = ("task_id", "kind", "created", "done", "seen")

    def __init__(self, task_id: str, kind: str, created: float) -> None:
        self.task_id = task_id
        self.kind = kind
        self.created = created  # perf_counter() before the create request
        self.done: AsyncResult = AsyncResult()
        self.seen: tuple[Any, Any] | None = None  # (status, progress) of the last poll

    @property
    def ready(self) -> bool:
        return self.done.ready()

    def finish(self, status: str, via: str) -> None:
        if not self.done.ready():
            self.done.set((status, via, time.perf_counter()))

    def wait(self, timeout: float) -> bool:
        try:
            self.done.get(timeout=max(timeout, 0.0))
        except gevent.Timeout:
            return False
        return True


class ConduitUser(User):
    """Shared plumbing: settings, the key, the HTTP session, create / poll / report helpers.

    Not a ``FastHttpUser``: that makes its ``FastHttpSession`` (a pool, a cookie jar, a user agent)
    in ``__init__``, and a SignalR user that only listens would carry one it never uses; ``client``
    is the same session, made on first use."""

    abstract = True
    wait_time = between(0.5, 1.5)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.settings = Settings.load(getattr(environment, "parsed_options", None))
        self.key: str | None = None
        self._client: FastHttpSession | None = None

    @property
    def client(self) -> FastHttpSession:
        if self._client is None:
            self._client = rest_client.make_session(
                self.host or "", self.environment.events.request, self, key=self.key,
                timeout=self.settings.conduit_request_timeout)
        return self._client

    # -- measurements ---------------------------------------------------------------------------
    def fire(self, request_type: str, name: str, response_time: float, response_length: int = 0,
             exception: BaseException | None = None) -> None:
        self.environment.events.request.fire(
            request_type=request_type, name=name, response_time=response_time,
            response_length=response_length, exception=exception, context={},
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def on_start(self) -> None:
        self.key = resolve_key(self.host or "", self.settings)

    def on_stop(self) -> None:
        if self._client is not None:
            self._client.client.close()
            self._client = None

    # -- tasks over REST ------------------------------------------------------------------------
    def create_task(self) -> TaskTracker | None:
        kind = self.settings.conduit_task_kind
        path = CREATE_PATHS[kind]
        created = time.perf_counter()
        body = {"prompt": f"load test {uuid.uuid4().hex[:8]}", "model": "conduit-load"}
        reply = rest_client.request(self.client, "POST", path, request_type="REST", name=f"POST {path}",
                                    expect=(200, 202), json_body=body)
        if not reply.ok:
            return None
        data = reply.body if isinstance(reply.body, dict) else {}
        task_id = data.get("task_id") or data.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            self.fire("REST", f"POST {path}", 0, 0, ValueError("create answered without a task id"))
            return None
        return TaskTracker(task_id, kind, created)

    def poll_once(self, tracker: TaskTracker) -> Reply:
        path = self.settings.profile.status_paths[tracker.kind]
        reply = rest_client.request(self.client, "GET", path.format(task_id=tracker.task_id),
                                    request_type="Poll", name="GET " + path.replace("{task_id}", "{id}"))
        body = reply.body if reply.ok and isinstance(reply.body, dict) else None
        if body is None:
            return reply
        state = (body.get("status"), body.get("progress"))
        if state != tracker.seen:
            tracker.seen = state
            self.report_poll_delay(body)
        if body.get("status") in TERMINAL:
            tracker.finish(body["status"], "poll")
        return reply

    def report_poll_delay(self, body: dict[str, Any]) -> None:
        """The polling channel's event latency: a poll that sees a new state reports how long ago the
        server changed it (``updated_at``), as ``Poll delay <status>``. Wall clocks of client and
        server are compared, so against a remote Conduit this includes their clock skew."""
        updated = body.get("updated_at", body.get("updatedAt"))
        if not isinstance(updated, str) or body.get("status") == "pending":
            return
        try:
            changed = datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return
        self.fire("Poll", f"delay {body.get('status')}", max(0.0, (time.time() - changed) * 1000.0))

    def poll_until_done(self, tracker: TaskTracker, deadline: float) -> None:
        interval = self.settings.conduit_poll_interval
        while not tracker.ready and time.perf_counter() < deadline:
            reply = self.poll_once(tracker)
            if tracker.ready:
                return
            wait = interval
            retry_after = reply.retry_after()
            if reply.status in (429, 503) and retry_after is not None:
                wait = max(wait, retry_after)
            gevent.sleep(max(0.0, min(wait, deadline - time.perf_counter())))

    def report_outcome(self, tracker: TaskTracker, request_type: str) -> None:
        """``e2e <kind> <status>``: created → terminal state seen, under the channel that saw it."""
        if tracker.ready:
            status, via, at = tracker.done.get()
            self.fire("SignalR" if via == "signalr" else "Poll", f"e2e {tracker.kind} {status}",
                      (at - tracker.created) * 1000.0)
        else:
            elapsed = (time.perf_counter() - tracker.created) * 1000.0
            timeout = self.settings.conduit_task_timeout
            self.fire(request_type, f"e2e {tracker.kind}", elapsed,
                      exception=TaskTimeout(f"no terminal state within {timeout:g} s"))

    def deadline(self, tracker: TaskTracker) -> float:
        return tracker.created + self.settings.conduit_task_timeout


class PollingUser(ConduitUser):
    """Create a task, poll its status until it ends."""

    weight = 1

    @task
    def track_task_by_polling(self) -> None:
        tracker = self.create_task()
        if tracker is None:
            return
        self.poll_until_done(tracker, self.deadline(tracker))
        self.report_outcome(tracker, "Poll")


class HubUser(ConduitUser):
    """One hub connection per user (no task of its own): connect, subscribe, follow task events."""

    abstract = True
    protocol: str | None = None  # None: --conduit-protocol

    def on_start(self) -> None:
        super().on_start()
        s = self.settings
        self.dialect = s.profile
        self.hub = self.dialect.client_hubs[s.conduit_task_kind]
        self.tracked: dict[str, TaskTracker] = {}
        self.signalr = SignalRClient(
            self.host or "", self.hub.path, self.key, protocol=self.protocol or s.conduit_protocol,
            report=partial(self.fire, "SignalR"), timeout=s.conduit_request_timeout,
            keepalive=s.conduit_keepalive, server_timeout=s.conduit_server_timeout,
            reconnect_delays=s.reconnect_delays, event_time=partial(event_time_ms, self.dialect),
        )
        for target in self.hub.events:
            self.signalr.on(target, partial(self._on_task_event, target))
        self.signalr.on_reconnected.append(self._after_reconnect)
        self._last_connect = 0.0
        self._closed = GeventEvent()
        self.signalr.on_closed.append(lambda _reason: self._closed.set())
        self.connect()

    def on_stop(self) -> None:
        signalr = getattr(self, "signalr", None)
        if signalr is not None:
            signalr.stop()
        super().on_stop()

    def connect(self) -> bool:
        self._last_connect = time.monotonic()
        try:
            self.signalr.start()
        except SignalRError:
            return False  # reported by the client
        return True

    def ensure_connected(self) -> bool:
        """Connected, or a manual restart after MANUAL_RESTART_S (as the guide's onclose)."""
        if self.signalr.connected:
            return True
        if self.signalr.reconnecting:
            gevent.sleep(0.5)
            return False
        wait = MANUAL_RESTART_S - (time.monotonic() - self._last_connect)
        if wait > 0:
            gevent.sleep(wait)
        return self.connect()

    def _on_task_event(self, target: str, arguments: list[Any], received: Received) -> None:
        decode = self.dialect.decode_event
        event = decode(target, arguments) if decode is not None else None
        if event is None or event.kind == "progress":
            return
        self.signalr.forget(event.task_id)
        tracker = self.tracked.get(event.task_id)
        if tracker is not None:
            tracker.finish(event.kind, "signalr")

    def _after_reconnect(self) -> None:
        """Runs in the client's reconnect greenlet: subscribe again, then poll each open task once
        (it may have ended while we were away)."""
        for tracker in list(self.tracked.values()):
            if tracker.ready:
                continue
            with contextlib.suppress(SignalRError):  # a failure is reported by the client
                self.signalr.invoke(self.hub.subscribe, tracker.task_id)
            self.poll_once(tracker)

    def subscribe(self, tracker: TaskTracker) -> bool:
        self.tracked[tracker.task_id] = tracker
        try:
            self.signalr.invoke(self.hub.subscribe, tracker.task_id)
        except SignalRError:
            return False  # reported as a failed "invoke SubscribeToTask"
        return True

    def unsubscribe(self, tracker: TaskTracker) -> None:
        self.tracked.pop(tracker.task_id, None)
        if self.signalr.connected:
            with contextlib.suppress(SignalRError):
                self.signalr.invoke(self.hub.unsubscribe, tracker.task_id)



class SignalRUser(HubUser):
    """Tasks tracked by their SignalR events (or, with ``--conduit-signalr-mode listen``, only
    connected and measuring whatever the server sends)."""

    weight = 3

    @task
    def track_task(self) -> None:
        if self.settings.conduit_signalr_mode == "listen":
            if self.ensure_connected():
                self._closed.clear()
                self._closed.wait(LISTEN_SLEEP_S)
            return
        if not self.ensure_connected():
            return
        tracker = self.create_task()
        if tracker is None:
            return
        try:
            if not self.subscribe(tracker):
                return
            tracker.wait(self.deadline(tracker) - time.perf_counter())
            self.report_outcome(tracker, "SignalR")
            self.unsubscribe(tracker)
        finally:
            self.tracked.pop(tracker.task_id, None)


class AutoUser(HubUser):
    """SignalR with polling fallback (the guide's RealTimeClient, C-FALLBACK)."""

    weight = 1

    def signalr_available(self) -> bool:
        if self.signalr.connected:
            return True
        if self.signalr.reconnecting or time.monotonic() - self._last_connect < AUTO_RETRY_CONNECT_S:
            return False  # poll meanwhile
        return self.connect()

    @task
    def track_task(self) -> None:
        use_signalr = self.signalr_available()
        tracker = self.create_task()
        if tracker is None:
            return
        deadline = self.deadline(tracker)
        try:
            if use_signalr and self.subscribe(tracker):
                while not tracker.ready and time.perf_counter() < deadline:
                    tracker.wait(min(1.0, deadline - time.perf_counter()))
                    if not (self.signalr.connected or self.signalr.reconnecting):
                        break  # lost for good: finish by polling
            if not tracker.ready:
                self.poll_until_done(tracker, deadline)
            self.report_outcome(tracker, "SignalR" if use_signalr else "Poll")
            if use_signalr:
                self.unsubscribe(tracker)
        finally:
            self.tracked.pop(tracker.task_id, None)


class WebhookSenderUser(User):
    """Plays Conduit's webhook dispatcher against the receiver under test (the Locust host).

    Bodies are the documented profile's (``webhook_body``), serialised as the simulator does
    (compact JSON, UTF-8) and signed over those exact bytes: ``X-Conduit-Signature`` = hex
    HMAC-SHA256 with ``--conduit-webhook-secret``. A 2xx answer is a success, anything else a failure.
    """

    wait_time = between(0.2, 1.0)
    _results: list[Any] = []

    def on_start(self) -> None:
        from simulator.channels.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

        self.settings = Settings.load(getattr(self.environment, "parsed_options", None))
        self.secret = self.settings.conduit_webhook_secret
        if not self.secret:
            self.environment.events.request.fire(
                request_type="Webhook", name="config", response_time=0, response_length=0, context={},
                exception=ValueError("no webhook secret: pass --conduit-webhook-secret or set "
                                     "CONDUIT_WEBHOOK_SECRET"))
            raise StopUser()
        self._sign, self._sig_header, self._ts_header = sign, SIGNATURE_HEADER, TIMESTAMP_HEADER
        self.url = self.host or ""
        self.session = rest_client.make_session(self.url, self.environment.events.request, self, timeout=30,
                                                headers={"User-Agent": "Conduit-LLM/1.0"})
        if not WebhookSenderUser._results:
            WebhookSenderUser._results = _sample_results()

    def on_stop(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            session.client.close()

    def deliver(self, body: dict[str, Any]) -> None:
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json",
                   self._ts_header: str(int(time.time())), self._sig_header: self._sign(raw, self.secret)}
        rest_client.request(self.session, "POST", self.url, request_type="Webhook",
                            name=f"POST {body['event_type']}", expect=range(200, 300), data=raw,
                            headers=headers)

    @task
    def deliver_task(self) -> None:
        from simulator.profiles.documented import webhook_body
        from simulator.tasks.model import EventKind, Task, TaskEvent, TaskRequest, TaskStatus

        task_id = "task_" + uuid.uuid4().hex
        request = TaskRequest(kind="image", prompt="load test", model="conduit-load", key="vk_loadtest")
        conduit_task = Task(task_id=task_id, request=request, script="standard")
        steps: list[tuple[EventKind, TaskStatus, int, Any, str | None]] = [
            (EventKind.PROGRESS, TaskStatus.PROCESSING, p, None, None) for p in (10, 50, 90)]
        if random.random() < self.settings.conduit_webhook_failure_ratio:
            steps.append((EventKind.FAILED, TaskStatus.FAILED, 90, None, "Generation failed (load test)"))
        else:
            steps.append((EventKind.COMPLETED, TaskStatus.COMPLETED, 100, random.choice(self._results), None))
        for seq, (kind, status, progress, result, error) in enumerate(steps, start=1):
            event = TaskEvent(task_id=task_id, kind=kind, seq=seq, status=status, progress=progress,
                              wall=time.time(), result=result, error=error)
            self.deliver(webhook_body(conduit_task, event))
            gevent.sleep(random.uniform(0.02, 0.1))


def _sample_results(count: int = 16) -> list[Any]:
    """Realistic image results from the simulator's seeded payload builder (made once)."""
    from simulator.scenarios import PayloadFactory
    from simulator.tasks.model import TaskRequest

    factory = PayloadFactory(1234)
    request = TaskRequest(kind="image", prompt="load test", model="conduit-load", key="vk_loadtest")
    return [factory.for_task(i).image_result(request) for i in range(count)]
