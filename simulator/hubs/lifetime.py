"""A mounted hub at run time: its connections, groups, method dispatch and the send API.

The send API (:meth:`HubLifetime.send_connection`, ``send_group``, ``send_all``) is what the task
engine calls. Each emitted invocation is encoded once per protocol and queued on every recipient,
so one slow client never delays the others, and carries its emit time in ``headers`` for latency
measurement (real clients ignore headers).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Iterable
from typing import Any

from conduit_core.signalr import (
    Close,
    Completion,
    HandshakeRequest,
    HandshakeResponse,
    Invocation,
    Ping,
    ProtocolError,
    State,
    StreamInvocation,
)
from conduit_core.signalr.messages import HubMessage
from simulator.hubs.connection import CloseMode, ServerHubConnection, TransportKind
from simulator.hubs.definition import HubCall, HubDefinition, HubError
from simulator.hubs.options import HubOptions
from simulator.jsonsafe import IdList
from simulator.recorder import Recorder, RecordKind

log = logging.getLogger(__name__)

# Header that carries the emit time (Unix epoch milliseconds, decimal string) on every
# server-sent invocation.
EMIT_TIME_HEADER = "x-conduit-emit-time"

# Sent when the server gives up on a client that stopped pinging (ASP aborts with reconnect allowed).
CLIENT_TIMEOUT_ERROR = "Connection closed with an error."


def emit_time_ms() -> str:
    return f"{time.time() * 1000:.3f}"


class HubLifetime:
    """Connections and groups of one hub, and everything that happens on them."""

    def __init__(
        self,
        definition: HubDefinition,
        options: HubOptions,
        recorder: Recorder,
        services: Any = None,
    ) -> None:
        self.definition = definition
        self.options = options
        self.recorder = recorder
        self.services = services
        self.by_token: dict[str, ServerHubConnection] = {}
        self.by_id: dict[str, ServerHubConnection] = {}
        self.groups: dict[str, set[str]] = {}
        # Bumped whenever a connection is added or removed; ``_everyone`` is the IdList of every
        # connection's id for one membership, reused by each broadcast that reaches them all.
        self._membership = 0
        self._everyone: tuple[int, IdList] | None = None

    @property
    def path(self) -> str:
        return self.definition.path

    # -- connection table ---------------------------------------------------------------------
    def add(self, conn: ServerHubConnection) -> None:
        self.by_token[conn.token] = conn
        self.by_id[conn.connection_id] = conn
        self._membership += 1
        conn.on_stuck = self._stuck

    def _stuck(self, conn: ServerHubConnection, reason: str) -> None:
        """A client stopped reading (outbox over its limits, or nothing reached the socket within
        the send timeout): the connection is aborted, as ASP.NET Core does, and that is recorded."""
        self.recorder.record(RecordKind.SERVER_CLOSE, hub=self.path, mode=CloseMode.ABORT.value,
                             close_message=False, error=None, allow_reconnect=None, reason=reason,
                             **conn.describe())

    def remove(self, conn: ServerHubConnection, reason: str) -> None:
        if conn.removed:
            return
        conn.removed = True
        self.by_token.pop(conn.token, None)
        self.by_id.pop(conn.connection_id, None)
        self._membership += 1
        for group in list(conn.groups):
            self.remove_from_group(conn, group)
        if conn.closing is None:
            conn.request_close(CloseMode.GRACEFUL, reason)
        if conn.active_poll is not None and not conn.active_poll.done():
            conn.active_poll.set_result(None)
        self.recorder.record(RecordKind.DISCONNECT, hub=self.path, reason=reason, **conn.describe())

    def connections(self, key: str | None = None) -> list[ServerHubConnection]:
        return [c for c in self.by_id.values() if key is None or c.key == key]

    # -- groups -------------------------------------------------------------------------------
    def add_to_group(self, conn: ServerHubConnection, group: str) -> None:
        self.groups.setdefault(group, set()).add(conn.connection_id)
        conn.groups.add(group)

    def remove_from_group(self, conn: ServerHubConnection, group: str) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.discard(conn.connection_id)
            if not members:
                del self.groups[group]
        conn.groups.discard(group)

    # -- receiving ----------------------------------------------------------------------------
    async def receive(self, conn: ServerHubConnection, data: bytes, *, binary: bool | None) -> None:
        """Bytes from the client (a frame or a POST body); ``binary`` is the WebSocket frame type."""
        if conn.removed or conn.closing is not None:
            return
        try:
            if (
                binary is not None
                and conn.protocol.state is State.OPEN
                and binary != conn.protocol.is_binary
            ):
                raise ProtocolError(
                    f"A {'Binary' if binary else 'Text'} frame was received on a connection "
                    f"using the {conn.protocol.transfer_format} transfer format."
                )
            events = conn.protocol.receive_data(data)
        except ProtocolError as exc:
            self._protocol_error(conn, exc)
            return
        conn.last_received = time.monotonic()
        for event in events:
            if isinstance(event, HandshakeRequest):
                self._handshake(conn, event)
            else:
                await self._dispatch(conn, event)
            if conn.closing is not None:
                return

    def _protocol_error(self, conn: ServerHubConnection, exc: ProtocolError) -> None:
        response = exc.response
        if response is None and conn.protocol.protocol is not None:
            response = conn.protocol.send(Close(error=exc.message))
        self.recorder.record(RecordKind.PROTOCOL_ERROR, hub=self.path, error=exc.message, **conn.describe())
        if response:
            conn.enqueue(response)
        conn.request_close(CloseMode.GRACEFUL, f"protocol error: {exc.message}")

    def _handshake(self, conn: ServerHubConnection, request: HandshakeRequest) -> None:
        if conn.transport is TransportKind.SERVER_SENT_EVENTS and conn.protocol.is_binary:
            error = (
                f"Cannot use the '{request.protocol}' protocol on the current transport. "
                "The transport does not support 'Binary' transfer format."
            )
            self.recorder.record(RecordKind.HANDSHAKE, hub=self.path, ok=False, error=error,
                                 version=request.version, **conn.describe())
            conn.enqueue(conn.protocol.send(HandshakeResponse(error=error)))
            conn.request_close(CloseMode.GRACEFUL, "handshake rejected")
            return
        conn.enqueue(conn.protocol.send(HandshakeResponse()))
        self.recorder.record(RecordKind.HANDSHAKE, hub=self.path, ok=True, version=request.version,
                             **conn.describe())
        if self.definition.on_connected is not None:
            self.definition.on_connected(HubCall(self, conn, "OnConnected"))

    async def _dispatch(self, conn: ServerHubConnection, message: HubMessage) -> None:
        if isinstance(message, Ping):
            conn.client_pinged = True
        elif isinstance(message, Invocation | StreamInvocation):
            await self._invoke(conn, message)
        elif isinstance(message, Close):
            self.recorder.record(RecordKind.CLIENT_CLOSE, hub=self.path, error=message.error,
                                 **conn.describe())
            conn.request_close(CloseMode.GRACEFUL, "client sent Close")
        # Completion (client results), StreamItem, CancelInvocation, Ack and Sequence need no
        # answer: no hub method streams, asks for client results or uses stateful reconnect.

    async def _invoke(self, conn: ServerHubConnection, message: Invocation | StreamInvocation) -> None:
        invocation_id = message.invocation_id
        method = self.definition.method(message.target)
        started = time.monotonic()
        result: Any = None
        error: str | None = None
        if method is None:
            error = f"Unknown hub method '{message.target}'"
        elif isinstance(message, StreamInvocation):
            error = (f"The client attempted to invoke the non-streaming '{message.target}' "
                     "method with a streaming invocation.")
        elif len(message.arguments) != method.arity:
            error = (f"Failed to invoke '{message.target}' due to an error on the server. "
                     f"InvalidDataException: Invocation provides {len(message.arguments)} "
                     f"argument(s) but target expects {method.arity}.")
        else:
            try:
                result = method.handler(HubCall(self, conn, method.name), *message.arguments)
                if inspect.isawaitable(result):
                    result = await result
            except HubError as exc:
                error = (f"An unexpected error occurred invoking '{message.target}' on the "
                         f"server. HubException: {exc}")
            except Exception:  # a hub bug must not kill the connection
                log.exception("hub method %s failed", message.target)
                error = f"An unexpected error occurred invoking '{message.target}' on the server."
        self.recorder.record(
            RecordKind.INVOCATION, hub=self.path, target=message.target, arguments=message.arguments,
            invocation_id=invocation_id, error=error, result=None if error else result,
            duration_ms=(time.monotonic() - started) * 1000, **conn.describe(),
        )
        if invocation_id is None:  # non-blocking: the callee must not reply
            return
        if error is not None:
            completion = Completion(invocation_id, error=error)
        elif result is None:
            completion = Completion(invocation_id)
        else:
            completion = Completion(invocation_id, result=result)
        # The connection may have closed while the hub method ran; nothing follows a Close.
        if not conn.removed and conn.protocol.state is State.OPEN:
            conn.enqueue(conn.protocol.send(completion))

    # -- the send API -------------------------------------------------------------------------
    # ``context`` (e.g. task_id, event_seq) is recorded with the event, to join it to its cause.
    def send_connection(self, connection_id: str, target: str, arguments: list[Any], **context: Any) -> int:
        conn = self.by_id.get(connection_id)
        return self._emit([conn] if conn else [], target, arguments, f"connection:{connection_id}",
                          context)

    def send_group(self, group: str, target: str, arguments: list[Any], **context: Any) -> int:
        members = [self.by_id[c] for c in self.groups.get(group, ()) if c in self.by_id]
        return self._emit(members, target, arguments, f"group:{group}", context)

    def send_all(self, target: str, arguments: list[Any], **context: Any) -> int:
        return self._emit(list(self.by_id.values()), target, arguments, "all", context,
                          membership=self._membership)

    def _emit(
        self, recipients: list[ServerHubConnection], target: str, arguments: list[Any], to: str,
        context: dict[str, Any], membership: int | None = None,
    ) -> int:
        """Send to ``recipients`` (``membership``: they are every connection of that membership,
        in ``by_id`` order) and record the event with the ids of those it reached."""
        emitted = emit_time_ms()
        message = Invocation(target, list(arguments), headers={EMIT_TIME_HEADER: emitted})
        # This loop runs once per recipient per event (1,000 times per broadcast in the fan-out
        # benchmark), so it reads the clock once and looks each protocol's bytes up by name. The
        # recipients get the same bytes object, which the WebSocket transport frames only once.
        # Only the recipients it missed are listed here (rarely any); ``State.OPEN`` is looked up
        # once, as on Python 3.11 an enum member read through its class costs ~70 ns.
        encoded: dict[str | None, bytes] = {}
        missed: list[ServerHubConnection] = []
        is_open = State.OPEN
        now = time.monotonic()
        for conn in recipients:
            protocol = conn.protocol
            if protocol.state is not is_open or conn.closing is not None:
                missed.append(conn)
                continue
            payload = encoded.get(protocol.protocol)
            if payload is None:
                payload = encoded[protocol.protocol] = protocol.send(message)
            if not conn.enqueue(payload, now):
                missed.append(conn)
        sent = self._reached(recipients, missed, membership)
        self.recorder.record(RecordKind.EVENT, hub=self.path, target=target, arguments=list(arguments),
                             to=to, emit_time_ms=float(emitted), recipients=len(sent),
                             connections=sent, **context)
        return len(sent)

    def _reached(self, recipients: list[ServerHubConnection], missed: list[ServerHubConnection],
                 membership: int | None) -> IdList:
        """The ids of the recipients an event reached, in order: what its record names.

        A broadcast that reached every connection of an unchanged membership gets the same
        IdList as the previous one, so neither this nor the recorder (which writes the same
        object's JSON once) goes over 1,000 ids per event; it is rebuilt when a connection comes
        or goes. Ids are our own (:func:`conduit_core.signalr.negotiate.new_connection_id`)."""
        if missed:
            skip = set(missed)
            return IdList([conn.connection_id for conn in recipients if conn not in skip])
        if membership is None or membership != self._membership:
            return IdList([conn.connection_id for conn in recipients])
        everyone = self._everyone
        if everyone is None or everyone[0] != membership:
            everyone = self._everyone = (membership, IdList([conn.connection_id for conn in recipients]))
        return everyone[1]

    def close_connection(
        self,
        conn: ServerHubConnection,
        *,
        mode: CloseMode = CloseMode.GRACEFUL,
        close_message: bool = True,
        error: str | None = None,
        allow_reconnect: bool | None = None,
        reason: str = "closed by server",
    ) -> None:
        """End a connection: with a Close message (optionally allowing reconnect), a bare
        transport close, or an abortive cut. These are also the drop faults."""
        if close_message and mode is CloseMode.GRACEFUL and conn.protocol.state is State.OPEN:
            conn.enqueue(conn.protocol.send(Close(error=error, allow_reconnect=allow_reconnect)))
        self.recorder.record(RecordKind.SERVER_CLOSE, hub=self.path, mode=mode.value,
                             close_message=close_message, error=error,
                             allow_reconnect=allow_reconnect, reason=reason, **conn.describe())
        conn.request_close(mode, reason)

    # -- timers -------------------------------------------------------------------------------
    def heartbeat(self, now: float) -> None:
        """Keep-alive Pings and every timeout, checked on one tick for all connections."""
        opts = self.options
        faults = getattr(self.services, "faults", None)
        pings_stopped = faults is not None and faults.pings_stopped()
        for conn in list(self.by_id.values()):
            if conn.closing is not None:
                self._check_closing(conn, now)
                continue
            if conn.stalled_for(now) >= opts.send_timeout:
                conn.stuck(f"send timeout: nothing reached the client for {opts.send_timeout:g} s")
                continue
            if conn.idle_since is not None:
                if now - conn.idle_since >= opts.disconnect_timeout:
                    self.remove(conn, "inactive: no transport within the disconnect timeout")
                continue
            state = conn.protocol.state
            if state is State.HANDSHAKE:
                started = conn.transport_started_at or conn.created_at
                if now - started >= opts.handshake_timeout:
                    conn.enqueue(conn.protocol.send(HandshakeResponse(error="Handshake was canceled.")))
                    self.recorder.record(RecordKind.HANDSHAKE, hub=self.path, ok=False,
                                         error="Handshake was canceled.", **conn.describe())
                    conn.request_close(CloseMode.GRACEFUL, "handshake timeout")
                continue
            if state is not State.OPEN:
                continue
            if conn.client_pinged and now - conn.last_received >= opts.client_timeout:
                self.close_connection(conn, error=CLIENT_TIMEOUT_ERROR, allow_reconnect=True,
                                      reason="client timeout")
                continue
            if (conn.uses_keep_alive and not pings_stopped
                    and now - conn.last_sent >= opts.keep_alive_interval):
                conn.enqueue(conn.protocol.send(Ping()))


    def _check_closing(self, conn: ServerHubConnection, now: float) -> None:
        """A close that does not finish within the send timeout (the client does not read the
        last frames) becomes an abort; an aborted connection no transport removed (a long-polling
        client that stopped polling) is removed."""
        if conn.closing_since is None or now - conn.closing_since < self.options.send_timeout:
            return
        if conn.closing is not None and conn.closing.mode is not CloseMode.ABORT:
            conn.stuck(f"close timeout: the close did not finish within {self.options.send_timeout:g} s")
            conn.closing_since = now
        else:
            self.remove(conn, conn.closing.reason if conn.closing else "aborted")


async def run_heartbeat(hubs: Iterable[HubLifetime], interval: float) -> None:
    """One ticker for every hub (ASP's 1 s heartbeat), rather than a timer per connection."""
    hubs = list(hubs)
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        for hub in hubs:
            try:
                hub.heartbeat(now)
            except Exception:  # never let the ticker die
                log.exception("heartbeat failed on %s", hub.path)
